//! tc classifiers on ingress and egress of each watched interface: the flow table.
//!
//! Every IP packet is counted to its flow (direction-normalised 5-tuple + interface). A flow
//! starts with a TCP SYN (without ACK) or the first packet of any other protocol; ICMP errors
//! that quote a tracked flow are counted to it; TCP flows end, and are reported, on FIN from
//! both sides or on RST. The collector sweeps idle flows. The programs never change a packet's
//! fate: they return TC_ACT_UNSPEC (TCX_NEXT), whatever happens.
//!
//! Large values (parsed headers, keys, new flow stats) live in a per-CPU scratch map, not on
//! the stack: eBPF has 512 bytes of stack for a whole call chain.

use aya_ebpf::{
    bindings::{BPF_NOEXIST, TC_ACT_UNSPEC},
    helpers::{bpf_get_socket_cookie, bpf_ktime_get_boot_ns, bpf_skb_load_bytes},
    macros::classifier,
    programs::TcContext,
};
use fwlog_common::{
    counters::{FLOWS_CREATED, FLOWS_ENDED, FRAGMENTS_UNMATCHED, LOST_EVENTS, MALFORMED_PACKETS},
    dns::{DnsEvent, DNS_CAPTURE as DNS_CAPTURE_BYTES, EVENT_KIND_DNS},
    flow::{
        EndReason, FlowEndEvent, FlowKey, FlowScratch, FlowStats, FragmentFlow, FragmentKey,
        NewFlow, EVENT_KIND_FLOW_END, FIN_A, FIN_B, FLOW_REPORTED, SEEN_EGRESS, SEEN_INGRESS,
        SIDE_A, SIDE_B,
    },
    packet::{
        is_icmp_error, parse_ip_into, parse_quoted_into, PacketInfo, PacketReader, IPPROTO_TCP,
        IPPROTO_UDP, NO_L4, PKT_FRAGMENT, PKT_FRAGMENTED, PKT_HAS_ICMP, PKT_L4_UNPARSED,
    },
};

use crate::{
    atomic::{add_u64, fetch_or_u64},
    maps::{
        count, filter_count_in, filter_count_out, may_be_tracked, submit_flags, EVENTS, FLOWS,
        FLOW_SCRATCH, FRAGMENTS, NEW_FLOW, PENDING_VERDICTS, SOCKETS,
    },
    memory::zero_words,
    skb::{TcDirectReader, TcReader},
};

const ETHERNET_HEADER: usize = 14;
/// Interfaces without a link-layer header (tun, WireGuard, PPP): the IP header comes first.
const NO_LINK_HEADER: usize = 0;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
/// 802.1ad + 802.1Q ("QinQ") is as deep as tags go in practice.
const MAX_VLAN_TAGS: usize = 2;

const DNS_PORT: u16 = 53;
/// The smallest DNS message: its 12-byte header.
const DNS_HEADER: usize = 12;

/// 1 when DNS responses are copied to the collector (the user side sets it at load time).
#[no_mangle]
static DNS_CAPTURE: u8 = 0;

const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_ACK: u8 = 0x10;

// One program per direction and link-layer kind, so the header length is fixed at build time
// (a hash lookup per packet for it showed in the bench's profile).

#[classifier]
pub fn flow_ingress(ctx: TcContext) -> i32 {
    track(&ctx, SEEN_INGRESS, ETHERNET_HEADER);
    TC_ACT_UNSPEC
}

#[classifier]
pub fn flow_egress(ctx: TcContext) -> i32 {
    track(&ctx, SEEN_EGRESS, ETHERNET_HEADER);
    TC_ACT_UNSPEC
}

#[classifier]
pub fn flow_ingress_l3(ctx: TcContext) -> i32 {
    track(&ctx, SEEN_INGRESS, NO_LINK_HEADER);
    TC_ACT_UNSPEC
}

#[classifier]
pub fn flow_egress_l3(ctx: TcContext) -> i32 {
    track(&ctx, SEEN_EGRESS, NO_LINK_HEADER);
    TC_ACT_UNSPEC
}

