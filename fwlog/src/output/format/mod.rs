//! The line formats (`--format json|text|ecs`): each writes one line per record into the
//! collector's buffer, behind the one interface [`EventWriter`].

pub mod ecs;
pub mod json;
pub mod json_object;
pub mod text;
pub mod timestamp;

#[cfg(test)]
mod hostile_names;

use crate::record::{FlowRecord, LossSite, StatsRecord, VerdictRecord};

/// Appends one line (or nothing) per call to `out`; the caller writes `out` once per batch.
pub trait EventWriter {
    /// A new connection attempt met a `LOG_AND_*` chain.
    fn verdict(&mut self, out: &mut Vec<u8>, record: &VerdictRecord);
    /// A flow ended.
    fn flow(&mut self, out: &mut Vec<u8>, record: &FlowRecord);
    /// `count` events lost at `site`.
    fn lost(&mut self, out: &mut Vec<u8>, unix_ns: i128, site: LossSite, count: u64);
    /// `count` flows the kernel's full table dropped before they ended.
    fn flows_evicted(&mut self, out: &mut Vec<u8>, unix_ns: i128, count: u64);
    /// The counters so far.
    fn stats(&mut self, out: &mut Vec<u8>, unix_ns: i128, stats: &StatsRecord);
}

/// TCP flags as letters in a fixed order: S(YN) A(CK) F(IN) R(ST) P(SH) U(RG) E(CE) C(WR).
pub fn tcp_flag_letters(flags: u8) -> impl Iterator<Item = u8> {
    const ORDER: [(u8, u8); 8] = [
        (0x02, b'S'),
        (0x10, b'A'),
        (0x01, b'F'),
        (0x04, b'R'),
        (0x08, b'P'),
        (0x20, b'U'),
        (0x40, b'E'),
        (0x80, b'C'),
    ];
    ORDER
        .into_iter()
        .filter(move |(bit, _)| flags & bit != 0)
        .map(|(_, letter)| letter)
}
