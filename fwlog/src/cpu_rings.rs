//! One ring buffer per CPU for the verdict events: created when the object is loaded and put in
//! its `EVENT_RINGS` array, found again from that array by every reader.

use anyhow::{Context as _, Result};
use aya::{
    maps::{ArrayOfMaps, Map, MapData, MapError, RingBuf},
    Ebpf,
};
use aya_obj::generated::bpf_map_type;
use fwlog_common::programs::EVENT_RINGS_MAP;

/// The number of possible CPUs, which `EVENT_RINGS` has a slot for each of (CPU numbers run
/// from 0 to one less: `bpf_get_smp_processor_id` is below the kernel's `nr_cpu_ids`).
pub fn possible_cpus() -> Result<u32> {
    let cpus =
        aya::util::nr_cpus().map_err(|(path, error)| anyhow::anyhow!("reading {path}: {error}"))?;
    u32::try_from(cpus).context("more CPUs than a map has slots")
}

/// Creates a ring of `bytes` for every possible CPU and puts each in `EVENT_RINGS` at its CPU's
/// number. Call it before any program runs: a verdict on a CPU without a ring counts as lost.
pub fn create(ebpf: &mut Ebpf, bytes: u32) -> Result<()> {
    let map = ebpf
        .map_mut(EVENT_RINGS_MAP)
        .with_context(|| format!("the eBPF object has no map {EVENT_RINGS_MAP}"))?;
    let mut slots: ArrayOfMaps<&mut MapData, MapData> = ArrayOfMaps::try_from(map)
        .with_context(|| format!("{EVENT_RINGS_MAP} is not an array of maps"))?;
    for cpu in 0..slots.len() {
        // aya 0.14 creates standalone maps of a few types only, not ring buffers: the map
        // definition is built here from its parameters (a ring buffer has no key or value).
        let definition = aya_obj::Map::new_from_params(
            bpf_map_type::BPF_MAP_TYPE_RINGBUF as u32,
            0,
            0,
            bytes,
            0,
        );
        let ring = MapData::create(definition, &format!("events_cpu{cpu}"), None)
            .with_context(|| format!("creating the ring buffer of CPU {cpu} ({bytes} bytes)"))?;
        slots
            .set(cpu, &ring, 0)
            .with_context(|| format!("putting CPU {cpu}'s ring buffer in {EVENT_RINGS_MAP}"))?;
    }
    Ok(())
}

/// Every ring in `EVENT_RINGS` (`map`), in CPU order.
pub fn open(map: Map) -> Result<Vec<RingBuf<MapData>>> {
    let slots: ArrayOfMaps<MapData, RingBuf<MapData>> = ArrayOfMaps::try_from(map)
        .with_context(|| format!("{EVENT_RINGS_MAP} is not an array of maps"))?;
    let mut rings = Vec::new();
    for cpu in 0..slots.len() {
        match slots.get(&cpu, 0) {
            Ok(ring) => rings.push(ring),
            Err(MapError::KeyNotFound) => {}
            Err(error) => {
                return Err(error).with_context(|| format!("opening CPU {cpu}'s ring buffer"))
            }
        }
    }
    Ok(rings)
}
