//! Counting lines into bounded maps: per blocked source, outbound destination, process, local
//! port, hour and host. Past a map's key limit, further keys are counted together as "other".

use std::{
    borrow::Borrow,
    collections::{HashMap, HashSet},
    hash::Hash,
    net::IpAddr,
};

use fwlog_common::event::Action;
use serde::Serialize;

use super::{
    hosts::{HostSet, HostTally, HOSTS_NAMED},
    time::MICROS_PER_HOUR,
};
use crate::{
    filter::Filter,
    log_line::LogLine,
    values::{action_named, Direction, Protocol},
};

/// Bounds on memory: keys per table, and (source, port) pairs remembered to count distinct ports.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub keys: usize,
    pub source_ports: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            keys: 1_000_000,
            source_ports: 4_000_000,
        }
    }
}

/// Ports listed per blocked source (the lowest ones).
pub const PORTS_LISTED: usize = 5;

/// A map that stops taking new keys at its limit and adds their values to `other` instead.
pub struct CappedMap<K, V> {
    map: HashMap<K, V>,
    limit: usize,
    other: V,
    other_used: bool,
}

impl<K: Hash + Eq, V: Default> CappedMap<K, V> {
    pub fn new(limit: usize) -> Self {
        CappedMap {
            map: HashMap::new(),
            limit,
            other: V::default(),
            other_used: false,
        }
    }

    /// The value of `key`, inserted if new and the map has room, else the "other" value.
    pub fn slot<Q>(&mut self, key: &Q) -> &mut V
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        // Two lookups on a hit: returning `get_mut`'s borrow and inserting after it does not
        // pass today's borrow checker.
        if !self.map.contains_key(key) {
            if self.map.len() >= self.limit {
                self.other_used = true;
                return &mut self.other;
            }
            self.map.insert(key.to_owned(), V::default());
        }
        match self.map.get_mut(key) {
            Some(value) => value,
            None => &mut self.other,
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.map.iter()
    }

    /// What was counted for keys beyond the limit, if anything was.
    pub fn other(&self) -> Option<&V> {
        self.other_used.then_some(&self.other)
    }
}

/// How many lines of each kind were read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LineCounts {
    /// Lines that were not blank.
    pub read: u64,
    /// Not a JSON object, not fwlog's field types, or no valid `timestamp`.
    pub skipped: u64,
    /// Outside `--since`/`--until`.
    pub outside_time_range: u64,
    /// Verdict and flow lines the filters (`--action`, `--dir`, …) left out.
    pub filtered_out: u64,
    pub verdict: u64,
    pub flow: u64,
    pub lost: u64,
    pub flows_evicted: u64,
    pub stats: u64,
    /// Lines with another or no `event_type`.
    pub other: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SourceTally {
    /// Number of this source in the (source, port) set; `None` until its first port.
    pub id: Option<u32>,
    pub attempts: u64,
    pub distinct_ports: u64,
    /// The (source, port) set was full: `distinct_ports` may count a port more than once.
    pub ports_estimated: bool,
    pub lowest_ports: LowestPorts,
    pub first_seen: i64,
    pub last_seen: i64,
    pub hosts: HostSet,
}

/// The [`PORTS_LISTED`] lowest distinct ports, sorted, without allocating.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LowestPorts {
    ports: [u16; PORTS_LISTED],
    len: u8,
}

impl LowestPorts {
    pub fn as_slice(&self) -> &[u16] {
        &self.ports[..usize::from(self.len)]
    }

    fn contains(&self, port: u16) -> bool {
        self.as_slice().contains(&port)
    }

