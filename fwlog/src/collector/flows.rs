//! The user side of the flow table: sweeping idle flows, making room before the kernel's LRU
//! has to, flushing everything at exit, and counting the evictions the kernel did.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use aya::maps::{HashMap, MapData, PerCpuArray};
use fwlog_common::{
    flow::{EndReason, FlowKey, FlowStats, NewFlow, RST_LINGER_NS},
    packet::IPPROTO_TCP,
    tcp_seq::TCP_ACK,
};

use super::flow_filter::{self, MappedFilter};

/// A flow that ended, with why.
pub struct EndedFlow {
    pub key: FlowKey,
    pub stats: FlowStats,
    pub reason: EndReason,
}

/// Above this share of the table, the sweep ends the least recently seen flows itself (reported
/// as `evicted`), down to [`ROOM_TARGET`], so the kernel rarely has to evict unseen.
const CROWDED: f64 = 0.9;
const ROOM_TARGET: f64 = 0.75;

pub struct FlowTable {
    map: HashMap<MapData, FlowKey, FlowStats>,
    /// Per CPU, the inbound packet tc ingress proposed as a new flow and nothing confirmed
    /// yet (see [`NewFlow`]); read at exit for packets of flows the table holds.
    new_flows: Option<PerCpuArray<MapData, NewFlow>>,
    /// The kernel's count of tracked flows per key slot, which the flows removed here leave.
    filter: Option<MappedFilter>,
    /// The flows the table holds (`--flow-table-size`), whatever the map's own size.
    capacity: u32,
    idle_ns: u64,
    /// For established TCP connections (`--tcp-idle-timeout`).
    tcp_idle_ns: u64,
    sweep_every: Duration,
    last_sweep: Instant,
    /// Flows this side removed from the map (idle, crowded, exit).
    removed: u64,
    /// Flows in the map at the last sweep.
    pub tracked: u64,
}

impl FlowTable {
    pub fn new(
        map: HashMap<MapData, FlowKey, FlowStats>,
        new_flows: Option<PerCpuArray<MapData, NewFlow>>,
        filter: Option<MappedFilter>,
        capacity: u32,
        idle: Duration,
        tcp_idle: Duration,
    ) -> Self {
        FlowTable {
            map,
            new_flows,
            filter,
            capacity,
            idle_ns: idle.as_nanos() as u64,
            tcp_idle_ns: tcp_idle.as_nanos() as u64,
            // Often enough that idle flows are reported within a quarter of the timeout,
            // rarely enough that walking a full table costs little.
            sweep_every: (idle.min(tcp_idle) / 4)
                .clamp(Duration::from_secs(1), Duration::from_secs(10)),
            last_sweep: Instant::now(),
            removed: 0,
            tracked: 0,
        }
    }

    pub fn sweep_due(&self) -> bool {
        self.last_sweep.elapsed() >= self.sweep_every
    }

    /// Removes the flows idle for longer than the timeout and, when the table is crowded, the
    /// least recently seen ones; appends them to `ended`.
    pub fn sweep(&mut self, boot_now_ns: u64, ended: &mut Vec<EndedFlow>) -> Result<()> {
        self.last_sweep = Instant::now();
        // Entries the kernel removes while we walk fail to read: skipped.
        let all: Vec<(FlowKey, FlowStats)> = self.map.iter().filter_map(|e| e.ok()).collect();
        let mut live = Vec::with_capacity(all.len());
        for (key, stats) in all {
            match self.due(&key, &stats, boot_now_ns) {
                Some(reason) => self.end(key, stats, reason, ended)?,
                None => live.push((key, stats)),
            }
        }
        if live.len() as f64 > self.capacity as f64 * CROWDED {
            live.sort_by_key(|(_, stats)| stats.last_ns);
            let excess = live.len() - (self.capacity as f64 * ROOM_TARGET) as usize;
            for (key, stats) in live.drain(..excess) {
                self.end(key, stats, EndReason::Evicted, ended)?;
            }
        }
        self.tracked = live.len() as u64;
        Ok(())
    }

    /// Whether a flow's time is up, and why: after a RST the kernel did not seem to honour,
    /// when nothing followed it for [`RST_LINGER_NS`] (it did after all); an established TCP
    /// connection after `--tcp-idle-timeout`; anything else after `--idle-timeout`.
    fn due(&self, key: &FlowKey, stats: &FlowStats, boot_now_ns: u64) -> Option<EndReason> {
        let quiet = boot_now_ns.saturating_sub(stats.last_ns);
        if stats.rst_ns != 0 && stats.last_ns <= stats.rst_ns && quiet >= RST_LINGER_NS {
            return Some(EndReason::Rst);
        }
        let timeout = if is_established_tcp(key, stats) {
            self.tcp_idle_ns
        } else {
            self.idle_ns
        };
        (quiet >= timeout).then_some(EndReason::Idle)
    }

