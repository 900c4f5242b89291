//! The metrics themselves, written at scrape time by a prometheus-client `Collector`: the
//! collector's last published counts, and what can be read fresh (the kernel's counters, the
//! ring's fill, the chains' iptables counters, the exporter's counts).

use std::sync::{Arc, Mutex};

use aya::maps::{MapData, PerCpuArray};
use fwlog_common::counters::{LOST_BEFORE_REPLACEMENT, LOST_EVENTS, MALFORMED_PACKETS};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{counter::ConstCounter, gauge::ConstGauge, MetricType},
    registry::Unit,
};

use super::{
    counts::{proto_label, ByLabels, Counts, ACTIONS, DIRECTIONS, END_REASONS},
    ring_fill::RingFill,
    rule_counters::RuleCounters,
};
use crate::output::sink::ipfix::ExportCounters;

/// What the collector last published (every tick, 20 ms).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub counts: Counts,
    /// Flows the kernel's full table dropped before they ended, so far.
    pub flows_evicted: u64,
    /// Flows in the kernel's table at the last sweep.
    pub flows_tracked: u64,
    /// Events a sink (stdout, the file, the system log) never got, once per sink.
    pub lost_output: u64,
    pub flow_table_size: u64,
}

/// Everything a scrape reads.
pub struct Sources {
    pub snapshot: Mutex<Snapshot>,
    /// A second handle on the kernel's per-CPU counters.
    pub kernel_counters: Option<PerCpuArray<MapData, u64>>,
    /// The shared ring and each CPU's: the fullest is the one that loses events first.
    pub rings: Vec<RingFill>,
    pub export: Option<Arc<ExportCounters>>,
    pub rules: RuleCounters,
    /// When this fwlog started, seconds since the epoch.
    pub started: f64,
}

impl std::fmt::Debug for Sources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sources").finish_non_exhaustive()
    }
}

/// The registered collector: [`Sources`] behind an `Arc` shared with the fwlog collector.
#[derive(Debug)]
pub struct Exposition(pub Arc<Sources>);

impl Collector for Exposition {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let sources = &self.0;
        let snapshot = sources
            .snapshot
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default();

        let info = [("version", env!("CARGO_PKG_VERSION"))];
        encoder
            .encode_descriptor(
                "fwlog_build",
                "fwlog's version (always 1)",
                None,
                MetricType::Info,
            )?
            .encode_info(&info)?;
        gauge(
            &mut encoder,
            "fwlog_start_time",
            "When this fwlog started, seconds since the Unix epoch",
            Some(Unit::Seconds),
            sources.started,
        )?;

        let mut events = encoder.encode_descriptor(
            "fwlog_events",
            "Events the collector read, by line kind (verdict: a new connection attempt met a \
             LOG_AND_* chain; flow: a flow ended) and its action, direction and protocol; \
             counted before --action/--dir/... filters",
            None,
            MetricType::Counter,
        )?;
        for (event_type, by_labels) in [
            ("verdict", &snapshot.counts.verdicts),
            ("flow", &snapshot.counts.flows),
        ] {
            encode_by_labels(&mut events, event_type, by_labels)?;
        }

        let kernel = |index| {
            sources.kernel_counters.as_ref().and_then(|counters| {
                counters
                    .get(&index, 0)
                    .ok()
                    .map(|values| values.iter().sum::<u64>())
            })
        };
        let mut lost = encoder.encode_descriptor(
            "fwlog_lost_events",
            "Events lost, by where: ring (the kernel found the ring buffer full), export (a \
             flow the IPFIX exporter could not queue or send), replaced (recorded by an earlier \
             install and read by no reader before a new install replaced it), output (an event \
             a failing sink never got, once per sink)",
            None,
            MetricType::Counter,
        )?;
        if let Some(ring) = kernel(LOST_EVENTS) {
            ConstCounter::new(ring).encode(lost.encode_family(&[("where", "ring")])?)?;
        }
        if let Some(replaced) = kernel(LOST_BEFORE_REPLACEMENT).filter(|&n| n > 0) {
            ConstCounter::new(replaced).encode(lost.encode_family(&[("where", "replaced")])?)?;
        }
        if let Some(export) = &sources.export {
            let count = export.lost.load(std::sync::atomic::Ordering::Relaxed);
            ConstCounter::new(count).encode(lost.encode_family(&[("where", "export")])?)?;
        }
        ConstCounter::new(snapshot.lost_output)
            .encode(lost.encode_family(&[("where", "output")])?)?;
        if let Some(malformed) = kernel(MALFORMED_PACKETS) {
            counter(
                &mut encoder,
                "fwlog_malformed_packets",
                "Packets whose headers could not be parsed (counted, never misread)",
                malformed,
            )?;
        }

