//! The summary as data: the top rows of each tally, in the shape `--json` prints and the text
//! tables show.

use std::{cmp::Ordering, hash::Hash};

use serde::{Serialize, Serializer};

use super::{
    hosts::HostTally,
    tally::{CappedMap, Hosts, HourTally, LineCounts, PortTally, ProcessTally, SourceTally, Tally},
    time::rfc3339,
};
use crate::values::Protocol;

/// Rows of one table; `other` sums what was counted for keys past the key limit.
#[derive(Debug, Serialize)]
pub struct Table<R> {
    /// Distinct keys counted (without `other`).
    pub distinct: usize,
    pub rows: Vec<R>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub other: Option<R>,
}

#[derive(Debug, Serialize)]
pub struct SourceRow {
    pub src_ip: String,
    pub attempts: u64,
    pub distinct_dest_ports: u64,
    /// The lowest of them, at most [`super::tally::PORTS_LISTED`].
    pub dest_ports: Vec<u16>,
    /// `distinct_dest_ports` may count a port twice (the (source, port) set was full).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub dest_ports_estimated: bool,
    #[serde(serialize_with = "as_rfc3339")]
    pub first_seen: i64,
    #[serde(serialize_with = "as_rfc3339")]
    pub last_seen: i64,
    /// The hosts it was seen on, when the lines name them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// Seen on more hosts than [`super::hosts::HOSTS_NAMED`] named ones.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub more_hosts: bool,
}

#[derive(Debug, Serialize)]
pub struct DestinationRow {
    /// `dest_host` when fwlog resolved it, else `dest_ip`.
    pub destination: String,
    pub connections: u64,
    pub flows: u64,
    pub bytes: u64,
    /// The hosts it was seen on, when the lines name them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// Seen on more hosts than [`super::hosts::HOSTS_NAMED`] named ones.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub more_hosts: bool,
}

#[derive(Debug, Serialize)]
pub struct ProcessRow {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comm: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exe: Option<String>,
    pub connections: u64,
    pub flows: u64,
    pub bytes: u64,
    /// The hosts it was seen on, when the lines name them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// Seen on more hosts than [`super::hosts::HOSTS_NAMED`] named ones.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub more_hosts: bool,
}

#[derive(Debug, Serialize)]
pub struct PortRow {
    pub port: u16,
    pub proto: String,
    pub attempts: u64,
    pub accepted: u64,
    /// Dropped or rejected.
    pub dropped: u64,
    /// The hosts it was seen on, when the lines name them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// Seen on more hosts than [`super::hosts::HOSTS_NAMED`] named ones.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub more_hosts: bool,
}

#[derive(Debug, Serialize)]
pub struct HourRow {
    /// Start of the UTC hour (`null` for the "other" row).
    #[serde(serialize_with = "as_optional_rfc3339")]
    pub hour: Option<i64>,
    pub inbound: u64,
    pub outbound: u64,
    /// Dropped or rejected.
    pub dropped: u64,
    pub flows: u64,
}

/// One host's lines.
#[derive(Debug, Serialize)]
pub struct HostRow {
    pub host: String,
    pub verdicts: u64,
    /// Dropped or rejected.
    pub dropped: u64,
    pub flows: u64,
    pub bytes: u64,
    pub events_lost: u64,
}

