//! The summary as data: the top rows of each tally, in the shape `--json` prints and the text
//! tables show.

use std::{cmp::Ordering, hash::Hash};

use serde::{Serialize, Serializer};

use super::{
    tally::{CappedMap, HourTally, LineCounts, PortTally, ProcessTally, SourceTally, Tally},
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
}

#[derive(Debug, Serialize)]
pub struct DestinationRow {
    /// `dest_host` when fwlog resolved it, else `dest_ip`.
    pub destination: String,
    pub connections: u64,
    pub flows: u64,
    pub bytes: u64,
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
}

#[derive(Debug, Serialize)]
pub struct PortRow {
    pub port: u16,
    pub proto: String,
    pub attempts: u64,
    pub accepted: u64,
    /// Dropped or rejected.
    pub dropped: u64,
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

#[derive(Debug, Serialize)]
pub struct Report {
    pub inputs: Vec<String>,
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
}

impl Report {
    /// The `top` rows of each table (the timeline keeps every hour).
    pub fn new(
        tally: &Tally,
        inputs: Vec<String>,
        window: (Option<i64>, Option<i64>),
        top: usize,
    ) -> Self {
        Report {
            inputs,
            since: window.0,
            until: window.1,
            lines: tally.lines,
            first_event: tally.first_event,
            last_event: tally.last_event,
            events_lost: tally.events_lost,
            flows_evicted: tally.flows_evicted,
            key_limit: tally.limits.keys,
            blocked_sources: table(
                &tally.sources,
                top,
                |(a_ip, a), (b_ip, b)| b.attempts.cmp(&a.attempts).then(a_ip.cmp(b_ip)),
                |ip, source| source_row(ip.to_string(), source),
                |source| source_row("other".into(), source),
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
                },
                |traffic| DestinationRow {
                    destination: "other".into(),
                    connections: traffic.connections,
                    flows: traffic.flows,
                    bytes: traffic.bytes,
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
                |_, process| process_row(process),
                |process| ProcessRow {
                    comm: Some("other".into()),
                    ..process_row(process)
                },
            ),
            local_ports: table(
                &tally.local_ports,
                top,
                |(a_key, a), (b_key, b)| b.attempts.cmp(&a.attempts).then(a_key.cmp(b_key)),
                |&(proto, port), tally| port_row(proto, port, tally),
                |tally| PortRow {
                    proto: "other".into(),
                    ..port_row(0, 0, tally)
                },
            ),
            timeline: table(
                &tally.hours,
                usize::MAX,
                |(a_hour, _), (b_hour, _)| a_hour.cmp(b_hour),
                |&hour, tally| hour_row(Some(hour), tally),
                |tally| hour_row(None, tally),
            ),
        }
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

fn source_row(src_ip: String, source: &SourceTally) -> SourceRow {
    SourceRow {
        src_ip,
        attempts: source.attempts,
        distinct_dest_ports: source.distinct_ports,
        dest_ports: source.lowest_ports.as_slice().to_vec(),
        dest_ports_estimated: source.ports_estimated,
        first_seen: source.first_seen,
        last_seen: source.last_seen,
    }
}

fn process_row(process: &ProcessTally) -> ProcessRow {
    ProcessRow {
        comm: process.comm.clone(),
        exe: process.exe.clone(),
        connections: process.traffic.connections,
        flows: process.traffic.flows,
        bytes: process.traffic.bytes,
    }
}

fn port_row(proto: u8, port: u16, tally: &PortTally) -> PortRow {
    PortRow {
        port,
        proto: Protocol(proto)
            .name()
            .map_or_else(|| proto.to_string(), str::to_string),
        attempts: tally.attempts,
        accepted: tally.accepted,
        dropped: tally.dropped,
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
