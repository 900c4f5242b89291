//! `--ipfix udp://HOST:PORT` / `tcp://…`: every ended flow as an IPFIX record (RFC 7011) to a
//! flow collector. The collector only puts the flow into a bounded queue and goes on; a thread
//! of its own encodes and sends, so a slow or dead collector never holds up the lines. A flow
//! that finds the queue full, or whose message could not be sent, is counted as lost to export.

pub mod elements;
pub mod encoder;
pub mod flow;
pub mod transport;

use std::{
    net::{SocketAddr, ToSocketAddrs as _},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError},
        Arc,
    },
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context as _, Result};

use crate::{endpoints::IpfixTarget, record::FlowRecord};
use encoder::{Encoder, EncoderOptions};
use flow::ExportFlow;
use transport::{Sent, Transport};

/// Flows waiting for the thread: about 5 MiB at most, 1.6 s of the fastest flow rate the
/// bench reaches.
pub const QUEUE_FLOWS: usize = 16_384;
/// Flows encoded together (one or more messages).
const BATCH_FLOWS: usize = 256;
/// RFC 7011 section 10.3.3: a UDP message must fit the path MTU; 1400 bytes leaves room for
/// IPv6, tunnels and VLAN tags on an Ethernet path.
const UDP_MESSAGE_BYTES: usize = 1400;
const TCP_MESSAGE_BYTES: usize = 32 * 1024;

/// How the exporter sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpfixSettings {
    pub target: IpfixTarget,
    pub encoder: EncoderOptions,
    /// Over UDP, templates and type records are sent again this often.
    pub template_refresh: Duration,
}

/// Counts the collector, `/metrics` and the exit summary read.
#[derive(Debug, Default)]
pub struct ExportCounters {
    /// Flows handed to the thread.
    pub queued: AtomicU64,
    /// Flows in messages the transport took.
    pub sent: AtomicU64,
    /// Flows that found the queue full, or whose message could not be sent.
    pub lost: AtomicU64,
}

pub struct IpfixExporter {
    queue: Option<SyncSender<ExportFlow>>,
    counters: Arc<ExportCounters>,
    closing: Arc<AtomicBool>,
    done: Receiver<()>,
}

impl IpfixExporter {
    /// Resolves the collector and starts the thread. Only an unusable address fails: a
    /// collector that does not answer yet is retried, and its flows wait in the queue.
    pub fn start(settings: IpfixSettings) -> Result<Self> {
        let address = resolve(&settings.target)?;
        let (queue, flows) = mpsc::sync_channel(QUEUE_FLOWS);
        let counters = Arc::new(ExportCounters::default());
        let closing = Arc::new(AtomicBool::new(false));
        let (done_tx, done) = mpsc::channel();
        let sender = Sender {
            transport: Transport::new(settings.target.clone(), address),
            encoder: Encoder::new(settings.encoder),
            flows,
            counters: Arc::clone(&counters),
            closing: Arc::clone(&closing),
            template_refresh: settings.template_refresh,
        };
        std::thread::Builder::new()
            .name("fwlog-ipfix".into())
            .spawn(move || {
                sender.run();
                let _ = done_tx.send(());
            })
            .context("starting the IPFIX exporter's thread")?;
        Ok(IpfixExporter {
            queue: Some(queue),
            counters,
            closing,
            done,
        })
    }

    /// Queues `record` without waiting; counted as lost when the queue is full.
    pub fn export(&self, record: &FlowRecord) {
        let Some(flow) = ExportFlow::of(record) else {
            return;
        };
        let Some(queue) = &self.queue else {
            return;
        };
        match queue.try_send(flow) {
            Ok(()) => self.counters.queued.fetch_add(1, Ordering::Relaxed),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.counters.lost.fetch_add(1, Ordering::Relaxed)
            }
        };
    }

    /// Flows lost to export so far.
    pub fn lost(&self) -> u64 {
        self.counters.lost.load(Ordering::Relaxed)
    }

    pub fn counters(&self) -> Arc<ExportCounters> {
        Arc::clone(&self.counters)
    }

    /// Sends what is queued, waiting at most `wait`; what is still unsent then (or was left
    /// queued for want of a collector) is lost. Returns the flows lost to export in all.
    pub fn finish(mut self, wait: Duration) -> u64 {
        self.closing.store(true, Ordering::Relaxed);
        self.queue = None;
        let _ = self.done.recv_timeout(wait);
        let counters = &self.counters;
        let handled = counters.sent.load(Ordering::Relaxed) + counters.lost.load(Ordering::Relaxed);
        let unsent = counters
            .queued
            .load(Ordering::Relaxed)
            .saturating_sub(handled);
        counters.lost.fetch_add(unsent, Ordering::Relaxed) + unsent
    }
}

