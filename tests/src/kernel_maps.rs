//! A running fwlog's eBPF maps and programs, found through the fds the process holds, for
//! tests that check what the kernel side keeps and what loading it cost.

use anyhow::{bail, Context as _, Result};
use aya::{
    maps::{Array, Map, MapData},
    programs::{loaded_programs, ProgramInfo},
};
use nix::unistd::Pid;

/// Bytes in fwlog's flow filter: one counter per key slot.
pub const FLOW_FILTER_SLOTS: usize = 1 << 16;
pub type FlowFilter = Array<MapData, [u8; FLOW_FILTER_SLOTS]>;

/// The ids of the objects process `pid` holds open whose fdinfo has `key` (`map_id:`,
/// `prog_id:`).
fn held_ids(pid: Pid, key: &str) -> Result<Vec<u32>> {
    let dir = format!("/proc/{pid}/fdinfo");
    let mut ids = Vec::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {dir}"))? {
        let info = std::fs::read_to_string(entry?.path()).unwrap_or_default();
        if let Some(id) = info.lines().find_map(|l| l.strip_prefix(key)) {
            ids.push(id.trim().parse()?);
        }
    }
    Ok(ids)
}

/// The map named `name` among the ones process `pid` holds open.
pub fn map_of(pid: Pid, name: &str) -> Result<MapData> {
    for id in held_ids(pid, "map_id:")? {
        let map = MapData::from_id(id).context("opening a map by id")?;
        if map.info()?.name_as_str() == Some(name) {
            return Ok(map);
        }
    }
    bail!("process {pid} holds no map {name}")
}

/// The eBPF programs process `pid` holds open.
pub fn programs_of(pid: Pid) -> Result<Vec<ProgramInfo>> {
    let ids = held_ids(pid, "prog_id:")?;
    let programs: Vec<ProgramInfo> = loaded_programs()
        .filter_map(Result::ok)
        .filter(|program| ids.contains(&program.id()))
        .collect();
    if programs.is_empty() {
        bail!("process {pid} holds no eBPF programs");
    }
    Ok(programs)
}

/// fwlog's flow filter (see fwlog_common::flow_filter).
pub fn flow_filter_of(pid: Pid) -> Result<FlowFilter> {
    Array::try_from(Map::Array(map_of(pid, "FLOW_FILTER")?)).context("opening FLOW_FILTER")
}

/// The flows the filter counts, in all.
pub fn filter_total(filter: &FlowFilter) -> Result<u64> {
    let slots = filter.get(&0, 0).context("reading FLOW_FILTER")?;
    Ok(slots.iter().map(|&count| u64::from(count)).sum())
}

/// Empties every slot, as if the counts had been lost to races.
pub fn clear_filter(filter: &mut FlowFilter) -> Result<()> {
    filter
        .set(0, [0u8; FLOW_FILTER_SLOTS], 0)
        .context("writing FLOW_FILTER")
}

/// How many bytes of the ring buffer `ring` its reader has consumed: the consumer position in the
/// ring's first page (kernel/bpf/ringbuf.c, `struct bpf_ringbuf`), mapped read-only.
pub fn ring_consumed(ring: &MapData) -> Result<u64> {
    use std::{num::NonZeroUsize, os::fd::AsFd as _};

    use nix::sys::mman::{mmap, munmap, MapFlags, ProtFlags};

    let length = NonZeroUsize::new(4096).context("a page")?;
    // SAFETY: a fresh shared read-only mapping of the ring map's first page (its consumer
    // position), unmapped below; nothing else aliases it.
    let page = unsafe {
        mmap(
            None,
            length,
            ProtFlags::PROT_READ,
            MapFlags::MAP_SHARED,
            ring.fd().as_fd(),
            0,
        )
    }
    .context("mapping a ring buffer's consumer position")?;
    // SAFETY: the page is mapped and the position an aligned 8-byte word at its start.
    let consumed = unsafe {
        (*page.as_ptr().cast::<std::sync::atomic::AtomicU64>())
            .load(std::sync::atomic::Ordering::Acquire)
    };
    // SAFETY: the mapping made above, unmapped once.
    let _ = unsafe { munmap(page, length.get()) };
    Ok(consumed)
}
