//! The record of one event, built once by the collector from the kernel's bytes and read by
//! every later step (the filter and each line format): the oriented connection, what the
//! firewall did, and the extras (process, host names, Community ID). Nothing after it looks at
//! the kernel's structs again.

pub mod connection;
#[cfg(test)]
pub mod test_records;

use std::sync::Arc;

use fwlog_common::{
    event::{Action, CtState, VerdictEvent, VERDICT_HAS_SOCKET},
    flow::{EndReason, FlowKey, FlowStats},
    packet::{IPPROTO_TCP, PKT_HAS_TCP_FLAGS},
};

use crate::values::Direction;
pub use connection::{Connection, FlowCounts};

/// A new connection attempt that met a `LOG_AND_*` chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerdictRecord<'a> {
    pub unix_ns: i128,
    pub action: Option<Action>,
    pub ct_state: Option<CtState>,
    pub direction: Direction,
    /// The input interface (none in OUTPUT).
    pub in_iface: Option<&'a str>,
    /// `None` when the IP header could not be read.
    pub connection: Option<Connection>,
    /// Packet length from the IP header on.
    pub len: u32,
    pub tcp_flags: Option<u8>,
    /// The owner of the packet's local socket (outbound packets).
    pub socket_uid: Option<u32>,
    pub extras: Extras,
}

impl<'a> VerdictRecord<'a> {
    /// The record of `event`, whose `connection` the collector read with
    /// [`Connection::of_packet`] (its direction and extras depend on it).
    pub fn new(
        event: &VerdictEvent,
        connection: Option<Connection>,
        unix_ns: i128,
        direction: Direction,
        in_iface: Option<&'a str>,
        extras: Extras,
    ) -> Self {
        let packet = &event.packet;
        VerdictRecord {
            unix_ns,
            action: Action::from_u8(event.action),
            ct_state: CtState::from_u8(event.ct_state),
            direction,
            in_iface,
            connection,
            len: event.len,
            tcp_flags: (packet.flags & PKT_HAS_TCP_FLAGS != 0).then_some(packet.tcp_flags),
            socket_uid: (event.flags & VERDICT_HAS_SOCKET != 0).then_some(event.uid),
            extras,
        }
    }
}

/// A flow that ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowRecord<'a> {
    pub start_unix_ns: i128,
    pub end_unix_ns: i128,
    pub reason: EndReason,
    /// What a `LOG_AND_*` chain did with it, when one saw it.
    pub action: Option<Action>,
    pub ct_state: Option<CtState>,
    pub direction: Direction,
    /// The tc program's interface: its index, and its name when known.
    pub ifindex: u32,
    pub iface: Option<&'a str>,
    /// `None` for a key whose IP version is neither 4 nor 6.
    pub connection: Option<Connection>,
    pub counts: FlowCounts,
    /// Every TCP flag seen either way (TCP flows only).
    pub tcp_flags: Option<u8>,
    /// Type and code of the last ICMP error about the flow.
    pub icmp_error: Option<(u8, u8)>,
    pub extras: Extras,
}

/// What a flow record is made of besides the flow's own stats.
pub struct FlowContext<'a> {
    pub start_unix_ns: i128,
    pub end_unix_ns: i128,
    pub reason: EndReason,
    pub direction: Direction,
    pub iface: Option<&'a str>,
}

impl<'a> FlowRecord<'a> {
    /// The record of a flow whose `connection` and `counts` the collector read with
    /// [`Connection::of_flow`] from its key and `stats`.
    pub fn new(
        key: &FlowKey,
        stats: &FlowStats,
        (connection, counts): (Option<Connection>, FlowCounts),
        context: FlowContext<'a>,
        extras: Extras,
    ) -> Self {
        FlowRecord {
            start_unix_ns: context.start_unix_ns,
            end_unix_ns: context.end_unix_ns,
            reason: context.reason,
            action: Action::from_u8(stats.action),
            ct_state: CtState::from_u8(stats.ct_state),
            direction: context.direction,
            ifindex: key.ifindex,
            iface: context.iface,
            connection,
            counts,
            // The kernel keeps the flags in 64 bits for its atomic OR; only the low 8 are flags.
            tcp_flags: (key.proto == IPPROTO_TCP).then_some(stats.tcp_flags as u8),
            icmp_error: (stats.icmp_error_type != 0)
                .then_some((stats.icmp_error_type, stats.icmp_error_code)),
            extras,
        }
    }
}

/// Where events were lost (`where` in `lost` lines).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LossSite {
    /// The kernel found the ring buffer full.
    Ring,
    /// The IPFIX exporter's queue was full, or its message could not be sent.
    Export,
    /// An earlier install recorded them and no reader read them before a new install replaced
    /// it (a service restart).
    Replaced,
    /// The output (stdout, the file, the system log) failed for longer than its spool holds.
    Output,
}

impl LossSite {
    pub const fn as_str(self) -> &'static str {
        match self {
            LossSite::Ring => "ring",
            LossSite::Export => "export",
            LossSite::Replaced => "replaced",
            LossSite::Output => "output",
        }
    }
}

/// Counters for `stats` lines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatsRecord {
    pub events: u64,
    pub flows: u64,
    pub lost: u64,
    pub flows_tracked: u64,
    pub flows_evicted: u64,
    pub malformed: u64,
}

/// The process fields of an event (`"process":{…}`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcessView {
    pub pid: u32,
    pub comm: String,
    pub exe: Option<Arc<str>>,
    pub uid: u32,
    pub user: Option<Arc<str>>,
    /// systemd unit (`ssh.service`, `session-2.scope`), from the cgroup path.
    pub unit: Option<Arc<str>>,
    /// Docker/Podman container id, from the cgroup path.
    pub container: Option<Arc<str>>,
}

/// Everything optional an event line may carry besides the packet's own fields.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Extras {
    pub community_id: Option<String>,
    pub src_host: Option<Arc<str>>,
    pub dest_host: Option<Arc<str>>,
    pub process: Option<ProcessView>,
}
