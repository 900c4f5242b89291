//! tc classifiers on ingress and egress of each watched interface: the flow table.
//!
//! Every IP packet of a tracked flow is counted to it (direction-normalised 5-tuple +
//! interface), by its length as the IP header gives it. A flow starts with a TCP SYN (without
//! ACK) or the first packet of any other protocol, once the stack has accepted it: outbound at
//! tc egress, which only sees what the stack sends; inbound through a proposal that the
//! verdict program or an answer confirms (`proposal.rs`). ICMP errors are counted to the flow
//! they quote, never a flow of their own; TCP flows end, and are reported, on FIN from both
//! sides or on a RST the receiver honours (`tcp.rs`). The collector sweeps idle flows. The
//! programs never change a packet's fate: they return TC_ACT_UNSPEC (TCX_NEXT), whatever
//! happens.
//!
//! With names on, the DNS questions the host sends are copied to the collector and remembered,
//! and an answer is copied only when it matches one (`capture_dns`).
//!
//! Large values (parsed headers, keys, new flow stats) live in a per-CPU scratch map, not on
//! the stack: eBPF has 512 bytes of stack for a whole call chain.

use aya_ebpf::{
    bindings::{__sk_buff, TC_ACT_UNSPEC},
    helpers::{bpf_get_socket_cookie, bpf_ktime_get_boot_ns, bpf_skb_load_bytes},
    macros::classifier,
    programs::TcContext,
};
use fwlog_common::{
    counters::{FRAGMENTS_UNMATCHED, LOST_EVENTS, MALFORMED_PACKETS},
    dns::{DnsEvent, DnsQuestionKey, DNS_CAPTURE as DNS_CAPTURE_BYTES, EVENT_KIND_DNS},
    flow::{FlowScratch, FragmentFlow, FragmentKey, SEEN_EGRESS, SEEN_INGRESS, SIDE_A, SIDE_B},
    packet::{
        is_icmp_error, parse_ip_into, parse_quoted_into, IpLayout, PacketReader, IPPROTO_TCP,
        IPPROTO_UDP, PKT_FRAGMENT, PKT_FRAGMENTED, PKT_HAS_TCP_FLAGS, PKT_L4_UNPARSED,
    },
    tcp_seq::{tcp_segment, TcpSegment, TCP_ACK, TCP_SYN},
};

use crate::{
    entries::{add_packet, first_packet_stats, insert_flow},
    fast_path::fast_path,
    maps::{
        count, may_be_tracked, submit_flags, DNS_QUESTIONS, EVENTS, FLOWS, FLOW_SCRATCH, FRAGMENTS,
        MAX_HEADER_OFFSET, PENDING_VERDICTS, SOCKETS, TENTATIVE,
    },
    proposal::{
        answer_elsewhere, answer_tentative, count_to_waiting, propose_flow, settle_proposal,
        Settled,
    },
    skb::{TcDirectReader, TcReader},
    tcp::{packet_word, tcp_progress},
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
    let Some(scratch) = FLOW_SCRATCH.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: this CPU's scratch entry; nothing else runs on this CPU while we do.
    let scratch = unsafe { &mut *scratch };
    let skb = ctx.skb.skb;
    // Each way through the parser ends with its own exact transport offset (and IPv6 chain,
    // and header length), and the verifier checked the rest of the program once per way:
    // 684 000 instructions verified for flow_ingress once (of the kernel's limit of a
    // million), 1.8 s to load it. Passed through map memory from one function to the next,
    // with nothing else kept between them, every way arrives at the second the same and the
    // rest is checked once. (Two calls side by side, not nested: their stacks add up.)
    let seen_and_link = seen as u64 | (link_header as u64) << 8;
    // Most packets take the short way (a flow already in the table, a new inbound one).
    if fast_path(skb, scratch, seen_and_link) {
        return;
    }
    if parse_packet(skb, scratch, seen_and_link) {
        count_parsed(skb, scratch, seen as u64);
    }
}

/// Parses the packet into `scratch` (its headers, and where they are); false for what is not
/// IP or cannot be parsed (counted, when it came in). `seen_and_link` is the `SEEN_*` value
/// and, in the bits above, the link-layer header length.
#[inline(never)]
fn parse_packet(skb: *mut __sk_buff, scratch: &mut FlowScratch, seen_and_link: u64) -> bool {
    let seen = seen_and_link as u8;
    let ctx = TcContext::new(skb);
    let reader = TcDirectReader::new(&ctx);
    let Some(l3_offset) = ip_offset(&reader, (seen_and_link >> 8) as usize) else {
        return false; // ARP, LLDP, …: not IP, not a flow.
    };
    // Malformed packets are counted once, by the first fwlog program that sees them: tc
    // ingress for what comes in (the verdict program leaves those alone), the verdict
    // program for what the host sends.
    let Ok(layout) = parse_ip_into(&reader, l3_offset, &mut scratch.packet) else {
        if seen == SEEN_INGRESS {
            count(MALFORMED_PACKETS);
        }
        return false;
    };
    scratch.l4_offset = layout.l4_offset as u64;
    scratch.ip_end = layout.ip_end as u64;
    scratch.ip_bytes = layout.ip_len(l3_offset) as u64;
    true
}