fn resolve(target: &IpfixTarget) -> Result<SocketAddr> {
    (target.host.as_str(), target.port)
        .to_socket_addrs()
        .with_context(|| format!("--ipfix {target}: cannot resolve {}", target.host))?
        .next()
        .with_context(|| format!("--ipfix {target}: {} has no address", target.host))
}

/// The exporter's thread.
struct Sender {
    transport: Transport,
    encoder: Encoder,
    flows: Receiver<ExportFlow>,
    counters: Arc<ExportCounters>,
    closing: Arc<AtomicBool>,
    template_refresh: Duration,
}

impl Sender {
    fn run(mut self) {
        let mut batch = Vec::with_capacity(BATCH_FLOWS);
        let mut refresh_at = Instant::now() + self.template_refresh;
        loop {
            // Without a session, flows stay queued (the collector counts what overflows).
            match self.transport.connect() {
                Ok(true) => self.encoder.new_session(),
                Ok(false) => {}
                Err(news) => {
                    if let Some(news) = news {
                        eprintln!(
                            "fwlog: IPFIX: {news}; flows wait in a queue of {QUEUE_FLOWS} \
                             and are counted as lost beyond it"
                        );
                    }
                    if self.closing.load(Ordering::Relaxed) {
                        return;
                    }
                    let pause = self
                        .transport
                        .retry_at()
                        .saturating_duration_since(Instant::now());
                    std::thread::sleep(pause.min(Duration::from_millis(100)));
                    continue;
                }
            }
            let wait = if self.transport.is_udp() {
                refresh_at.saturating_duration_since(Instant::now())
            } else {
                Duration::from_secs(1)
            };
            match self.flows.recv_timeout(wait) {
                Ok(flow) => {
                    batch.push(flow);
                    while batch.len() < BATCH_FLOWS {
                        match self.flows.try_recv() {
                            Ok(flow) => batch.push(flow),
                            Err(_) => break,
                        }
                    }
                    self.send(&batch);
                    batch.clear();
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            if self.transport.is_udp() && Instant::now() >= refresh_at {
                self.encoder.refresh_templates();
                self.send(&[]);
                refresh_at = Instant::now() + self.template_refresh;
            }
        }
    }

    /// Encodes and sends `flows` (none: only what must be announced again).
    fn send(&mut self, flows: &[ExportFlow]) {
        let budget = if self.transport.is_udp() {
            UDP_MESSAGE_BYTES
        } else {
            TCP_MESSAGE_BYTES
        };
        let messages = match self.encoder.encode(flows, budget, export_time()) {
            Ok(messages) => messages,
            Err(error) => {
                eprintln!(
                    "fwlog: IPFIX: {error:#}; {} flows not exported",
                    flows.len()
                );
                self.counters
                    .lost
                    .fetch_add(flows.len() as u64, Ordering::Relaxed);
                return;
            }
        };
        for message in messages {
            let counter = match self.transport.send(&message.bytes) {
                Sent::Yes => &self.counters.sent,
                Sent::No(news) => {
                    if let Some(news) = news {
                        eprintln!("fwlog: IPFIX: {news}; its flows are counted as lost");
                    }
                    &self.counters.lost
                }
            };
            counter.fetch_add(message.flows.into(), Ordering::Relaxed);
        }
    }
}

/// Seconds since the epoch, as the message header's 32 bits hold them (until 2106).
fn export_time() -> u32 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as u32)
}