/// What one input gave: its lines, and why it stopped early if it did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FileReport {
    pub name: String,
    /// Lines read from it (not blank), counted in the tables as any other.
    pub lines: u64,
    /// Of those, lines that were not fwlog JSON lines.
    pub skipped: u64,
    /// Why it could not be read (to the end): the lines before are counted, the rest not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub inputs: Vec<String>,
    /// Per input, in the order named.
    pub files: Vec<FileReport>,
    #[serde(serialize_with = "as_optional_rfc3339")]
    pub since: Option<i64>,
    #[serde(serialize_with = "as_optional_rfc3339")]
    pub until: Option<i64>,
    pub lines: LineCounts,
    #[serde(serialize_with = "as_optional_rfc3339")]
    pub first_event: Option<i64>,
    #[serde(serialize_with = "as_optional_rfc3339")]
    pub last_event: Option<i64>,
    /// Sum of the `lost` lines' counts: events the kernel could not queue.
    pub events_lost: u64,
    /// Sum of the `lost` lines with `where: export`.
    pub flows_lost_to_export: u64,
    /// Sum of the `flows_evicted` lines' counts.
    pub flows_evicted: u64,
    /// Keys each table holds before counting further ones as `other`.
    pub key_limit: usize,
    pub blocked_sources: Table<SourceRow>,
    pub outbound_destinations: Table<DestinationRow>,
    pub processes: Table<ProcessRow>,
    pub local_ports: Table<PortRow>,
    /// Every hour with events, oldest first.
    pub timeline: Table<HourRow>,
    /// The hosts the lines came from (`host`), most verdicts first.
    pub hosts: Table<HostRow>,
}

impl Report {
    /// The `top` rows of each table (the timeline keeps every hour).
    pub fn new(
        tally: &Tally,
        files: Vec<FileReport>,
        window: (Option<i64>, Option<i64>),
        top: usize,
    ) -> Self {
        let hosts = &tally.hosts;
        Report {
            inputs: files.iter().map(|file| file.name.clone()).collect(),
            files,
            since: window.0,
            until: window.1,
            lines: tally.lines,
            first_event: tally.first_event,
            last_event: tally.last_event,
            events_lost: tally.events_lost,
            flows_lost_to_export: tally.flows_lost_to_export,
            flows_evicted: tally.flows_evicted,
            key_limit: tally.limits.keys,
            blocked_sources: table(
                &tally.sources,
                top,
                |(a_ip, a), (b_ip, b)| b.attempts.cmp(&a.attempts).then(a_ip.cmp(b_ip)),
                |ip, source| source_row(ip.to_string(), source, hosts),
                |source| source_row("other".into(), source, hosts),
            ),
            outbound_destinations: table(
                &tally.destinations,
                top,
                |(a_name, a), (b_name, b)| {
                    (b.connections, b.flows, b.bytes)
                        .cmp(&(a.connections, a.flows, a.bytes))
                        .then(a_name.cmp(b_name))
                },
                |name, traffic| DestinationRow {
                    destination: name.clone(),
                    connections: traffic.connections,
                    flows: traffic.flows,
                    bytes: traffic.bytes,
                    hosts: hosts.names_of(&traffic.hosts),
                    more_hosts: traffic.hosts.more,
                },
                |traffic| DestinationRow {
                    destination: "other".into(),
                    connections: traffic.connections,
                    flows: traffic.flows,
                    bytes: traffic.bytes,
                    hosts: hosts.names_of(&traffic.hosts),
                    more_hosts: traffic.hosts.more,
                },
            ),
            processes: table(
                &tally.processes,
                top,
                |(a_key, a), (b_key, b)| {
                    let (a, b) = (&a.traffic, &b.traffic);
                    (b.connections, b.flows, b.bytes)
                        .cmp(&(a.connections, a.flows, a.bytes))
                        .then(a_key.cmp(b_key))
                },
                |_, process| process_row(process, hosts),
                |process| ProcessRow {
                    comm: Some("other".into()),
                    ..process_row(process, hosts)
                },
            ),
            local_ports: table(
                &tally.local_ports,
                top,
                |(a_key, a), (b_key, b)| b.attempts.cmp(&a.attempts).then(a_key.cmp(b_key)),
                |&(proto, port), tally| port_row(proto, port, tally, hosts),
                |tally| PortRow {
                    proto: "other".into(),
                    ..port_row(0, 0, tally, hosts)
                },
            ),
            timeline: table(
                &tally.hours,
                usize::MAX,
                |(a_hour, _), (b_hour, _)| a_hour.cmp(b_hour),
                |&hour, tally| hour_row(Some(hour), tally),
                |tally| hour_row(None, tally),
            ),
            hosts: table(
                &hosts.tallies,
                usize::MAX,
                |(a_name, a), (b_name, b)| {
                    (b.verdicts, b.flows)
                        .cmp(&(a.verdicts, a.flows))
                        .then(a_name.cmp(b_name))
                },
                |name, tally| host_row(name.clone(), tally),
                |tally| host_row("other".into(), tally),
            ),
        }
    }

