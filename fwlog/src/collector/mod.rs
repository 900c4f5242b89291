//! Reading the ring buffers: events → lines to the sinks, one batch per read (a sink that fails
//! keeps its lines in its spool and never stops the collector); the kernel's counters turned
//! into `lost` and `flows_evicted` lines as soon as they move; idle flows swept from the flow
//! table. Each record also goes to the metrics' counts and, for ended flows, to the IPFIX
//! exporter's queue, when those are on.

pub mod clock;
pub mod direction;
pub mod flow_filter;
pub mod flows;
pub mod interface_names;
pub mod maps;
pub mod records;

use std::{future::Future, task::Poll, time::Duration};

use anyhow::{Context as _, Result};
use aya::maps::{MapData, PerCpuArray, RingBuf};
use fwlog_common::{
    counters::{
        FLOWS_CREATED, FLOWS_ENDED, LOST_BEFORE_REPLACEMENT, LOST_BEFORE_REPLACEMENT_REPORTED,
        LOST_EVENTS, LOST_EVENTS_REPORTED, MALFORMED_PACKETS,
    },
    dns::{DnsEvent, EVENT_KIND_DNS},
    event::{VerdictEvent, EVENT_KIND_VERDICT},
    flow::{EndReason, FlowEndEvent},
};
use tokio::io::{unix::AsyncFd, Interest};

use crate::{
    enrich::Enricher,
    filter::Filter,
    metrics::Metrics,
    output::{
        destination::Outputs, format::EventWriter, sink::ipfix::IpfixExporter, spool::Batch,
        writer::FormatWriter,
    },
    record::{LossSite, StatsRecord},
    unread::set_user_counter,
};
use clock::BootClock;
use flows::{EndedFlow, FlowTable};
use records::RecordBuilder;

/// How often the ring buffer is read when the kernel does not wake us: its programs wake the
/// collector only when the ring is an eighth full (see `submit_flags` in fwlog-ebpf), so this
/// bounds how long a line waits before it is written (and the loss counter is read).
const TICK: Duration = Duration::from_millis(20);

/// How long the exit waits for the IPFIX exporter to send what it holds.
const EXPORT_DRAIN: Duration = Duration::from_secs(2);

/// What the collector saw, for the summary at exit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub events: u64,
    pub flows: u64,
    pub lost: u64,
    pub evicted: u64,
    pub malformed: u64,
    /// Flows the IPFIX exporter could not queue or send.
    pub lost_export: u64,
    /// Events an earlier install recorded and no reader read before this one replaced it.
    pub lost_replaced: u64,
    /// Events a sink never got (it failed for longer than its spool holds), once per sink.
    pub lost_output: u64,
}

/// Why [`Collector::run_until`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// The shutdown future completed (a signal, the end of the grace).
    Stopped,
    /// Standard output's reader went away (`| head -1` exited).
    OutputClosed,
}

pub type KernelLogger = aya_log::EbpfLogger<&'static dyn log::Log>;

/// What to print, how, and how often.
pub struct CollectorOptions {
    pub writer: FormatWriter,
    /// Which verdict and flow lines to keep (counter lines are never filtered).
    pub filter: Filter,
    pub verdicts: bool,
    /// Name the processes behind connections (`--no-process` turns it off).
    pub name_processes: bool,
    pub flows: Option<FlowTable>,
    /// Every this often, a `stats` line.
    pub stats_every: Option<Duration>,
    /// `/metrics`: counts of every record.
    pub metrics: Option<Metrics>,
    /// IPFIX: every ended flow (whatever the filter prints).
    pub exporter: Option<IpfixExporter>,
}

/// Bytes of lines the collector formats before it writes them (and the batch's capacity).
const BATCH_BYTES: usize = 256 << 10;

/// Verdicts taken from each CPU's ring per round (about [`BATCH_BYTES`] of lines).
const TAKE_PER_RING: usize = 1024;