/// The rest of [`track`], for a packet whose headers `scratch` holds.
#[inline(never)]
fn count_parsed(skb: *mut __sk_buff, scratch: &mut FlowScratch, seen: u64) {
    let seen = seen as u8;
    let ctx = TcContext::new(skb);
    let ctx = &ctx;
    // SAFETY: fields of the program's own context, readable from tc programs.
    let (ifindex, from_elsewhere) = unsafe { ((*skb).ifindex, (*skb).ingress_ifindex) };
    let reader = TcDirectReader::new(ctx);
    // SAFETY: fields of this CPU's scratch entry; volatile so the compiler does not reuse
    // the values stored before the call. The offset is bounded again for the direct packet
    // reads after it.
    let (layout, ip_bytes) = unsafe {
        (
            IpLayout {
                l4_offset: (core::ptr::read_volatile(&scratch.l4_offset) as usize)
                    .min(MAX_HEADER_OFFSET),
                ip_end: core::ptr::read_volatile(&scratch.ip_end) as usize,
            },
            core::ptr::read_volatile(&scratch.ip_bytes),
        )
    };
    if scratch.packet.flags & PKT_L4_UNPARSED != 0 {
        if seen == SEEN_INGRESS {
            count(MALFORMED_PACKETS);
        }
        return;
    }
    // SAFETY: helper without arguments.
    let now = unsafe { bpf_ktime_get_boot_ns() };

    if scratch.packet.flags & PKT_FRAGMENT != 0 {
        count_later_fragment(scratch, ifindex, ip_bytes, now);
        return;
    }
    // Questions the host sends to port 53, and what comes back from it.
    let dns_port = if seen == SEEN_INGRESS {
        scratch.packet.src_port
    } else {
        scratch.packet.dst_port
    };
    if scratch.packet.proto == IPPROTO_UDP
        && dns_port == DNS_PORT
        // SAFETY: a global the loader may set; read volatile so it is not folded at build time.
        && unsafe { core::ptr::read_volatile(&DNS_CAPTURE) } != 0
    {
        capture_dns(
            ctx,
            scratch,
            layout.l4_offset + 8,
            layout.ip_end,
            seen as u64,
        );
    }
    if is_icmp_error(&scratch.packet) {
        // Counted to the flow it quotes, or to nothing: never a flow of its own.
        attach_icmp_error(ctx, scratch, layout.l4_offset, ifindex, ip_bytes);
        return;
    }

    let is_tcp = scratch.packet.proto == IPPROTO_TCP;
    let tcp_flags = if is_tcp { scratch.packet.tcp_flags } else { 0 };
    scratch.segment = if is_tcp && scratch.packet.flags & PKT_HAS_TCP_FLAGS != 0 {
        tcp_segment(&reader, layout).unwrap_or_default()
    } else {
        TcpSegment::default()
    };
    let side = scratch.key.set_from(&scratch.packet, ifindex);
    // A flow proposed by an earlier packet on this CPU that no verdict program took: this
    // packet may be more of it, or its answer; else it waits in TENTATIVE for one.
    let settled = settle_proposal(scratch, side, tcp_flags, ip_bytes, now);
    if settled == Settled::Absorbed as u8 {
        remember_first_fragment(scratch, ifindex, side);
        return;
    }
    let opens = !is_tcp || tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN;
    // A packet that would open a flow if none were found skips the lookup when the filter
    // says there is none, and so does an inbound SYN, which opens a connection. Either may be
    // wrong (a retransmitted SYN, a count lost to a race): inserting the flow then finds the
    // one in the table and counts the packet to it.
    let mut known = if settled == Settled::Nothing as u8
        && opens
        && (seen == SEEN_INGRESS && is_tcp || !may_be_tracked(&scratch.key))
    {
        None
    } else {
        FLOWS.get_ptr_mut(&scratch.key)
    };
    // An answer leaving the host to an inbound flow no verdict program saw (a rule of the
    // user's took it, or it was forwarded): the stack took it, so it becomes a flow now.
    // Only what can open the answer: anything but TCP, or a SYN-ACK.
    if known.is_none()
        && seen == SEEN_EGRESS
        && (!is_tcp || tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN | TCP_ACK)
        && (answer_tentative(scratch, side, tcp_flags)
            || answer_elsewhere(scratch, side, tcp_flags))
    {
        known = FLOWS.get_ptr_mut(&scratch.key);
        if known.is_none() {
            // A RST to it: refused, not a flow.
            return;
        }
    }
    if let Some(stats) = known {
        add_packet(stats, side, ip_bytes, now, tcp_flags);
        if is_tcp {
            let local = from_elsewhere == 0;
            tcp_progress(
                scratch,
                stats,
                packet_word(side, tcp_flags, seen, local),
                now,
            );
        }
    } else if opens && seen == SEEN_INGRESS {
        propose_flow(scratch, side, ip_bytes, now);
    } else if opens {
        // SAFETY: helper call on the program's own context.
        scratch.socket_cookie = unsafe { bpf_get_socket_cookie(skb.cast()) };
        start_outbound_flow(scratch, side, ip_bytes, now);
    }
    // Else: TCP in the middle of a connection that predates fwlog; not a new flow.
    remember_first_fragment(scratch, ifindex, side);
}

