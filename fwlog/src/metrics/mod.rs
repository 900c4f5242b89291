//! `--metrics 127.0.0.1:9477`: Prometheus metrics at `/metrics`, in the Prometheus text format
//! written by prometheus-client. The collector counts each record it builds (an add into an
//! array, see [`counts`]) and publishes the counts every tick; a scrape reads them, and reads
//! the kernel's counters, the ring's fill and the chains' iptables counters itself.
//!
//! Cardinality is fixed: labels take only the values in [`counts`] (actions, directions,
//! protocols, end reasons), `family`/`chain` for the three `LOG_AND_*` chains, and `where` for
//! losses; no address, port, process or interface is ever a label.

pub mod counts;
pub mod exposition;
pub mod ring_fill;
pub mod rule_counters;
pub mod server;

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::SystemTime,
};

use anyhow::Result;
use aya::maps::{MapData, PerCpuArray};
use prometheus_client::registry::Registry;

use crate::{
    output::sink::ipfix::ExportCounters,
    record::{FlowRecord, VerdictRecord},
};
use counts::Counts;
use exposition::{Exposition, Snapshot, Sources};
use ring_fill::RingFill;
use server::MetricsServer;

/// What a scrape reads besides the collector's counts.
pub struct MetricsSources {
    /// A second handle on the kernel's COUNTERS map.
    pub kernel_counters: Option<PerCpuArray<MapData, u64>>,
    /// The shared ring and each CPU's.
    pub rings: Vec<RingFill>,
    pub export: Option<Arc<ExportCounters>>,
    pub flow_table_size: u64,
}

/// The collector's side of the metrics, and the server it keeps running.
pub struct Metrics {
    counts: Counts,
    sources: Arc<Sources>,
    flow_table_size: u64,
    server: MetricsServer,
}

impl Metrics {
    /// Starts serving on `address`; fails (one line) when it cannot listen there.
    pub fn start(address: SocketAddr, from: MetricsSources) -> Result<Self> {
        let started = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let sources = Arc::new(Sources {
            snapshot: Mutex::new(Snapshot {
                flow_table_size: from.flow_table_size,
                ..Snapshot::default()
            }),
            kernel_counters: from.kernel_counters,
            rings: from.rings,
            export: from.export,
            rules: rule_counters::RuleCounters::default(),
            started,
        });
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Exposition(Arc::clone(&sources))));
        let server = MetricsServer::start(address, registry)?;
        Ok(Metrics {
            counts: Counts::default(),
            sources,
            flow_table_size: from.flow_table_size,
            server,
        })
    }

    /// Where the server listens (the port the kernel chose, for `:0`).
    pub fn address(&self) -> SocketAddr {
        self.server.address
    }

    pub fn verdict(&mut self, record: &VerdictRecord) {
        self.counts.verdict(record);
    }

    pub fn flow(&mut self, record: &FlowRecord) {
        self.counts.flow(record);
    }

    /// Hands the counts so far to the scrape side (`lost_output`: events a sink never got).
    pub fn publish(&self, flows_evicted: u64, flows_tracked: u64, lost_output: u64) {
        if let Ok(mut snapshot) = self.sources.snapshot.lock() {
            *snapshot = Snapshot {
                counts: self.counts.clone(),
                flows_evicted,
                flows_tracked,
                lost_output,
                flow_table_size: self.flow_table_size,
            };
        }
    }
}