    /// Ends every flow still in the table (fwlog is stopping; the rules and the tc programs
    /// are gone, so nothing changes them meanwhile). Flows that no verdict or answer
    /// confirmed were never flows, and are not reported.
    pub fn flush(&mut self, ended: &mut Vec<EndedFlow>) -> Result<()> {
        let mut in_table: Vec<(FlowKey, FlowStats)> =
            self.map.iter().filter_map(|e| e.ok()).collect();
        for proposal in self.waiting_new_flows()? {
            // A packet of a tracked flow that the flow filter took for a new one.
            if let Some((_, stats)) = in_table.iter_mut().find(|(key, _)| *key == proposal.key) {
                add_first_packet(stats, &proposal);
            }
        }
        for (key, stats) in in_table {
            self.end(key, stats, EndReason::Exit, ended)?;
        }
        self.tracked = 0;
        Ok(())
    }

    /// Flows the kernel's LRU dropped without anyone seeing them end: every flow it created was
    /// either ended by the kernel (FIN, RST), removed here, is still in the table, or was evicted.
    pub fn evicted_by_kernel(&self, created: u64, ended_in_kernel: u64) -> u64 {
        created.saturating_sub(ended_in_kernel + self.removed + self.tracked)
    }

    /// Recounts the flow filter from the table: after the kernel's LRU evicted flows, their
    /// counts stay behind (harmless, but each makes a slot look taken).
    pub fn recount_filter(&self) {
        if let Some(filter) = &self.filter {
            let keys: Vec<FlowKey> = self.map.keys().filter_map(|key| key.ok()).collect();
            flow_filter::recount(filter.slots(), &keys);
        }
    }

    fn end(
        &mut self,
        key: FlowKey,
        stats: FlowStats,
        reason: EndReason,
        ended: &mut Vec<EndedFlow>,
    ) -> Result<()> {
        match self.map.remove(&key) {
            Ok(()) => {
                if let Some(filter) = &self.filter {
                    flow_filter::count_out(filter.slots(), &key);
                }
                self.removed += 1;
                ended.push(EndedFlow { key, stats, reason });
                Ok(())
            }
            // Ended by the kernel (FIN/RST) or evicted since we read it: not ours to report.
            Err(error) if is_not_found(&error) => Ok(()),
            Err(error) => Err(error).context("removing a flow from the flow table"),
        }
    }
}

impl FlowTable {
    /// The proposals still waiting on each CPU.
    fn waiting_new_flows(&self) -> Result<Vec<NewFlow>> {
        let Some(new_flows) = &self.new_flows else {
            return Ok(Vec::new());
        };
        let per_cpu = new_flows
            .get(&0, 0)
            .context("reading the flows proposed on each CPU")?;
        Ok(per_cpu.iter().filter(|p| p.waiting != 0).copied().collect())
    }
}

/// Counts a waiting proposal's packets to the flow the table holds under the same key, as
/// the kernel would have when it next ran on that CPU.
fn add_first_packet(stats: &mut FlowStats, proposal: &NewFlow) {
    let side = usize::from(proposal.side & 1);
    stats.pkts[side] += proposal.stats.pkts[side];
    stats.bytes[side] += proposal.stats.bytes[side];
    stats.tcp_flags |= proposal.stats.tcp_flags;
    stats.last_ns = stats.last_ns.max(proposal.stats.last_ns);
}

/// A TCP connection both sides took part in (the answer's SYN-ACK, or anything after it): a
/// pause in it is not its end. A half-open one (a SYN and nothing back) is not.
fn is_established_tcp(key: &FlowKey, stats: &FlowStats) -> bool {
    let answerer = usize::from(stats.opener & 1 ^ 1);
    key.proto == IPPROTO_TCP
        && stats.pkts[answerer] > 0
        && stats.tcp_flags & u64::from(TCP_ACK) != 0
}

fn is_not_found(error: &aya::maps::MapError) -> bool {
    match error {
        aya::maps::MapError::KeyNotFound => true,
        aya::maps::MapError::SyscallError(aya::sys::SyscallError { io_error, .. }) => {
            io_error.raw_os_error() == Some(libc::ENOENT)
        }
        _ => false,
    }
}