#[inline(always)]
fn track(ctx: &TcContext, seen: u8, link_header: usize) {
    // A flow proposed by an earlier packet on this CPU that no verdict program took: insert it
    // before this packet, which may belong to it, is counted.
    if let Some(proposal) = NEW_FLOW.get_ptr_mut(0) {
        // SAFETY: this CPU's entry; nothing else runs on this CPU while we do.
        let proposal = unsafe { &mut *proposal };
        if proposal.waiting != 0 {
            insert_new_flow(proposal);
        }
    }
    let Some(scratch) = FLOW_SCRATCH.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: this CPU's scratch entry; nothing else runs on this CPU while we do.
    let scratch = unsafe { &mut *scratch };
    let skb = ctx.skb.skb;
    // SAFETY: fields of the program's own context, readable from tc programs.
    let (ifindex, skb_len) = unsafe { ((*skb).ifindex, (*skb).len) };
    let reader = TcDirectReader::new(ctx);
    let Some(l3_offset) = ip_offset(&reader, link_header) else {
        return; // ARP, LLDP, …: not IP, not a flow.
    };
    let Ok(l4_offset) = parse_ip_into(&reader, l3_offset, &mut scratch.packet) else {
        count(MALFORMED_PACKETS);
        return;
    };
    // Each way through the parser ends with its own exact transport offset, and the verifier,
    // which sees the offset compared below, checked the rest of the program once per value:
    // 684 000 instructions verified for flow_ingress (of the kernel's limit of a million) and
    // 1.8 s to load it. Read back from map memory, the offset is just a number: 136 000
    // instructions, 0.2 s.
    scratch.l4_offset = l4_offset as u64;
    // SAFETY: a field of this CPU's scratch entry; volatile so the compiler does not reuse
    // the value it just stored.
    let l4_offset = unsafe { core::ptr::read_volatile(&scratch.l4_offset) } as usize;
    if scratch.packet.flags & PKT_L4_UNPARSED != 0 {
        count(MALFORMED_PACKETS);
        return;
    }
    let ip_bytes = (skb_len as usize).saturating_sub(l3_offset) as u64;
    // SAFETY: helper without arguments.
    let now = unsafe { bpf_ktime_get_boot_ns() };

    if scratch.packet.flags & PKT_FRAGMENT != 0 {
        count_later_fragment(scratch, ifindex, ip_bytes, now);
        return;
    }
    if seen == SEEN_INGRESS
        && scratch.packet.proto == IPPROTO_UDP
        && scratch.packet.src_port == DNS_PORT
        && l4_offset != NO_L4
        // SAFETY: a global the loader may set; read volatile so it is not folded at build time.
        && unsafe { core::ptr::read_volatile(&DNS_CAPTURE) } != 0
    {
        capture_dns(ctx, l4_offset + 8, skb_len as usize);
    }
    if is_icmp_error(&scratch.packet)
        && l4_offset != NO_L4
        && attach_icmp_error(ctx, scratch, l4_offset, ifindex, ip_bytes)
    {
        return;
    }

    let side = scratch.key.set_from(&scratch.packet, ifindex);
    let is_tcp = scratch.packet.proto == IPPROTO_TCP;
    let tcp_flags = if is_tcp { scratch.packet.tcp_flags } else { 0 };
    let opens = !is_tcp || tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN;
    // A packet that would open a flow if none were found skips the lookup when the filter
    // says there is none, and so does an inbound SYN, which opens a connection. Either may be
    // wrong (a retransmitted SYN, a count lost to a race): inserting the flow then finds the
    // one in the table and counts the packet to it.
    let known = if opens && (seen == SEEN_INGRESS && is_tcp || !may_be_tracked(&scratch.key)) {
        None
    } else {
        FLOWS.get_ptr_mut(&scratch.key)
    };
    if let Some(stats) = known {
        add_packet(stats, side, ip_bytes, now, tcp_flags);
        if is_tcp {
            end_tcp_if_closed(&scratch.key, stats, side, tcp_flags);
        }
    } else if opens && seen == SEEN_INGRESS {
        propose_flow(scratch, side, ip_bytes, now);
    } else if opens {
        // SAFETY: helper call on the program's own context.
        scratch.socket_cookie = unsafe { bpf_get_socket_cookie(skb.cast()) };
        start_outbound_flow(scratch, side, ip_bytes, now);
    }
    // Else: TCP in the middle of a connection that predates fwlog; not a new flow.

    if scratch.packet.flags & PKT_FRAGMENTED != 0 {
        // The first fragment: remember its flow for the later ones.
        scratch.fragment = FragmentKey::of_packet(&scratch.packet, ifindex);
        let flow = FragmentFlow {
            key: scratch.key,
            side,
            _pad: [0; 3],
        };
        let _ = FRAGMENTS.insert(&scratch.fragment, &flow, 0);
    }
}