/// The first fragment of a datagram: remember its flow for the later ones (no ports).
#[inline(always)]
fn remember_first_fragment(scratch: &mut FlowScratch, ifindex: u32, side: u8) {
    if scratch.packet.flags & PKT_FRAGMENTED != 0 {
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
            } else if !count_to_waiting(&scratch.key, side, ip_bytes, now) {
                // Not accepted yet (reassembly comes before the firewall): counted to the
                // proposal or the tentative flow the first fragment made.
                if let Some(stats) = TENTATIVE.get_ptr_mut(&scratch.key) {
                    add_packet(stats, side, ip_bytes, now, 0);
                }
            }
        }
        None => count(FRAGMENTS_UNMATCHED),
    }
}

/// Counts an ICMP error to the flow it quotes, if that is a tracked flow and the quote is a
/// packet the error's recipient could have sent (its source is the error's destination, as
/// the kernel's ICMP handlers look it up); garbage and quotes of untracked flows count to
/// nothing. A function of its own (a BPF subprogram) so its code is not inlined twice.
#[inline(never)]
fn attach_icmp_error(
    ctx: &TcContext,
    scratch: &mut FlowScratch,
    l4_offset: usize,
    ifindex: u32,
    ip_bytes: u64,
) {
    // SAFETY: helper without arguments. (Read here, not passed: BPF calls take 5 arguments.)
    let now = unsafe { bpf_ktime_get_boot_ns() };
    // The quoted packet starts after the 8-byte ICMP header. (Read through the helper: rare
    // packets, and direct reads at these offsets did not pass the verifier.)
    if parse_quoted_into(&TcReader(ctx), l4_offset + 8, &mut scratch.quoted).is_err()
        || scratch.quoted.flags & PKT_L4_UNPARSED != 0
        || scratch.quoted.ip_version != scratch.packet.ip_version
        || !same_address(&scratch.quoted.src_addr, &scratch.packet.dst_addr)
    {
        return;
    }
    let quoted_side = scratch.key.set_from(&scratch.quoted, ifindex);
    let Some(stats) = FLOWS.get_ptr_mut(&scratch.key) else {
        return;
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
}

/// Whether two addresses are the same, a word at a time (no `bcmp` in eBPF).
#[inline(always)]
fn same_address(a: &[u8; 16], b: &[u8; 16]) -> bool {
    let mut differ = 0;
    let mut i = 0;
    while i < 16 {
        differ |= a[i] ^ b[i];
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
        &scratch.segment,
        side,
        SEEN_EGRESS as u64 | ip_bytes << 8,
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

/// Copies a DNS question the host sends (UDP to port 53) or an answer to one (UDP from port
/// 53 whose reversed addresses, ports and id match a question in `DNS_QUESTIONS`) to the
/// collector, which keeps address → name: the datagram's addresses and its payload, up to where
/// the IP packet ends. An answer to no question is not copied (a spoofed flood of them costs
/// the ring nothing).
#[inline(never)]
fn capture_dns(
    ctx: &TcContext,
    scratch: &FlowScratch,
    payload_offset: usize,
    ip_end: usize,
    seen: u64,
) {
    let seen = seen as u8;
    let available = ip_end.saturating_sub(payload_offset);
    if available < DNS_HEADER {
        return;
    }
    let packet = &scratch.packet;
    let mut key = if seen == SEEN_EGRESS {
        DnsQuestionKey {
            local_addr: packet.src_addr,
            remote_addr: packet.dst_addr,
            local_port: packet.src_port,
            remote_port: packet.dst_port,
            id: [0; 2],
            ip_version: packet.ip_version,
            _pad: 0,
        }
    } else {
        DnsQuestionKey {
            local_addr: packet.dst_addr,
            remote_addr: packet.src_addr,
            local_port: packet.dst_port,
            remote_port: packet.src_port,
            id: [0; 2],
            ip_version: packet.ip_version,
            _pad: 0,
        }
    };
    // SAFETY: two bytes into the key's own array; the helper checks the packet's bounds and
    // fails instead.
    if unsafe {
        bpf_skb_load_bytes(
            ctx.skb.skb.cast(),
            payload_offset as u32,
            (&raw mut key.id).cast(),
            2,
        )
    } != 0
    {
        return;
    }
    if seen == SEEN_EGRESS {
        // Full: the LRU forgets the oldest question, whose answer then names nothing.
        let _ = DNS_QUESTIONS.insert(&key, &0, 0);
    // SAFETY: only whether the key is there is used.
    } else if unsafe { DNS_QUESTIONS.get(&key) }.is_none() {
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
        (*event).seen = seen;
        (*event)._pad = [0; 2];
        (*event).len = len as u32;
        (*event).packet = *packet;
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