pub struct Collector {
    /// The ring of every event but the verdicts (DNS answers, ended flows).
    ring: AsyncFd<RingBuf<MapData>>,
    /// Each CPU's ring of verdicts (none for a setup installed by a version without them,
    /// which wrote every event into `ring`).
    cpu_rings: Vec<AsyncFd<RingBuf<MapData>>>,
    /// Verdicts taken from `cpu_rings`, formatted once `ring` has been read (see
    /// [`Collector::drain_batch`]).
    taken: Vec<VerdictEvent>,
    counters: PerCpuArray<MapData, u64>,
    outputs: Outputs,
    batch: Batch,
    writer: FormatWriter,
    filter: Filter,
    records: RecordBuilder,
    totals: Totals,
    verdicts: bool,
    flows: Option<FlowTable>,
    ended: Vec<EndedFlow>,
    stats_every: Option<Duration>,
    /// aya-log's reader for the programs' diagnostics (flushed every tick, off the hot path).
    logger: Option<KernelLogger>,
    metrics: Option<Metrics>,
    exporter: Option<IpfixExporter>,
    /// Losses earlier readers of the same maps reported: (ring, replaced).
    reported_before: (u64, u64),
    /// What this collector last stored as reported, to write the slots only when it moves.
    stored: (u64, u64),
}

impl Collector {
    /// Must be called inside a tokio runtime (the ring buffer's fd is registered with it).
    pub fn new(
        ring: RingBuf<MapData>,
        cpu_rings: Vec<RingBuf<MapData>>,
        counters: PerCpuArray<MapData, u64>,
        logger: Option<KernelLogger>,
        options: CollectorOptions,
        outputs: Outputs,
    ) -> Result<Self> {
        let ring = watch_ring(ring)?;
        let cpu_rings = cpu_rings
            .into_iter()
            .map(watch_ring)
            .collect::<Result<Vec<_>>>()?;
        let mut collector = Collector {
            ring,
            taken: Vec::with_capacity(TAKE_PER_RING * cpu_rings.len()),
            cpu_rings,
            counters,
            outputs,
            batch: Batch::with_capacity(BATCH_BYTES + (16 << 10)),
            writer: options.writer,
            filter: options.filter,
            records: RecordBuilder::new(Enricher::new(options.name_processes)),
            totals: Totals::default(),
            verdicts: options.verdicts,
            flows: options.flows,
            ended: Vec::new(),
            stats_every: options.stats_every,
            logger,
            metrics: options.metrics,
            exporter: options.exporter,
            reported_before: (0, 0),
            stored: (0, 0),
        };
        // A reader of an installed setup reports only what earlier readers did not (maps of
        // earlier versions have no such slots: 0 then).
        collector.reported_before = (
            collector.sum_counter(LOST_EVENTS_REPORTED).unwrap_or(0),
            collector
                .sum_counter(LOST_BEFORE_REPLACEMENT_REPORTED)
                .unwrap_or(0),
        );
        collector.stored = collector.reported_before;
        Ok(collector)
    }

    /// Streams events until `shutdown` completes or stdout's reader goes away (polled every
    /// tick, so an idle session sees it too). A sink that fails otherwise never ends it.
    pub async fn run_until(&mut self, shutdown: impl Future<Output = ()>) -> Result<Ended> {
        tokio::pin!(shutdown);
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Without --stats the interval is never polled (the branch is disabled).
        let mut stats_tick =
            tokio::time::interval(self.stats_every.unwrap_or(Duration::from_secs(3600)));
        stats_tick.tick().await;
        loop {
            if self.outputs.closed() {
                return Ok(Ended::OutputClosed);
            }
            tokio::select! {
                () = &mut shutdown => return Ok(Ended::Stopped),
                ready = self.ring.readable_mut() => {
                    ready.context("waiting for the ring buffer")?.clear_ready();
                    self.drain()?;
                }
                ready = any_readable(&self.cpu_rings) => {
                    ready.context("waiting for the CPUs' ring buffers")?;
                    self.drain()?;
                }
                _ = tick.tick() => {
                    self.drain()?;
                    self.check_counters()?;
                    if self.flows.as_ref().is_some_and(FlowTable::sweep_due) {
                        self.sweep_flows()?;
                    }
                    if let Some(logger) = &mut self.logger {
                        logger.flush();
                    }
                    self.publish_metrics();
                }
                _ = stats_tick.tick(), if self.stats_every.is_some() => self.write_stats()?,
            }
        }
    }