/// Where the IP header starts: after the Ethernet header and up to two VLAN tags, or at 0 on
/// interfaces without a link-layer header. `None` for non-IP frames.
#[inline(always)]
fn ip_offset(reader: &TcDirectReader, link_header: usize) -> Option<usize> {
    if link_header == NO_LINK_HEADER {
        return Some(0);
    }
    let ethertype: [u8; 2] = reader.read(12)?;
    let mut ethertype = u16::from_be_bytes(ethertype);
    let mut offset = 14;
    let mut tags = 0;
    while tags < MAX_VLAN_TAGS && (ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD) {
        let tag: [u8; 4] = reader.read(offset)?;
        ethertype = u16::from_be_bytes([tag[2], tag[3]]);
        offset += 4;
        tags += 1;
    }
    (ethertype == ETH_P_IP || ethertype == ETH_P_IPV6).then_some(offset)
}

/// A later fragment has no ports: find its flow through the first fragment.
#[inline(never)]
fn count_later_fragment(scratch: &mut FlowScratch, ifindex: u32, ip_bytes: u64, now: u64) {
    scratch.fragment = FragmentKey::of_packet(&scratch.packet, ifindex);
    // SAFETY: the value is copied out at once.
    match unsafe { FRAGMENTS.get(&scratch.fragment) } {
        Some(first) => {
            scratch.key = first.key;
            let side = first.side;
            if let Some(stats) = FLOWS.get_ptr_mut(&scratch.key) {
                add_packet(stats, side, ip_bytes, now, 0);
            }
        }
        None => count(FRAGMENTS_UNMATCHED),
    }
}

/// Counts an ICMP error to the flow it quotes. Returns false when no such flow is tracked.
/// A function of its own (a BPF subprogram) so its code is not inlined twice.
#[inline(never)]
fn attach_icmp_error(
    ctx: &TcContext,
    scratch: &mut FlowScratch,
    l4_offset: usize,
    ifindex: u32,
    ip_bytes: u64,
) -> bool {
    // SAFETY: helper without arguments. (Read here, not passed: BPF calls take 5 arguments.)
    let now = unsafe { bpf_ktime_get_boot_ns() };
    // The quoted packet starts after the 8-byte ICMP header. (Read through the helper: rare
    // packets, and direct reads at these offsets did not pass the verifier.)
    if parse_quoted_into(&TcReader(ctx), l4_offset + 8, &mut scratch.quoted).is_err() {
        return false;
    }
    let quoted_side = scratch.key.set_from(&scratch.quoted, ifindex);
    let Some(stats) = FLOWS.get_ptr_mut(&scratch.key) else {
        return false;
    };
    // The error goes back to whoever sent the quoted packet, so it comes from the other side
    // (or from a router on the way, which speaks for it).
    let side = if quoted_side == SIDE_A {
        SIDE_B
    } else {
        SIDE_A
    };
    add_packet(stats, side, ip_bytes, now, 0);
    // SAFETY: `stats` points into a map value; plain byte stores.
    unsafe {
        (*stats).icmp_error_type = scratch.packet.icmp_type;
        (*stats).icmp_error_code = scratch.packet.icmp_code;
    }
    true
}

/// The first packet of an inbound flow: proposed to the verdict program that runs next on this
/// CPU rather than inserted (see [`NewFlow`]). The caller has emptied the proposal slot.
#[inline(never)]
fn propose_flow(scratch: &mut FlowScratch, side: u8, ip_bytes: u64, now: u64) {
    let Some(proposal) = NEW_FLOW.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: this CPU's entry; nothing else runs on this CPU while we do.
    let proposal = unsafe { &mut *proposal };
    first_packet_stats(
        &mut proposal.stats,
        &scratch.packet,
        side,
        SEEN_INGRESS,
        ip_bytes,
        now,
    );
    proposal.key = scratch.key;
    proposal.side = side;
    proposal.waiting = 1;
}

/// Puts a proposed flow into the table and empties the proposal slot.
#[inline(never)]
pub fn insert_new_flow(proposal: &mut NewFlow) {
    proposal.waiting = 0;
    insert_flow(&proposal.key, &proposal.stats, proposal.side);
}

