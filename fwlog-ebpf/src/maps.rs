//! Every map of the object. The user side may resize them before loading.

use aya_ebpf::{
    bindings::{BPF_F_MMAPABLE, BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    btf_maps::{self, ArrayOfMaps},
    helpers::{bpf_get_smp_processor_id, generated::bpf_ringbuf_query},
    macros::{btf_map, map},
    maps::{Array, LruHashMap, PerCpuArray, RingBuf},
};
use fwlog_common::{
    counters::COUNTER_SLOTS,
    dns::{DnsQuestionKey, DNS_QUESTION_SLOTS},
    flow::{
        FlowKey, FlowScratch, FlowStats, FragmentFlow, FragmentKey, NewFlow, PendingVerdict,
        PROPOSAL_SLOTS,
    },
    flow_filter::{counted_in, counted_out, filter_slot, FlowFilter, FILTER_SLOTS},
    process::ProcessInfo,
};

/// Default ring-buffer size; `fwlog watch --ring-size` overrides it at load time.
const DEFAULT_RING_BYTES: u32 = 16 << 20;
/// Default flow-table size; `fwlog watch --flow-table-size` overrides it at load time.
const DEFAULT_FLOWS: u32 = 65_536;

/// The events that are not verdicts (DNS answers, ended flows), in the order the kernel
/// produced them, to the collector. Verdicts go to their CPU's ring in [`EVENT_RINGS`]; the
/// collector reads those first and this one after, so every DNS answer committed before a
/// verdict is learnt before that verdict's record is built (see fwlog's `collector`).
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(DEFAULT_RING_BYTES, 0);

/// The size of the inner ring the object declares for [`EVENT_RINGS`]. The kernel checks an
/// inner map against it by type, key and value size and flags only (kernel/bpf/map_in_map.c,
/// `bpf_map_meta_equal`, which ringbuf.c uses), so the user side's rings may be any size.
const CPU_RING_TEMPLATE_BYTES: usize = 4096;

/// A CPU's ring of verdict events.
pub type CpuRing = btf_maps::RingBuf<u8, CPU_RING_TEMPLATE_BYTES>;

/// The most CPUs the object declares rings for; the user side sets the number of possible
/// CPUs at load time.
const MAX_CPU_RINGS: usize = 4096;

/// One ring of verdict events per CPU (index: the CPU's number), filled by the user side
/// before any program runs: one ring shared by every CPU makes them queue on its spinlock
/// (kernel/bpf/ringbuf.c, `__bpf_ringbuf_reserve`) under a flood.
#[btf_map]
pub static EVENT_RINGS: ArrayOfMaps<CpuRing, MAX_CPU_RINGS> = ArrayOfMaps::new();

/// This CPU's ring of verdict events, if the user side put one there (it always does).
#[inline(always)]
pub fn cpu_ring() -> Option<&'static CpuRing> {
    // SAFETY: the helper takes no arguments.
    let cpu = unsafe { bpf_get_smp_processor_id() };
    EVENT_RINGS.get(cpu)
}

/// Per-CPU counters; indexes in `fwlog_common::counters`.
#[map]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTER_SLOTS, 0);

/// The flow table, written by the tc programs and, for the verdict, the netfilter ones.
///
/// One LRU for all CPUs: with `BPF_F_NO_COMMON_LRU` each CPU would hold its share of the
/// entries only (half of `--flow-table-size` on two CPUs, whatever the others hold). The user
/// side sizes it with room for what each CPU may hold back
/// (`fwlog_common::flow::flow_table_entries`), so it holds the number asked for in all.
#[map]
pub static FLOWS: LruHashMap<FlowKey, FlowStats> = LruHashMap::with_max_entries(DEFAULT_FLOWS, 0);

/// Inbound flows that no verdict program accepted, waiting for an answer that shows the stack
/// took them (see `proposal.rs`). Never reported: most are packets the stack dropped.
#[map]
pub static TENTATIVE: LruHashMap<FlowKey, FlowStats> = LruHashMap::with_max_entries(4096, 0);

/// Tracked flows per hash slot of their key (see `fwlog_common::flow_filter`); the collector
/// maps it into its memory to count the flows it removes.
#[map]
pub static FLOW_FILTER: Array<FlowFilter> = Array::with_max_entries(1, BPF_F_MMAPABLE);

/// Whether `key`'s flow may be in `FLOWS`: false only when it certainly is not.
#[inline(always)]
pub fn may_be_tracked(key: &FlowKey) -> bool {
    match FLOW_FILTER.get_ptr(0) {
        // SAFETY: the filter's one element; the index is below its length.
        Some(filter) => unsafe { (*filter)[filter_slot(key) & (FILTER_SLOTS - 1)] != 0 },
        None => true,
    }
}