    /// After the rules and tc programs are gone: reads what is left, reports every open flow
    /// (reason `exit`) and the last losses, and returns the totals.
    /// `flush_flows`: report every open flow (`exit`) and empty the table; a reader of an
    /// installed setup leaves them to the next reader.
    pub fn finish(mut self, flush_flows: bool) -> Result<Totals> {
        self.drain()?;
        if flush_flows {
            self.walk_flow_table(FlowTable::flush)?;
        }
        if let Some(exporter) = self.exporter.take() {
            let lost = exporter.finish(EXPORT_DRAIN);
            self.report_export_losses(lost);
        }
        self.check_counters()?;
        self.totals.malformed = self.sum_counter(MALFORMED_PACKETS)?;
        self.flush();
        self.outputs.finish();
        self.totals.lost_output = self.outputs.lost();
        self.publish_metrics();
        Ok(self.totals)
    }

    /// Formats every event in the ring buffer, writing every [`BATCH_BYTES`] of lines (a flood
    /// refills the ring while it is read: one write at the end would wait for the flood's end,
    /// and hold all of it in memory).
    fn drain(&mut self) -> Result<()> {
        while self.drain_batch() {
            self.write_ended_flows();
            self.flush();
        }
        self.write_ended_flows();
        self.flush();
        Ok(())
    }

    /// Formats events from the ring buffers until they are empty (false) or a CPU's ring
    /// gave [`TAKE_PER_RING`] verdicts (true: there may be more).
    ///
    /// The CPUs' rings are read first, the shared ring to its end after, and only then are the
    /// verdicts taken from the CPUs' rings formatted: a DNS answer is in the shared ring before
    /// the host can connect to its address (tc ingress commits it before the packet goes up the
    /// stack to the resolver), so before any verdict of that connection is committed, and every
    /// name a taken verdict may need is learnt before its record is built. Reading the shared
    /// ring first would miss an answer committed after that read whose connection's verdict
    /// reached a CPU's ring before the CPUs' rings were read.
    fn drain_batch(&mut self) -> bool {
        self.records.clock.refresh();
        let more = self.take_cpu_verdicts();
        self.read_shared_ring();
        let taken = std::mem::take(&mut self.taken);
        for event in &taken {
            self.verdict_line(event);
            if self.batch.bytes.len() >= BATCH_BYTES {
                self.flush();
            }
        }
        self.taken = taken;
        self.taken.clear();
        more
    }

    /// Copies up to [`TAKE_PER_RING`] verdicts out of each CPU's ring into `taken`; true when
    /// a ring had that many.
    fn take_cpu_verdicts(&mut self) -> bool {
        let mut more = false;
        for ring in &mut self.cpu_rings {
            let ring = ring.get_mut();
            let mut count = 0;
            while count < TAKE_PER_RING {
                let Some(item) = ring.next() else { break };
                count += 1;
                // Only verdicts go to these rings.
                if let Some(event) = VerdictEvent::from_bytes(&item).filter(|_| self.verdicts) {
                    self.taken.push(event);
                }
            }
            more |= count == TAKE_PER_RING;
        }
        more
    }

    /// Reads the shared ring to its end: DNS answers learnt, ended flows queued, and verdicts
    /// (a setup installed by an earlier version writes them here) formatted in the ring's order.
    fn read_shared_ring(&mut self) {
        loop {
            let Some(item) = self.ring.get_mut().next() else {
                break;
            };
            let kind = item.first().copied();
            let verdict = match kind {
                Some(EVENT_KIND_DNS) => {
                    if let Some((packet, seen, message)) = DnsEvent::parse(&item) {
                        self.records.enricher.learn_dns(&packet, seen, message);
                    }
                    None
                }
                Some(EVENT_KIND_VERDICT) => VerdictEvent::from_bytes(&item),
                _ => {
                    if let Some(event) = FlowEndEvent::from_bytes(&item) {
                        if let Some(reason) = EndReason::from_u8(event.reason) {
                            self.ended.push(EndedFlow {
                                key: event.key,
                                stats: event.stats,
                                reason,
                            });
                        }
                    }
                    None
                }
            };
            drop(item);
            if let Some(event) = verdict.filter(|_| self.verdicts) {
                self.verdict_line(&event);
            }
            if self.batch.bytes.len() >= BATCH_BYTES {
                self.flush();
            }
        }
    }

