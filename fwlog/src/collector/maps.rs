//! The maps the collector reads, however they were obtained: loaded by this process, or pinned
//! by `fwlog install`.

use anyhow::{Context as _, Result};
use aya::maps::Map;
use fwlog_common::programs::{
    COUNTERS_MAP, EVENTS_MAP, EVENT_RINGS_MAP, FLOWS_MAP, FLOW_FILTER_MAP, NEW_FLOW_MAP,
};

use crate::loader;

/// The maps the collector reads.
pub struct CollectorMaps {
    pub events: Map,
    /// Each CPU's ring of verdicts (absent from setups installed by fwlog versions without
    /// them, which wrote verdicts into `events`).
    pub cpu_rings: Option<Map>,
    pub counters: Map,
    pub flows: Option<Map>,
    /// Flows proposed by tc ingress and not in the table yet; only for a setup this process
    /// loaded (it flushes them at exit).
    pub new_flows: Option<Map>,
    /// The kernel's count of tracked flows per key slot (absent from setups installed by
    /// fwlog versions without it).
    pub flow_filter: Option<Map>,
}

impl CollectorMaps {
    /// The maps of an object loaded by this process.
    pub fn take_from(ebpf: &mut aya::Ebpf) -> Result<Self> {
        Ok(CollectorMaps {
            events: ebpf.take_map(EVENTS_MAP).context("no EVENTS map")?,
            cpu_rings: Some(
                ebpf.take_map(EVENT_RINGS_MAP)
                    .context("no EVENT_RINGS map")?,
            ),
            counters: ebpf.take_map(COUNTERS_MAP).context("no COUNTERS map")?,
            flows: ebpf.take_map(FLOWS_MAP),
            new_flows: ebpf.take_map(NEW_FLOW_MAP),
            flow_filter: ebpf.take_map(FLOW_FILTER_MAP),
        })
    }

    /// The maps an installed setup pinned.
    pub fn from_pins(pin_dir: &std::path::Path) -> Result<Self> {
        Ok(CollectorMaps {
            events: Map::RingBuf(loader::open_pinned_map(pin_dir, EVENTS_MAP)?),
            cpu_rings: loader::open_pinned_map(pin_dir, EVENT_RINGS_MAP)
                .ok()
                .map(Map::ArrayOfMaps),
            counters: Map::PerCpuArray(loader::open_pinned_map(pin_dir, COUNTERS_MAP)?),
            flows: loader::open_pinned_map(pin_dir, FLOWS_MAP)
                .ok()
                .map(Map::LruHashMap),
            new_flows: None,
            flow_filter: loader::open_pinned_map(pin_dir, FLOW_FILTER_MAP)
                .ok()
                .map(Map::Array),
        })
    }
}