/// The key of the last datagram flow the tc short way found in `FLOWS` on this CPU (zeroes,
/// which no flow's key is, until it found one); see `fast_path.rs`.
#[map]
pub static LAST_FOUND: PerCpuArray<FlowKey> = PerCpuArray::with_max_entries(1, 0);

/// Counts `key`'s flow into the filter: call before inserting it into `FLOWS`.
#[inline(always)]
pub fn filter_count_in(key: &FlowKey) {
    if let Some(filter) = FLOW_FILTER.get_ptr_mut(0) {
        // SAFETY: as in may_be_tracked; a plain byte update (see the module's comment on races).
        unsafe {
            let slot = &mut (*filter)[filter_slot(key) & (FILTER_SLOTS - 1)];
            *slot = counted_in(*slot);
        }
    }
}

/// Counts `key`'s flow out of the filter: call after removing it from `FLOWS`.
#[inline(always)]
pub fn filter_count_out(key: &FlowKey) {
    if let Some(filter) = FLOW_FILTER.get_ptr_mut(0) {
        // SAFETY: as in filter_count_in.
        unsafe {
            let slot = &mut (*filter)[filter_slot(key) & (FILTER_SLOTS - 1)];
            *slot = counted_out(*slot);
        }
    }
}

/// Verdicts seen in OUTPUT, where the output interface is not known yet, keyed with ifindex 0;
/// the tc egress program moves them into the flow it creates.
#[map]
pub static PENDING_VERDICTS: LruHashMap<FlowKey, PendingVerdict> =
    LruHashMap::with_max_entries(4096, 0);

/// First fragments' flows, so that later fragments (no ports) are counted to them.
#[map]
pub static FRAGMENTS: LruHashMap<FragmentKey, FragmentFlow> = LruHashMap::with_max_entries(4096, 0);

/// DNS questions the host sent (tc egress), so that tc ingress copies only the answers to
/// them: an answer whose reversed addresses, ports and id find none is no name.
#[map]
pub static DNS_QUESTIONS: LruHashMap<DnsQuestionKey, u8> =
    LruHashMap::with_max_entries(DNS_QUESTION_SLOTS, 0);

/// Working memory of the tc programs, one per CPU.
#[map]
pub static FLOW_SCRATCH: PerCpuArray<FlowScratch> = PerCpuArray::with_max_entries(1, 0);

/// Socket cookie → the process that connected or sent with it (cgroup hooks, `process.rs`).
#[map]
pub static SOCKETS: LruHashMap<u64, ProcessInfo> = LruHashMap::with_max_entries(65_536, 0);

/// The flow tc ingress saw start on this CPU, until a verdict program or the next tc run takes
/// it (see [`NewFlow`]).
#[map]
pub static NEW_FLOW: PerCpuArray<NewFlow> = PerCpuArray::with_max_entries(1, 0);

/// Per slot of `fwlog_common::flow::proposal_slot`, 1 + the CPU whose `NEW_FLOW` last took a
/// proposal of a key in that slot (0: none): an answer that another CPU sends (a server's
/// reply, from whichever CPU its process runs on) finds the proposal there.
#[map]
pub static PROPOSED_ON: Array<[u16; PROPOSAL_SLOTS]> = Array::with_max_entries(1, 0);

/// Another CPU's `NEW_FLOW` entry (`bpf_map_lookup_percpu_elem`, Linux 5.19).
#[inline(always)]
pub fn new_flow_on(cpu: u32) -> Option<*mut NewFlow> {
    let index = 0u32;
    // SAFETY: the map's own address (aya-ebpf's map types are `repr(transparent)` over the
    // definition the loader relocates) and a key of the map's key type.
    let value = unsafe {
        aya_ebpf::helpers::generated::bpf_map_lookup_percpu_elem(
            core::ptr::addr_of!(NEW_FLOW) as *mut core::ffi::c_void,
            (&raw const index).cast(),
            cpu,
        )
    };
    (!value.is_null()).then_some(value.cast())
}

/// A word of map memory per CPU to pass values through, so the verifier forgets them (it does
/// not follow what is stored in map values).
#[map]
static FORGET: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// The largest header offset the tc programs read at: the verifier takes direct packet reads
/// only at offsets it knows to be below 64 KiB, and a header 32 KiB into a packet is past any
/// real chain of headers (offsets past it read, and fail, there).
pub const MAX_HEADER_OFFSET: usize = 0x7fff;

