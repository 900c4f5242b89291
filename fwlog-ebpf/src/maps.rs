//! Every map of the object. The user side may resize them before loading.

use aya_ebpf::{
    bindings::{
        BPF_F_NO_COMMON_LRU, BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP,
        BPF_RB_RING_SIZE,
    },
    macros::map,
    maps::{HashMap, LruHashMap, PerCpuArray, RingBuf},
};
use fwlog_common::{
    counters::COUNTER_SLOTS,
    flow::{FlowKey, FlowScratch, FlowStats, FragmentFlow, FragmentKey, PendingVerdict},
    process::ProcessInfo,
};

/// Default ring-buffer size; `fwlog watch --ring-size` overrides it at load time.
const DEFAULT_RING_BYTES: u32 = 4 << 20;
/// Default flow-table size; `fwlog watch --flow-table-size` overrides it at load time.
const DEFAULT_FLOWS: u32 = 65_536;

/// Every event, in the order the kernel produced them, to the collector.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(DEFAULT_RING_BYTES, 0);

/// Per-CPU counters; indexes in `fwlog_common::counters`.
#[map]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTER_SLOTS, 0);

/// The flow table, written by the tc programs and, for the verdict, the netfilter ones.
#[map]
pub static FLOWS: LruHashMap<FlowKey, FlowStats> =
    LruHashMap::with_max_entries(DEFAULT_FLOWS, BPF_F_NO_COMMON_LRU);

/// Verdicts seen in OUTPUT, where the output interface is not known yet, keyed with ifindex 0;
/// the tc egress program moves them into the flow it creates.
#[map]
pub static PENDING_VERDICTS: LruHashMap<FlowKey, PendingVerdict> =
    LruHashMap::with_max_entries(4096, 0);

/// First fragments' flows, so that later fragments (no ports) are counted to them.
#[map]
pub static FRAGMENTS: LruHashMap<FragmentKey, FragmentFlow> = LruHashMap::with_max_entries(4096, 0);

/// Working memory of the tc programs, one per CPU.
#[map]
pub static FLOW_SCRATCH: PerCpuArray<FlowScratch> = PerCpuArray::with_max_entries(1, 0);

/// Socket cookie → the process that connected or sent with it (cgroup hooks, `process.rs`).
#[map]
pub static SOCKETS: LruHashMap<u64, ProcessInfo> = LruHashMap::with_max_entries(65_536, 0);

/// Link-layer header length per watched interface (0 for tun/WireGuard-like devices).
#[map]
pub static LINK_HEADER: HashMap<u32, u32> = HashMap::with_max_entries(256, 0);

/// Adds one to a per-CPU counter (no atomics needed: the slot belongs to this CPU and BPF
/// programs do not migrate while running).
#[inline(always)]
pub fn count(index: u32) {
    if let Some(slot) = COUNTERS.get_ptr_mut(index) {
        // SAFETY: the pointer comes from a successful map lookup of this CPU's slot.
        unsafe { *slot += 1 };
    }
}

/// Flags for submitting a ring-buffer record: wake the collector only once the ring is an
/// eighth full. Waking it for every record costs a self-IPI per event (irq_work, a VM exit on
/// virtual machines) and was most of the per-flow cost in `cargo xtask bench`; the collector
/// reads the ring on its own timer (every 20 ms) anyway.
#[inline(always)]
pub fn submit_flags() -> u64 {
    let pending = EVENTS.query(BPF_RB_AVAIL_DATA as u64);
    let size = EVENTS.query(BPF_RB_RING_SIZE as u64);
    if pending >= size / 8 {
        BPF_RB_FORCE_WAKEUP as u64
    } else {
        BPF_RB_NO_WAKEUP as u64
    }
}
