//! The collector's side of the flow filter (`fwlog_common::flow_filter`): the kernel's
//! `FLOW_FILTER` array mapped into memory, so that counting out the flows the sweep removes
//! costs no system call.

use std::{
    num::NonZeroUsize,
    os::fd::AsFd,
    ptr::NonNull,
    sync::atomic::{AtomicU8, Ordering},
};

use anyhow::{bail, Context as _, Result};
use aya::maps::MapData;
use fwlog_common::flow::FlowKey;
use fwlog_common::flow_filter::{counted_in, counted_out, filter_slot, FlowFilter, FILTER_SLOTS};
use nix::sys::mman::{mmap, munmap, MapFlags, ProtFlags};

/// Counts a removed flow out of `slots`.
pub fn count_out(slots: &[AtomicU8], key: &FlowKey) {
    if let Some(slot) = slots.get(filter_slot(key)) {
        // The closure always returns Some: the update cannot fail.
        let _ = slot.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |count| {
            Some(counted_out(count))
        });
    }
}

/// Sets every slot to the number of `keys` that fall in it: the flows the table holds now.
pub fn recount<'a>(slots: &[AtomicU8], keys: impl IntoIterator<Item = &'a FlowKey>) {
    let mut counts = vec![0u8; slots.len()];
    for key in keys {
        if let Some(count) = counts.get_mut(filter_slot(key)) {
            *count = counted_in(*count);
        }
    }
    for (slot, count) in slots.iter().zip(counts) {
        if slot.load(Ordering::Relaxed) != count {
            slot.store(count, Ordering::Relaxed);
        }
    }
}

/// The kernel's filter, mapped shared and read-write; unmapped on drop.
pub struct MappedFilter {
    /// Keeps the map alive while it is mapped.
    _map: MapData,
    start: NonNull<libc::c_void>,
}

impl MappedFilter {
    /// Maps `map`, which must be the `FLOW_FILTER` array (one [`FlowFilter`] element,
    /// created with `BPF_F_MMAPABLE`).
    pub fn new(map: MapData) -> Result<Self> {
        let info = map.info().context("reading the flow filter's layout")?;
        if info.value_size() as usize != size_of::<FlowFilter>() || info.max_entries() != 1 {
            bail!(
                "the flow filter map holds {} values of {} bytes, not one of {}",
                info.max_entries(),
                info.value_size(),
                size_of::<FlowFilter>()
            );
        }
        let length = NonZeroUsize::new(size_of::<FlowFilter>()).context("empty flow filter")?;
        // SAFETY: a new shared mapping of a BPF array's fd, at an address the kernel picks; it
        // aliases nothing in this process. Array maps made with BPF_F_MMAPABLE map their
        // values from offset 0.
        let start = unsafe {
            mmap(
                None,
                length,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
                map.fd().as_fd(),
                0,
            )
        }
        .context("mapping the flow filter into memory")?;
        Ok(MappedFilter { _map: map, start })
    }

    pub fn slots(&self) -> &[AtomicU8] {
        // SAFETY: the mapping is FILTER_SLOTS bytes long and lives as long as `self`; the
        // kernel's programs write it concurrently, so it is only accessed atomically here.
        unsafe { std::slice::from_raw_parts(self.start.cast::<AtomicU8>().as_ptr(), FILTER_SLOTS) }
    }
}

impl Drop for MappedFilter {
    fn drop(&mut self) {
        // SAFETY: `start` and the length are what mmap returned and took; no slice from
        // `slots()` outlives `self`.
        let _ = unsafe { munmap(self.start, size_of::<FlowFilter>()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(port: u16) -> FlowKey {
        FlowKey {
            port_a: port,
            port_b: 53,
            ifindex: 2,
            proto: 17,
            ip_version: 4,
            ..FlowKey::default()
        }
    }

    fn empty() -> Vec<AtomicU8> {
        (0..FILTER_SLOTS).map(|_| AtomicU8::new(0)).collect()
    }

    fn count_at(slots: &[AtomicU8], key: &FlowKey) -> u8 {
        slots[filter_slot(key)].load(Ordering::Relaxed)
    }

    #[test]
    fn a_recount_holds_exactly_the_flows_in_the_table() {
        let slots = empty();
        // Counts left behind by flows the kernel evicted.
        slots[7].store(3, Ordering::Relaxed);
        let keys = [key(1), key(2), key(2)];
        recount(&slots, &keys);
        assert_eq!(count_at(&slots, &key(1)), 1);
        assert_eq!(count_at(&slots, &key(2)), 2);
        let total: u32 = slots
            .iter()
            .map(|s| u32::from(s.load(Ordering::Relaxed)))
            .sum();
        assert_eq!(total, 3, "slot 7 and every other stale count are gone");
    }

    #[test]
    fn counting_out_the_last_flow_of_a_slot_empties_it() {
        let slots = empty();
        recount(&slots, &[key(9)]);
        count_out(&slots, &key(9));
        assert_eq!(count_at(&slots, &key(9)), 0);
        count_out(&slots, &key(9));
        assert_eq!(count_at(&slots, &key(9)), 0, "an empty slot stays empty");
    }
}
