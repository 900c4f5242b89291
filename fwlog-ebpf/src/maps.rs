//! Every map of the object. The user side may resize them before loading.

use aya_ebpf::{
    macros::map,
    maps::{PerCpuArray, RingBuf},
};
use fwlog_common::counters::COUNTER_SLOTS;

/// Default ring-buffer size; `fwlog watch --ring-size` overrides it at load time.
const DEFAULT_RING_BYTES: u32 = 4 << 20;

/// Every event, in the order the kernel produced them, to the collector.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(DEFAULT_RING_BYTES, 0);

/// Per-CPU counters; indexes in `fwlog_common::counters`.
#[map]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTER_SLOTS, 0);

/// Adds one to a per-CPU counter (no atomics needed: the slot belongs to this CPU and BPF
/// programs do not migrate while running).
#[inline(always)]
pub fn count(index: u32) {
    if let Some(slot) = COUNTERS.get_ptr_mut(index) {
        // SAFETY: the pointer comes from a successful map lookup of this CPU's slot.
        unsafe { *slot += 1 };
    }
}