    /// The line (if the filter keeps it) and the counts of one verdict.
    fn verdict_line(&mut self, event: &VerdictEvent) {
        let record = self.records.verdict(event);
        if self.filter.matches_verdict(&record) {
            let writer = &mut self.writer;
            self.batch.event(|out| writer.verdict(out, &record));
        }
        if let Some(metrics) = &mut self.metrics {
            metrics.verdict(&record);
        }
        self.totals.events += 1;
    }

    fn write_ended_flows(&mut self) {
        for ended in std::mem::take(&mut self.ended) {
            let record = self.records.flow(&ended);
            if self.filter.matches_flow(&record) {
                let writer = &mut self.writer;
                self.batch.event(|out| writer.flow(out, &record));
            }
            if let Some(metrics) = &mut self.metrics {
                metrics.flow(&record);
            }
            if let Some(exporter) = &self.exporter {
                exporter.export(&record);
            }
            self.totals.flows += 1;
        }
    }

    fn sweep_flows(&mut self) -> Result<()> {
        self.walk_flow_table(|table, ended| table.sweep(BootClock::now_boot_ns(), ended))
    }

    /// Walks the flow table with `walk` (sweep or flush), reports what ended, then counts the
    /// flows the kernel evicted: every flow created before the walk either ended in the kernel
    /// (counted after the walk), was removed by the walk, is still there, or was evicted. Reading
    /// the counters that way round never over-counts evictions.
    fn walk_flow_table(
        &mut self,
        walk: impl FnOnce(&mut FlowTable, &mut Vec<EndedFlow>) -> Result<()>,
    ) -> Result<()> {
        if self.flows.is_none() {
            return Ok(());
        }
        let created = self.sum_counter(FLOWS_CREATED)?;
        if let Some(table) = &mut self.flows {
            walk(table, &mut self.ended)?;
        }
        // Flows the kernel ended during the walk are in the ring buffer: report them first.
        self.drain()?;
        let ended = self.sum_counter(FLOWS_ENDED)?;
        if let Some(table) = &self.flows {
            let evicted = table.evicted_by_kernel(created, ended);
            if evicted > self.totals.evicted {
                table.recount_filter();
                let now = BootClock::now_unix_ns();
                let writer = &mut self.writer;
                let count = evicted - self.totals.evicted;
                self.batch
                    .count_line(|out| writer.flows_evicted(out, now, count));
                self.totals.evicted = evicted;
            }
        }
        self.write_ended_flows();
        self.flush();
        Ok(())
    }

    /// Turns movements of the loss counters (the kernel's, the exporter's) into lines.
    fn check_counters(&mut self) -> Result<()> {
        let lost = self
            .sum_counter(LOST_EVENTS)?
            .saturating_sub(self.reported_before.0);
        if lost > self.totals.lost {
            let now = BootClock::now_unix_ns();
            let writer = &mut self.writer;
            let count = lost - self.totals.lost;
            self.batch
                .count_line(|out| writer.lost(out, now, LossSite::Ring, count));
            self.totals.lost = lost;
        }
        // A slot of earlier versions' maps too: read it only where the map has it.
        let replaced = self
            .sum_counter(LOST_BEFORE_REPLACEMENT)
            .unwrap_or(0)
            .saturating_sub(self.reported_before.1);
        if replaced > self.totals.lost_replaced {
            let now = BootClock::now_unix_ns();
            let writer = &mut self.writer;
            let count = replaced - self.totals.lost_replaced;
            self.batch
                .count_line(|out| writer.lost(out, now, LossSite::Replaced, count));
            self.totals.lost_replaced = replaced;
        }
        if let Some(exporter) = &self.exporter {
            let lost = exporter.lost();
            self.report_export_losses(lost);
        }
        // Also when nothing is new: a spool that waits retries, and queues its `lost` line.
        self.flush();
        // Only once every sink has taken its lines is a loss reported for the next reader.
        if self.outputs.all_written() {
            self.store_reported();
        }
        Ok(())
    }