    /// Whether the lines came from several hosts (the text tables then say where).
    pub fn several_hosts(&self) -> bool {
        self.hosts.rows.len() + usize::from(self.hosts.other.is_some()) > 1
    }
}

/// The first `top` entries in `order`, as rows.
fn table<K: Hash + Eq, V: Default, R>(
    map: &CappedMap<K, V>,
    top: usize,
    order: impl Fn((&K, &V), (&K, &V)) -> Ordering,
    row: impl Fn(&K, &V) -> R,
    other_row: impl Fn(&V) -> R,
) -> Table<R> {
    let mut entries: Vec<(&K, &V)> = map.iter().collect();
    let compare = |a: &(&K, &V), b: &(&K, &V)| order(*a, *b);
    if top == 0 {
        entries.clear();
    } else if entries.len() > top {
        entries.select_nth_unstable_by(top - 1, compare);
        entries.truncate(top);
    }
    entries.sort_unstable_by(compare);
    Table {
        distinct: map.len(),
        rows: entries
            .into_iter()
            .map(|(key, value)| row(key, value))
            .collect(),
        other: map.other().map(other_row),
    }
}

fn source_row(src_ip: String, source: &SourceTally, hosts: &Hosts) -> SourceRow {
    SourceRow {
        hosts: hosts.names_of(&source.hosts),
        more_hosts: source.hosts.more,
        src_ip,
        attempts: source.attempts,
        distinct_dest_ports: source.distinct_ports,
        dest_ports: source.lowest_ports.as_slice().to_vec(),
        dest_ports_estimated: source.ports_estimated,
        first_seen: source.first_seen,
        last_seen: source.last_seen,
    }
}

fn process_row(process: &ProcessTally, hosts: &Hosts) -> ProcessRow {
    ProcessRow {
        hosts: hosts.names_of(&process.traffic.hosts),
        more_hosts: process.traffic.hosts.more,
        comm: process.comm.clone(),
        exe: process.exe.clone(),
        connections: process.traffic.connections,
        flows: process.traffic.flows,
        bytes: process.traffic.bytes,
    }
}

fn port_row(proto: u8, port: u16, tally: &PortTally, hosts: &Hosts) -> PortRow {
    PortRow {
        hosts: hosts.names_of(&tally.hosts),
        more_hosts: tally.hosts.more,
        port,
        proto: Protocol(proto)
            .name()
            .map_or_else(|| proto.to_string(), str::to_string),
        attempts: tally.attempts,
        accepted: tally.accepted,
        dropped: tally.dropped,
    }
}

fn host_row(host: String, tally: &HostTally) -> HostRow {
    HostRow {
        host,
        verdicts: tally.verdicts,
        dropped: tally.dropped,
        flows: tally.flows,
        bytes: tally.bytes,
        events_lost: tally.events_lost,
    }
}

fn hour_row(hour: Option<i64>, tally: &HourTally) -> HourRow {
    HourRow {
        hour: hour.map(|hour| hour.saturating_mul(super::time::MICROS_PER_HOUR)),
        inbound: tally.inbound,
        outbound: tally.outbound,
        dropped: tally.dropped,
        flows: tally.flows,
    }
}

fn as_rfc3339<S: Serializer>(micros: &i64, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&rfc3339(*micros))
}

fn as_optional_rfc3339<S: Serializer>(
    micros: &Option<i64>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match micros {
        Some(micros) => as_rfc3339(micros, serializer),
        None => serializer.serialize_none(),
    }
}
