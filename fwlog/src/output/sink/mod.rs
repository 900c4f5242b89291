//! Where the lines go: standard output, a rotating file, the system log. Each sink takes whole
//! lines and says how far it got ([`LineSink`]), so that a failed write is retried from the
//! first byte that did not go out and no line is ever left half written; the IPFIX exporter
//! gets each ended flow's record instead of its line.

pub mod ipfix;
pub mod rotating_file;
pub mod stdout;
pub mod syslog;

use std::io;

/// How far a write of whole lines got.
#[derive(Debug)]
pub struct Written {
    /// Bytes from the start of the lines that are out, whole lines unless the sink could not
    /// take a cut line back (then the next write continues it).
    pub bytes: usize,
    /// Why the rest did not go out.
    pub error: Option<io::Error>,
}

impl Written {
    pub fn all(bytes: usize) -> Self {
        Written { bytes, error: None }
    }
}

/// A sink of whole lines.
pub trait LineSink {
    /// Writes `lines` (each ending in '\n') from their start, as far as it can.
    fn write_lines(&mut self, lines: &[u8]) -> Written;

    /// A name for messages: "standard output", "the output file PATH", "the system log".
    fn name(&self) -> String;

    /// The reader went away for good (a closed pipe or socket on standard output).
    fn closed(&self) -> bool {
        false
    }
}

/// The end of the last whole line in `bytes` (0 when there is none).
pub fn whole_lines(bytes: &[u8]) -> usize {
    bytes
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |end| end + 1)
}
