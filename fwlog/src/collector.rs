//! Reading the ring buffer: events → JSON lines on stdout, one write and flush per batch, and
//! the kernel's loss counter turned into `lost` lines as soon as it moves.

use std::{future::Future, io::Write, time::Duration};

use anyhow::{Context as _, Result};
use aya::maps::{MapData, PerCpuArray, RingBuf};
use fwlog_common::{
    counters::{LOST_EVENTS, MALFORMED_PACKETS},
    event::{VerdictEvent, EVENT_KIND_VERDICT},
};
use tokio::io::{unix::AsyncFd, Interest};

use crate::{
    clock::BootClock,
    direction::LocalAddresses,
    interfaces::InterfaceNames,
    output::json::{packet_addrs, JsonWriter, VerdictRecord},
};

/// How often the loss counter is read (and pending output flushed) when no event wakes us.
const TICK: Duration = Duration::from_millis(100);

/// What the collector saw, for the summary at exit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub events: u64,
    pub lost: u64,
    pub malformed: u64,
}

pub struct Collector<W: Write> {
    ring: AsyncFd<RingBuf<MapData>>,
    counters: PerCpuArray<MapData, u64>,
    out: W,
    buffer: Vec<u8>,
    writer: JsonWriter,
    clock: BootClock,
    names: InterfaceNames,
    local: LocalAddresses,
    totals: Totals,
    /// aya-log's reader for the programs' diagnostics (flushed every tick, off the hot path).
    logger: Option<KernelLogger>,
}

pub type KernelLogger = aya_log::EbpfLogger<&'static dyn log::Log>;

impl<W: Write> Collector<W> {
    /// Must be called inside a tokio runtime (the ring buffer's fd is registered with it).
    pub fn new(
        ring: RingBuf<MapData>,
        counters: PerCpuArray<MapData, u64>,
        logger: Option<KernelLogger>,
        out: W,
    ) -> Result<Self> {
        // SAFETY: the RingBuf owns its fd and keeps it open, unchanged, until it is dropped,
        // which happens only when this AsyncFd is dropped.
        let ring = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
            .map_err(std::io::Error::from)
            .context("watching the ring buffer for events")?;
        Ok(Collector {
            ring,
            counters,
            out,
            buffer: Vec::with_capacity(1 << 20),
            writer: JsonWriter::default(),
            clock: BootClock::new(),
            names: InterfaceNames::default(),
            local: LocalAddresses::default(),
            totals: Totals::default(),
            logger,
        })
    }

    /// Streams events until `shutdown` completes or stdout goes away.
    pub async fn run_until(&mut self, shutdown: impl Future<Output = ()>) -> Result<()> {
        tokio::pin!(shutdown);
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = &mut shutdown => return Ok(()),
                ready = self.ring.readable_mut() => {
                    ready.context("waiting for the ring buffer")?.clear_ready();
                    self.drain()?;
                }
                _ = tick.tick() => {
                    self.drain()?;
                    self.check_lost()?;
                    if let Some(logger) = &mut self.logger {
                        logger.flush();
                    }
                }
            }
        }
    }

    /// Reads what is left (after the rules are gone), reports the last losses, returns totals.
    pub fn finish(mut self) -> Result<Totals> {
        self.drain()?;
        self.check_lost()?;
        self.totals.malformed = self.sum_counter(MALFORMED_PACKETS)?;
        Ok(self.totals)
    }

    /// Formats every event in the ring buffer, then writes them in one go.
    fn drain(&mut self) -> Result<()> {
        let ring = self.ring.get_mut();
        while let Some(item) = ring.next() {
            if item.first() == Some(&EVENT_KIND_VERDICT) {
                if let Some(event) = VerdictEvent::from_bytes(&item) {
                    let dest = packet_addrs(&event.packet).map(|(_, dest)| dest);
                    let record = VerdictRecord {
                        unix_ns: self.clock.unix_ns(event.timestamp_ns),
                        event: &event,
                        direction: self.local.direction(event.ifindex, dest),
                        in_iface: self.names.name(event.ifindex),
                    };
                    self.writer.verdict(&mut self.buffer, &record);
                    self.totals.events += 1;
                }
            }
        }
        self.flush()
    }

    fn check_lost(&mut self) -> Result<()> {
        let lost = self.sum_counter(LOST_EVENTS)?;
        if lost > self.totals.lost {
            let now = BootClock::now_unix_ns();
            self.writer
                .lost(&mut self.buffer, now, lost - self.totals.lost);
            self.totals.lost = lost;
            self.flush()?;
        }
        Ok(())
    }

    fn sum_counter(&self, index: u32) -> Result<u64> {
        let values = self
            .counters
            .get(&index, 0)
            .context("reading fwlog's kernel counters")?;
        Ok(values.iter().sum())
    }

    fn flush(&mut self) -> Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let result = self
            .out
            .write_all(&self.buffer)
            .and_then(|()| self.out.flush());
        self.buffer.clear();
        result.context("writing events to standard output")
    }
}
