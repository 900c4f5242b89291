//! An ended flow as the exporter's thread gets it: the collector's record, owned, so the
//! collector hands it over and goes on.

use fwlog_common::{event::Action, flow::EndReason};

use crate::{
    record::{Connection, Extras, FlowCounts, FlowRecord},
    values::Direction,
};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportFlow {
    /// First and last packet, milliseconds since the Unix epoch.
    pub start_ms: u64,
    pub end_ms: u64,
    pub connection: Connection,
    pub counts: FlowCounts,
    pub tcp_flags: Option<u8>,
    pub ifindex: u32,
    pub iface: Option<Box<str>>,
    pub reason: EndReason,
    pub action: Option<Action>,
    pub direction: Direction,
    pub extras: Extras,
}

impl ExportFlow {
    /// `None` for a flow without addresses (neither IPv4 nor IPv6), which IPFIX cannot say.
    pub fn of(record: &FlowRecord) -> Option<Self> {
        Some(ExportFlow {
            start_ms: unix_ms(record.start_unix_ns),
            end_ms: unix_ms(record.end_unix_ns),
            connection: record.connection?,
            counts: record.counts,
            tcp_flags: record.tcp_flags,
            ifindex: record.ifindex,
            iface: record.iface.map(Into::into),
            reason: record.reason,
            action: record.action,
            direction: record.direction,
            extras: record.extras.clone(),
        })
    }
}

/// dateTimeMilliseconds (RFC 7011 section 6.1.8) of a wall-clock time in nanoseconds; a time
/// before 1970 (a clock gone wrong) is the epoch.
fn unix_ms(unix_ns: i128) -> u64 {
    u64::try_from(unix_ns.div_euclid(1_000_000)).unwrap_or(0)
}
