//! What leaves the machine besides the lines, started from the settings: the `/metrics`
//! endpoint and the IPFIX exporter, with the second handles on the maps a scrape reads.

use std::os::fd::AsFd as _;

use anyhow::{Context as _, Result};
use aya::maps::{Map, MapData, PerCpuArray, RingBuf};

use crate::{
    host::HostIdentity,
    metrics::{ring_fill::RingFill, Metrics, MetricsSources},
    output::sink::ipfix::{encoder::EncoderOptions, IpfixExporter, IpfixSettings},
    settings::WatchSettings,
};

/// IPFIX observation domain of fwlog's records: one per exporter, and each host is its own
/// exporter (collectors tell them apart by address).
const OBSERVATION_DOMAIN: u32 = 1;

pub struct Exports {
    pub metrics: Option<Metrics>,
    pub exporter: Option<IpfixExporter>,
}

/// Starts what the settings ask for. `ring`, `cpu_rings` and `counters` are the collector's
/// maps (a scrape reads them through handles of its own); `flow_table_size` is the table's
/// capacity.
pub fn start(
    settings: &WatchSettings,
    host: &HostIdentity,
    ring: &RingBuf<MapData>,
    cpu_rings: &[RingBuf<MapData>],
    counters: &Map,
    flow_table_size: u32,
) -> Result<Exports> {
    let exporter = match &settings.ipfix {
        Some(ipfix) => {
            let exporter = IpfixExporter::start(IpfixSettings {
                target: ipfix.target.clone(),
                encoder: EncoderOptions {
                    enterprise: ipfix.enterprise,
                    observation_domain: OBSERVATION_DOMAIN,
                    host: host.clone(),
                },
                template_refresh: ipfix.template_refresh,
            })?;
            eprintln!(
                "fwlog: exporting ended flows as IPFIX to {} (enterprise elements under PEN {})",
                ipfix.target, ipfix.enterprise
            );
            Some(exporter)
        }
        None => None,
    };
    let metrics = match settings.metrics {
        Some(address) => {
            let mut rings = Vec::with_capacity(1 + cpu_rings.len());
            for ring in std::iter::once(ring).chain(cpu_rings) {
                rings.push(RingFill::new(ring, ring_size(ring))?);
            }
            let sources = MetricsSources {
                kernel_counters: Some(second_handle(counters)?),
                rings,
                export: exporter.as_ref().map(IpfixExporter::counters),
                flow_table_size: flow_table_size.into(),
            };
            let metrics = Metrics::start(address.0, sources)?;
            eprintln!("fwlog: metrics at http://{}/metrics", metrics.address());
            Some(metrics)
        }
        None => None,
    };
    Ok(Exports { metrics, exporter })
}

/// The ring's data size: its map's max_entries (bytes, for a ring buffer).
fn ring_size(ring: &RingBuf<MapData>) -> u64 {
    let fd = ring.as_fd().try_clone_to_owned().ok();
    fd.and_then(|fd| MapData::from_fd(fd).ok())
        .and_then(|data| data.info().ok())
        .map_or(0, |info| info.max_entries().into())
}

/// Another handle on the per-CPU COUNTERS map, for the metrics thread.
fn second_handle(counters: &Map) -> Result<PerCpuArray<MapData, u64>> {
    let Map::PerCpuArray(data) = counters else {
        anyhow::bail!("the COUNTERS map is not a per-CPU array");
    };
    let fd = data
        .fd()
        .as_fd()
        .try_clone_to_owned()
        .context("duplicating the COUNTERS map's descriptor")?;
    let data = MapData::from_fd(fd).context("opening the COUNTERS map again")?;
    PerCpuArray::try_from(Map::PerCpuArray(data)).context("reading the COUNTERS map")
}