    fn insert(&mut self, port: u16) {
        if self.contains(port) {
            return;
        }
        let len = usize::from(self.len);
        if len < PORTS_LISTED {
            self.ports[len] = port;
            self.len += 1;
        } else if port < self.ports[PORTS_LISTED - 1] {
            self.ports[PORTS_LISTED - 1] = port;
        } else {
            return;
        }
        let len = usize::from(self.len);
        self.ports[..len].sort_unstable();
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrafficTally {
    /// Verdict lines (new connection attempts).
    pub connections: u64,
    /// Flow lines (ended flows).
    pub flows: u64,
    /// IP bytes both ways, from flow lines.
    pub bytes: u64,
    pub hosts: HostSet,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcessTally {
    pub comm: Option<String>,
    pub exe: Option<String>,
    pub traffic: TrafficTally,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PortTally {
    pub attempts: u64,
    pub accepted: u64,
    /// Dropped or rejected.
    pub dropped: u64,
    pub hosts: HostSet,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HourTally {
    /// Inbound verdict lines.
    pub inbound: u64,
    /// Outbound verdict lines.
    pub outbound: u64,
    /// Verdict lines with action drop or reject.
    pub dropped: u64,
    /// Flow lines that ended in this hour.
    pub flows: u64,
}

/// Everything counted so far.
pub struct Tally {
    pub limits: Limits,
    pub lines: LineCounts,
    pub events_lost: u64,
    /// Sum of the `lost` lines with `where: export`: flows IPFIX did not get (their lines
    /// are here).
    pub flows_lost_to_export: u64,
    pub flows_evicted: u64,
    pub first_event: Option<i64>,
    pub last_event: Option<i64>,
    pub sources: CappedMap<IpAddr, SourceTally>,
    source_ports: HashSet<(u32, u16)>,
    next_source_id: u32,
    pub destinations: CappedMap<String, TrafficTally>,
    pub processes: CappedMap<String, ProcessTally>,
    /// Keyed by (protocol number, port).
    pub local_ports: CappedMap<(u8, u16), PortTally>,
    /// Keyed by hours since the Unix epoch (UTC).
    pub hours: CappedMap<i64, HourTally>,
    pub hosts: Hosts,
}

impl Tally {
    pub fn new(limits: Limits) -> Self {
        Tally {
            limits,
            lines: LineCounts::default(),
            events_lost: 0,
            flows_lost_to_export: 0,
            flows_evicted: 0,
            first_event: None,
            last_event: None,
            sources: CappedMap::new(limits.keys),
            source_ports: HashSet::new(),
            next_source_id: 0,
            destinations: CappedMap::new(limits.keys),
            processes: CappedMap::new(limits.keys),
            local_ports: CappedMap::new(limits.keys),
            hours: CappedMap::new(limits.keys),
            hosts: Hosts::new(limits.keys),
        }
    }

    /// Counts one parsed line with a valid timestamp `at` (microseconds) inside the time range.
    pub fn add(&mut self, line: &LogLine, at: i64, filter: &Filter) {
        match line.event_type.as_deref() {
            Some("verdict") if filter.matches_json(line) => {
                self.lines.verdict += 1;
                self.seen_at(at);
                self.add_verdict(line, at);
            }
            Some("flow") if filter.matches_json(line) => {
                self.lines.flow += 1;
                self.seen_at(at);
                self.add_flow(line, at);
            }
            Some("verdict" | "flow") => self.lines.filtered_out += 1,
            Some("lost") => {
                self.lines.lost += 1;
                let count = line.count.unwrap_or(0);
                if line.lost_at.as_deref() == Some("export") {
                    self.flows_lost_to_export = self.flows_lost_to_export.saturating_add(count);
                    return;
                }
                self.events_lost = self.events_lost.saturating_add(count);
                if let Some(host) = line.host.as_deref() {
                    let tally = self.hosts.slot(host);
                    tally.events_lost = tally.events_lost.saturating_add(count);
                }
            }
            Some("flows_evicted") => {
                self.lines.flows_evicted += 1;
                self.flows_evicted = self.flows_evicted.saturating_add(line.count.unwrap_or(0));
            }
            Some("stats") => self.lines.stats += 1,
            _ => self.lines.other += 1,
        }
    }

    fn seen_at(&mut self, at: i64) {
        self.first_event = Some(self.first_event.map_or(at, |first| first.min(at)));
        self.last_event = Some(self.last_event.map_or(at, |last| last.max(at)));
    }

    /// The host of `line` counted with `count`; its bit for the rows' host sets (`None` past
    /// the named hosts), or `None` and no host for a line without one.
    fn host_of(
        &mut self,
        line: &LogLine,
        count: impl FnOnce(&mut HostTally),
    ) -> Option<Option<u8>> {
        let tally = self.hosts.slot(line.host.as_deref()?);
        count(tally);
        Some(tally.bit)
    }

    fn add_verdict(&mut self, line: &LogLine, at: i64) {
        let action = line.action.as_deref().and_then(action_named);
        let dropped = matches!(action, Some(Action::Drop | Action::Reject));
        let direction = line.direction.as_deref().and_then(Direction::named);
        let host = self.host_of(line, |tally| {
            tally.verdicts += 1;
            tally.dropped += u64::from(dropped);
        });
        let mark = |set: &mut HostSet| {
            if let Some(bit) = host {
                set.insert(bit);
            }
        };

        let hour = self.hours.slot(&at.div_euclid(MICROS_PER_HOUR));
        hour.inbound += u64::from(direction == Some(Direction::Inbound));
        hour.outbound += u64::from(direction == Some(Direction::Outbound));
        hour.dropped += u64::from(dropped);

        if dropped {
            if let Some(source) = line.src_ip.as_deref().and_then(|ip| ip.parse().ok()) {
                mark(&mut self.add_blocked(source, line.dest_port, at).hosts);
            }
        }
        if direction == Some(Direction::Outbound) {
            if let Some(destination) = destination_name(line) {
                let tally = self.destinations.slot(destination);
                tally.connections += 1;
                mark(&mut tally.hosts);
            }
        }
        if let Some(process) = self.process_slot(line) {
            process.traffic.connections += 1;
            mark(&mut process.traffic.hosts);
        }
        if direction == Some(Direction::Inbound) {
            let proto = line.proto.as_deref().and_then(Protocol::named).map(|p| p.0);
            if let (Some(port), Some(proto)) = (line.dest_port, proto) {
                let tally = self.local_ports.slot(&(proto, port));
                tally.attempts += 1;
                tally.accepted += u64::from(action == Some(Action::Accept));
                tally.dropped += u64::from(dropped);
                mark(&mut tally.hosts);
            }
        }
    }

    /// Counts an attempt from a blocked source; returns its tally.
    fn add_blocked(&mut self, source: IpAddr, dest_port: Option<u16>, at: i64) -> &mut SourceTally {
        self.count_blocked(source, dest_port, at);
        self.sources.slot(&source)
    }

    fn count_blocked(&mut self, source: IpAddr, dest_port: Option<u16>, at: i64) {
        let tally = self.sources.slot(&source);
        if tally.attempts == 0 {
            tally.first_seen = at;
            tally.last_seen = at;
        }
        tally.attempts += 1;
        tally.first_seen = tally.first_seen.min(at);
        tally.last_seen = tally.last_seen.max(at);
        let Some(port) = dest_port else {
            return;
        };
        // The "other" source gets an id like any other, on its first port.
        let id = *tally.id.get_or_insert_with(|| {
            self.next_source_id = self.next_source_id.saturating_add(1);
            self.next_source_id
        });
        if self.source_ports.contains(&(id, port)) {
            return;
        }
        if self.source_ports.len() < self.limits.source_ports {
            self.source_ports.insert((id, port));
        } else if tally.lowest_ports.contains(port) {
            return;
        } else {
            // Not remembered: a port seen again from now on is counted again.
            tally.ports_estimated = true;
        }
        tally.distinct_ports += 1;
        tally.lowest_ports.insert(port);
    }

    fn add_flow(&mut self, line: &LogLine, at: i64) {
        let bytes = line.flow_bytes();
        let host = self.host_of(line, |tally| {
            tally.flows += 1;
            tally.bytes = tally.bytes.saturating_add(bytes);
        });
        let mark = |set: &mut HostSet| {
            if let Some(bit) = host {
                set.insert(bit);
            }
        };
        self.hours.slot(&at.div_euclid(MICROS_PER_HOUR)).flows += 1;
        if line.direction.as_deref().and_then(Direction::named) == Some(Direction::Outbound) {
            if let Some(destination) = destination_name(line) {
                let tally = self.destinations.slot(destination);
                tally.flows += 1;
                tally.bytes = tally.bytes.saturating_add(bytes);
                mark(&mut tally.hosts);
            }
        }
        if let Some(process) = self.process_slot(line) {
            process.traffic.flows += 1;
            process.traffic.bytes = process.traffic.bytes.saturating_add(bytes);
            mark(&mut process.traffic.hosts);
        }
    }

    /// The process of a line with a `process` object naming a `comm` or an `exe`.
    fn process_slot(&mut self, line: &LogLine) -> Option<&mut ProcessTally> {
        let process = line.process.as_ref()?;
        let (comm, exe) = (process.comm.as_deref(), process.exe.as_deref());
        let tally = self.processes.slot(exe.or(comm)?);
        if tally.comm.is_none() && tally.exe.is_none() {
            tally.comm = comm.map(str::to_string);
            tally.exe = exe.map(str::to_string);
        }
        Some(tally)
    }
}

/// Where an outbound line goes: the name fwlog resolved, else the address.
fn destination_name<'l>(line: &'l LogLine) -> Option<&'l str> {
    line.dest_host.as_deref().or(line.dest_ip.as_deref())
}

/// The hosts seen so far, with a bit for each of the first [`HOSTS_NAMED`].
pub struct Hosts {
    pub tallies: CappedMap<String, HostTally>,
    /// Host names by bit.
    pub names: Vec<String>,
}

impl Hosts {
    pub fn new(limit: usize) -> Self {
        Hosts {
            tallies: CappedMap::new(limit),
            names: Vec::new(),
        }
    }

    /// The tally of host `name` (a new one gets the next bit while there are bits left; the
    /// "other" tally past the key limit never has one).
    pub fn slot(&mut self, name: &str) -> &mut HostTally {
        let known = self.tallies.len();
        let next_bit = self.names.len();
        let grew = {
            let _ = self.tallies.slot(name);
            self.tallies.len() > known
        };
        if grew && next_bit < HOSTS_NAMED {
            self.names.push(name.to_string());
            let tally = self.tallies.slot(name);
            tally.bit = Some(next_bit as u8);
            return tally;
        }
        self.tallies.slot(name)
    }

    /// The names of the hosts in `set`, and whether it holds others past them.
    pub fn names_of(&self, set: &HostSet) -> Vec<String> {
        set.bits()
            .filter_map(|bit| self.names.get(usize::from(bit)).cloned())
            .collect()
    }
}