    /// Records in the maps how many losses have been reported (once the lines are out), so
    /// that the next reader does not report them again.
    fn store_reported(&mut self) {
        let reported = (
            self.reported_before.0 + self.totals.lost,
            self.reported_before.1 + self.totals.lost_replaced,
        );
        for (index, value, stored) in [
            (LOST_EVENTS_REPORTED, reported.0, self.stored.0),
            (LOST_BEFORE_REPLACEMENT_REPORTED, reported.1, self.stored.1),
        ] {
            if value != stored {
                // Best effort: a map without the slot (an earlier version's) keeps old habits.
                let _ = set_user_counter(&mut self.counters, index, value);
            }
        }
        self.stored = reported;
    }

    /// A `lost` line (`where: export`) for the flows lost to export since the last one.
    fn report_export_losses(&mut self, lost: u64) {
        if lost > self.totals.lost_export {
            let now = BootClock::now_unix_ns();
            let new = lost - self.totals.lost_export;
            let writer = &mut self.writer;
            self.batch
                .count_line(|out| writer.lost(out, now, LossSite::Export, new));
            self.totals.lost_export = lost;
        }
    }

    /// Hands the counts to the metrics' scrape side.
    fn publish_metrics(&self) {
        if let Some(metrics) = &self.metrics {
            let tracked = self.flows.as_ref().map_or(0, |t| t.tracked);
            metrics.publish(self.totals.evicted, tracked, self.outputs.lost());
        }
    }

    fn write_stats(&mut self) -> Result<()> {
        let stats = StatsRecord {
            events: self.totals.events,
            flows: self.totals.flows,
            lost: self.totals.lost,
            flows_tracked: self.flows.as_ref().map_or(0, |t| t.tracked),
            flows_evicted: self.totals.evicted,
            malformed: self.sum_counter(MALFORMED_PACKETS)?,
        };
        let writer = &mut self.writer;
        self.batch
            .count_line(|out| writer.stats(out, BootClock::now_unix_ns(), &stats));
        self.flush();
        Ok(())
    }

    fn sum_counter(&self, index: u32) -> Result<u64> {
        let values = self
            .counters
            .get(&index, 0)
            .context("reading fwlog's kernel counters")?;
        Ok(values.iter().sum())
    }

    /// Hands the batch to the sinks' spools; a failing sink keeps it (or counts it lost) and
    /// a `lost` line (`where: output`) says so when it takes lines again.
    fn flush(&mut self) {
        let writer = &mut self.writer;
        self.outputs.push(&mut self.batch, |out, count| {
            writer.lost(out, BootClock::now_unix_ns(), LossSite::Output, count);
        });
    }
}

/// `ring`, registered with the runtime so that its wakeups wake the collector.
fn watch_ring(ring: RingBuf<MapData>) -> Result<AsyncFd<RingBuf<MapData>>> {
    // SAFETY: the RingBuf owns its fd and keeps it open, unchanged, until it is dropped,
    // which happens only when this AsyncFd is dropped.
    unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
        .map_err(std::io::Error::from)
        .context("watching the ring buffer for events")
}

/// Completes when any of `rings` was woken (their readiness cleared: the drain that follows
/// reads them all); never with no rings.
fn any_readable(
    rings: &[AsyncFd<RingBuf<MapData>>],
) -> impl Future<Output = std::io::Result<()>> + '_ {
    std::future::poll_fn(move |cx| {
        let mut woken = false;
        for ring in rings {
            match ring.poll_read_ready(cx) {
                Poll::Ready(Ok(mut guard)) => {
                    guard.clear_ready();
                    woken = true;
                }
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Pending => {}
            }
        }
        if woken {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    })
}