/// Inserts a new flow (`stats` after its first packet, sent by `side`), or, when another CPU
/// created it meanwhile, counts that first packet to the existing one.
#[inline(always)]
fn insert_flow(key: &FlowKey, stats: &FlowStats, side: u8) {
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

/// The first packet of an outbound flow: OUTPUT ran before tc egress, so its verdict is
/// waiting in `PENDING_VERDICTS`, and the flow goes into the table at once.
#[inline(never)]
fn start_outbound_flow(scratch: &mut FlowScratch, side: u8, ip_bytes: u64, now: u64) {
    first_packet_stats(
        &mut scratch.stats,
        &scratch.packet,
        side,
        SEEN_EGRESS,
        ip_bytes,
        now,
    );
    let stats = &mut scratch.stats;
    if scratch.socket_cookie != 0 {
        // SAFETY: the value is copied out at once.
        if let Some(process) = unsafe { SOCKETS.get(&scratch.socket_cookie) } {
            stats.process = *process;
        }
    }
    scratch.pending = scratch.key.on_interface(0);
    // SAFETY: the value is copied out at once.
    if let Some(verdict) = unsafe { PENDING_VERDICTS.get(&scratch.pending) }.copied() {
        stats.action = verdict.action;
        stats.ct_state = verdict.ct_state;
        let _ = PENDING_VERDICTS.remove(&scratch.pending);
    }
    insert_flow(&scratch.key, &scratch.stats, side);
}

/// A new flow's counters after its first packet.
#[inline(always)]
fn first_packet_stats(
    stats: &mut FlowStats,
    packet: &PacketInfo,
    side: u8,
    seen: u8,
    ip_bytes: u64,
    now: u64,
) {
    zero_words(stats);
    stats.first_ns = now;
    stats.last_ns = now;
    stats.tcp_flags = packet.tcp_flags as u64;
    stats.opener = side;
    stats.first_seen = seen;
    stats.pkts[side as usize & 1] = 1;
    stats.bytes[side as usize & 1] = ip_bytes;
    if packet.flags & PKT_HAS_ICMP != 0 {
        stats.icmp_type = packet.icmp_type;
        stats.icmp_code = packet.icmp_code;
    }
}

#[inline(always)]
fn add_packet(stats: *mut FlowStats, side: u8, ip_bytes: u64, now: u64, tcp_flags: u8) {
    let side = side as usize & 1;
    // SAFETY: `stats` points into a live map value; the counters are only changed atomically
    // (the ingress and egress programs of one flow may run on two CPUs at once).
    unsafe {
        add_u64(&raw mut (*stats).pkts[side], 1);
        add_u64(&raw mut (*stats).bytes[side], ip_bytes);
        (*stats).last_ns = now;
        if tcp_flags != 0 {
            fetch_or_u64(&raw mut (*stats).tcp_flags, tcp_flags as u64);
        }
    }
}

#[inline(always)]
fn end_tcp_if_closed(key: &FlowKey, stats: *mut FlowStats, side: u8, tcp_flags: u8) {
    if tcp_flags & TCP_RST != 0 {
        end_flow(key, stats, EndReason::Rst as u8);
    } else if tcp_flags & TCP_FIN != 0 {
        let fin = if side == SIDE_A { FIN_A } else { FIN_B };
        // SAFETY: as in add_packet.
        let before = unsafe { fetch_or_u64(&raw mut (*stats).fin, fin) };
        if (before | fin) & (FIN_A | FIN_B) == FIN_A | FIN_B {
            end_flow(key, stats, EndReason::Fin as u8);
        }
    }
}

/// Reports the flow once (whichever CPU gets here first) and removes it.
#[inline(never)]
fn end_flow(key: &FlowKey, stats: *mut FlowStats, reason: u8) {
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

/// Copies a DNS response (UDP from port 53) to the collector, which keeps address → name.
#[inline(never)]
fn capture_dns(ctx: &TcContext, payload_offset: usize, skb_len: usize) {
    let available = skb_len.saturating_sub(payload_offset);
    if available < DNS_HEADER {
        return;
    }
    let len = if available > DNS_CAPTURE_BYTES {
        DNS_CAPTURE_BYTES
    } else {
        available
    };
    let Some(mut entry) = EVENTS.reserve::<DnsEvent>(0) else {
        count(LOST_EVENTS);
        return;
    };
    let event = entry.as_mut_ptr();
    // SAFETY: `event` is the reserved record; the load stays within its payload array
    // (`len` is between DNS_HEADER and DNS_CAPTURE_BYTES) and within the packet (checked by
    // the helper, which fails instead).
    let loaded = unsafe {
        (*event).kind = EVENT_KIND_DNS;
        (*event)._pad = [0; 3];
        (*event).len = len as u32;
        bpf_skb_load_bytes(
            ctx.skb.skb.cast(),
            payload_offset as u32,
            (&raw mut (*event).payload).cast(),
            len as u32,
        )
    };
    if loaded == 0 {
        entry.submit(submit_flags());
    } else {
        entry.discard(0);
    }
}
