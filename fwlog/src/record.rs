//! The record of one event, as every later step reads it: the filter, the enrichment and each
//! line format.

pub mod connection;
#[cfg(test)]
pub mod test_records;

use std::sync::Arc;

use fwlog_common::{
    event::VerdictEvent,
    flow::{EndReason, FlowKey, FlowStats},
};

use crate::values::Direction;

/// A verdict event with what the collector found out about it.
pub struct VerdictRecord<'a> {
    pub unix_ns: i128,
    pub event: &'a VerdictEvent,
    pub direction: Direction,
    pub in_iface: Option<&'a str>,
    pub extras: &'a Extras,
}

/// A flow that ended, with what the collector found out about it.
pub struct FlowRecord<'a> {
    pub start_unix_ns: i128,
    pub end_unix_ns: i128,
    pub key: &'a FlowKey,
    pub stats: &'a FlowStats,
    pub reason: EndReason,
    pub direction: Direction,
    pub iface: Option<&'a str>,
    pub extras: &'a Extras,
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
