//! A flow-table entry's life, shared by the tc and netfilter programs: a new entry's first
//! counts, inserting it, counting a packet to it, and reporting and removing it at its end.

use aya_ebpf::bindings::BPF_NOEXIST;
use fwlog_common::{
    counters::{FLOWS_CREATED, FLOWS_ENDED, LOST_EVENTS},
    flow::{FlowEndEvent, FlowKey, FlowStats, EVENT_KIND_FLOW_END, FLOW_REPORTED},
    packet::{PacketInfo, PKT_HAS_ICMP, PKT_HAS_TCP_FLAGS},
    tcp_seq::{seq_known, TcpSegment},
};

use crate::{
    atomic::{add_u64, fetch_or_u64},
    maps::{count, filter_count_in, filter_count_out, submit_flags, EVENTS, FLOWS},
    memory::zero_words,
};

/// Inserts a new flow (`stats` after its first packet, sent by `side`), or, when another CPU
/// created it meanwhile, counts that first packet to the existing one.
#[inline(always)]
pub fn insert_flow(key: &FlowKey, stats: &FlowStats, side: u8) {
    // Counted in first, so that no packet of the flow finds it in the table but not in the
    // filter (a flow that was there already is counted once more: harmless).
    filter_count_in(key);
    match FLOWS.insert(key, stats, BPF_NOEXIST as u64) {
        Ok(()) => count(FLOWS_CREATED),
        Err(_) => {
            if let Some(existing) = FLOWS.get_ptr_mut(key) {
                // A proposal inserted late must not move the flow's last packet back in time.
                // SAFETY: a live map value; a plain read of a field only ever stored whole.
                let last_ns = unsafe { (*existing).last_ns }.max(stats.first_ns);
                add_packet(
                    existing,
                    side,
                    stats.bytes[side as usize & 1],
                    last_ns,
                    stats.tcp_flags as u8,
                );
            }
        }
    }
}

/// Whether two keys are the same, a word at a time (`==` on the address arrays would be a
/// `bcmp` call, which eBPF does not have).
#[inline(always)]
pub fn same_key(a: &FlowKey, b: &FlowKey) -> bool {
    const WORDS: usize = core::mem::size_of::<FlowKey>() / 4;
    let a = (a as *const FlowKey).cast::<u32>();
    let b = (b as *const FlowKey).cast::<u32>();
    let mut differ = 0;
    let mut i = 0;
    while i < WORDS {
        // SAFETY: `i` stays within the two keys, which are 4-aligned (they hold a u32).
        differ |= unsafe { *a.add(i) ^ *b.add(i) };
        i += 1;
    }
    differ == 0
}

/// A new flow's counters after its first packet, sent by `side` and seen where
/// `seen_and_bytes & 0xff` says (`SEEN_*`), its IP length in the bits above (one argument:
/// BPF calls pass at most five).
#[inline(always)]
pub fn first_packet_stats(
    stats: &mut FlowStats,
    packet: &PacketInfo,
    segment: &TcpSegment,
    side: u8,
    seen_and_bytes: u64,
    now: u64,
) {
    zero_words(stats);
    let side = side & 1;
    stats.first_ns = now;
    stats.last_ns = now;
    stats.opener = side;
    stats.first_seen = (seen_and_bytes & 0xff) as u8;
    stats.pkts[side as usize] = 1;
    stats.bytes[side as usize] = seen_and_bytes >> 8;
    if packet.flags & PKT_HAS_TCP_FLAGS != 0 {
        stats.tcp_flags = packet.tcp_flags as u64;
        stats.next_seq[side as usize] = segment.end(packet.tcp_flags);
        stats.fin = seq_known(side as usize);
    }
    if packet.flags & PKT_HAS_ICMP != 0 {
        stats.icmp_type = packet.icmp_type;
        stats.icmp_code = packet.icmp_code;
    }
}

#[inline(always)]
pub fn add_packet(stats: *mut FlowStats, side: u8, ip_bytes: u64, now: u64, tcp_flags: u8) {
    let side = side as usize & 1;
    // SAFETY: `stats` points into a live map value; the counters are only changed atomically
    // (the ingress and egress programs of one flow may run on two CPUs at once).
    unsafe {
        add_u64(&raw mut (*stats).pkts[side], 1);
        add_u64(&raw mut (*stats).bytes[side], ip_bytes);
        (*stats).last_ns = now;
        // A plain read first: the flags of an established connection are nearly always
        // all there already, and an atomic OR would take the cache line for nothing.
        let flags = tcp_flags as u64;
        if flags != 0 && core::ptr::read_volatile(&raw const (*stats).tcp_flags) & flags != flags {
            fetch_or_u64(&raw mut (*stats).tcp_flags, flags);
        }
    }
}

/// Reports the flow once (whichever CPU gets here first) and removes it.
#[inline(never)]
pub fn end_flow(key: &FlowKey, stats: *mut FlowStats, reason: u8) {
    // SAFETY: as in add_packet.
    let before = unsafe { fetch_or_u64(&raw mut (*stats).fin, FLOW_REPORTED) };
    if before & FLOW_REPORTED != 0 {
        return;
    }
    match EVENTS.reserve::<FlowEndEvent>(0) {
        Some(mut entry) => {
            let event = entry.as_mut_ptr();
            // SAFETY: `event` is the reserved ring-buffer record, `stats` a live map value.
            unsafe {
                (*event).kind = EVENT_KIND_FLOW_END;
                (*event).reason = reason;
                (*event)._pad = [0; 6];
                (*event).key = *key;
                (*event)._pad1 = [0; 4];
                core::ptr::copy_nonoverlapping(stats, &raw mut (*event).stats, 1);
            }
            entry.submit(submit_flags());
        }
        None => count(LOST_EVENTS),
    }
    if FLOWS.remove(key).is_ok() {
        filter_count_out(key);
    }
    count(FLOWS_ENDED);
}