/// `value`, through [`FORGET`], as a header offset (at most [`MAX_HEADER_OFFSET`]).
/// [`MAX_HEADER_OFFSET`] if the map cannot be had (it always can).
#[inline(always)]
pub fn forget(value: usize) -> usize {
    let Some(slot) = FORGET.get_ptr_mut(0) else {
        // Never taken, but verifiers before Linux 6.14 walk it: a constant, so that every way
        // through it is the same way.
        return MAX_HEADER_OFFSET;
    };
    // SAFETY: this CPU's word; volatile so the store and the load both happen.
    let forgotten = unsafe {
        core::ptr::write_volatile(slot, value as u64);
        core::ptr::read_volatile(slot)
    } as usize;
    forgotten.min(MAX_HEADER_OFFSET)
}

/// Records submitted on this CPU, counted down to the next look at the ring's fill level: slot
/// [`CPU_RING_CHECK`] for this CPU's ring, [`SHARED_RING_CHECK`] for [`EVENTS`].
#[map]
static SUBMITS_TO_CHECK: PerCpuArray<u64> = PerCpuArray::with_max_entries(2, 0);

const CPU_RING_CHECK: u32 = 0;
const SHARED_RING_CHECK: u32 = 1;

/// Each CPU looks at how full the ring is once per this many records it submits.
const SUBMITS_PER_CHECK: u64 = 1024;

/// Bytes waiting in a ring from which a check wakes the collector: an eighth of the ring (each
/// CPU's ring and [`EVENTS`] have the same size). The user side sets it at load time with the
/// rings' size.
#[no_mangle]
static RING_WAKE_BYTES: u64 = (DEFAULT_RING_BYTES / 8) as u64;

/// Adds one to a per-CPU counter (no atomics needed: the slot belongs to this CPU and BPF
/// programs do not migrate while running).
#[inline(always)]
pub fn count(index: u32) {
    if let Some(slot) = COUNTERS.get_ptr_mut(index) {
        // SAFETY: the pointer comes from a successful map lookup of this CPU's slot.
        unsafe { *slot += 1 };
    }
}

/// Flags for submitting a record to this CPU's ring `ring` (see [`submit_flags`]).
#[inline(always)]
pub fn cpu_ring_submit_flags(ring: &CpuRing) -> u64 {
    submit_flags_of(core::ptr::from_ref(ring).cast_mut().cast(), CPU_RING_CHECK)
}

/// Flags for submitting a record to [`EVENTS`] (see [`submit_flags_of`]).
#[inline(always)]
pub fn submit_flags() -> u64 {
    // The map's own address (aya-ebpf's map types are `repr(transparent)` over the definition
    // the loader relocates).
    submit_flags_of(
        core::ptr::addr_of!(EVENTS) as *mut core::ffi::c_void,
        SHARED_RING_CHECK,
    )
}

/// Flags for submitting a ring-buffer record: wake the collector only when a CPU's check, once
/// per [`SUBMITS_PER_CHECK`] of its records, finds the ring an eighth full. A wakeup costs a
/// self-IPI (irq_work, a VM exit on virtual machines): one per record was most of the per-flow
/// cost in `cargo xtask bench`, at low rates (the kernel's default wakes a consumer that has
/// caught up, which at low rates is every time) and at high ones (forcing a wakeup for every
/// record while the ring was more than an eighth full). Looking at the fill level itself is a
/// helper call that reads both ends' positions, hence once per check, not per record. The
/// collector also reads the ring on its own timer (every 20 ms), so a wakeup that is not sent
/// delays records, never loses them.
///
/// `ring` is a ring buffer map, `check` the slot of [`SUBMITS_TO_CHECK`] that counts for it.
#[inline(always)]
fn submit_flags_of(ring: *mut core::ffi::c_void, check: u32) -> u64 {
    let Some(to_check) = SUBMITS_TO_CHECK.get_ptr_mut(check) else {
        return BPF_RB_NO_WAKEUP as u64;
    };
    // SAFETY: this CPU's slot; nothing else runs on this CPU while we do.
    unsafe {
        if *to_check > 0 {
            *to_check -= 1;
            return BPF_RB_NO_WAKEUP as u64;
        }
        *to_check = SUBMITS_PER_CHECK - 1;
    }
    // SAFETY: `ring` is a ring buffer map's address, which the helper takes.
    let pending = unsafe { bpf_ringbuf_query(ring, BPF_RB_AVAIL_DATA as u64) };
    // SAFETY: a global the loader sets; read volatile so it is not folded at build time.
    if pending < unsafe { core::ptr::read_volatile(&RING_WAKE_BYTES) } {
        BPF_RB_NO_WAKEUP as u64
    } else {
        BPF_RB_FORCE_WAKEUP as u64
    }
}