        let mut ended = encoder.encode_descriptor(
            "fwlog_flows_ended",
            "Flows ended, by reason (fin, rst, idle, evicted: ended by fwlog's sweep in a \
             crowded table, exit)",
            None,
            MetricType::Counter,
        )?;
        for (reason, count) in END_REASONS.iter().zip(snapshot.counts.flows_ended) {
            ConstCounter::new(count)
                .encode(ended.encode_family(&[("reason", reason.as_str())])?)?;
        }
        counter(
            &mut encoder,
            "fwlog_flows_evicted",
            "Flows the kernel's full flow table dropped before they ended (flows_evicted lines)",
            snapshot.flows_evicted,
        )?;
        gauge(
            &mut encoder,
            "fwlog_flow_table_entries",
            "Flows in the kernel's flow table at the last sweep",
            None,
            snapshot.flows_tracked as f64,
        )?;
        gauge(
            &mut encoder,
            "fwlog_flow_table_max_entries",
            "Flows the kernel's flow table holds (--flow-table-size)",
            None,
            snapshot.flow_table_size as f64,
        )?;

        let fullest = sources.rings.iter().max_by_key(|ring| ring.used());
        if let Some(ring) = fullest {
            gauge(
                &mut encoder,
                "fwlog_ring_used",
                "Bytes in the kernel-to-collector ring buffer not read yet",
                Some(Unit::Bytes),
                ring.used() as f64,
            )?;
            gauge(
                &mut encoder,
                "fwlog_ring_size",
                "Size of the kernel-to-collector ring buffer (--ring-size)",
                Some(Unit::Bytes),
                ring.size as f64,
            )?;
        }

        let chains = sources.rules.read();
        for (name, help, unit, value) in [
            (
                "fwlog_chain_packets",
                "Packets matched by fwlog's rules in each LOG_AND_* chain (iptables counters)",
                None,
                (|c: &super::rule_counters::ChainCounters| c.packets) as fn(&_) -> u64,
            ),
            (
                "fwlog_chain",
                "Bytes of the packets matched by fwlog's rules in each LOG_AND_* chain \
                 (iptables counters)",
                Some(Unit::Bytes),
                |c: &super::rule_counters::ChainCounters| c.bytes,
            ),
        ] {
            let mut family =
                encoder.encode_descriptor(name, help, unit.as_ref(), MetricType::Counter)?;
            for chain in &chains {
                let labels = [("family", chain.family), ("chain", chain.chain.as_str())];
                ConstCounter::new(value(chain)).encode(family.encode_family(&labels)?)?;
            }
        }

        if let Some(export) = &sources.export {
            counter(
                &mut encoder,
                "fwlog_ipfix_flows_sent",
                "Flows in IPFIX messages handed to the network",
                export.sent.load(std::sync::atomic::Ordering::Relaxed),
            )?;
        }
        Ok(())
    }
}

fn encode_by_labels(
    family: &mut prometheus_client::encoding::MetricEncoder,
    event_type: &str,
    by_labels: &ByLabels,
) -> Result<(), std::fmt::Error> {
    for (action, by_direction) in ACTIONS.iter().zip(by_labels) {
        for (direction, by_proto) in DIRECTIONS.iter().zip(by_direction) {
            for (index, count) in by_proto.iter().enumerate() {
                // Only series that happened: at most 168 per kind, most never do.
                if *count == 0 {
                    continue;
                }
                let labels = [
                    ("event_type", event_type),
                    ("action", action),
                    ("direction", direction),
                    ("proto", proto_label(index)),
                ];
                ConstCounter::new(*count).encode(family.encode_family(&labels)?)?;
            }
        }
    }
    Ok(())
}

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    ConstCounter::new(value).encode(metric)
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<Unit>,
    value: f64,
) -> Result<(), std::fmt::Error> {
    let metric = encoder.encode_descriptor(name, help, unit.as_ref(), MetricType::Gauge)?;
    ConstGauge::new(value).encode(metric)
}
