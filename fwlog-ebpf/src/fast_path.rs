//! The tc programs' short way for the packets nearly all traffic is made of, in the shape
//! nearly all of them have (IPv4 without options or IPv6 without extension headers, TCP
//! without FIN or RST, or UDP not from port 53; not a fragment; headers in the packet's
//! linear data; no proposal waiting on this CPU):
//! - a packet of a flow already in the table is counted to it with one flow-table lookup (a
//!   datagram of the flow this CPU found last skips the flow filter before it: `LAST_FOUND`);
//! - an inbound packet that opens a flow (a SYN, a UDP datagram whose flow the filter says is
//!   not tracked) is proposed at once, with no lookup (most are attempts a rule refuses);
//! - a TCP segment of no tracked connection (one older than fwlog) is left alone;
//!
//! exactly as the whole way (`flow.rs`: the general parser, proposals, DNS, ICMP errors,
//! fragments, outbound first packets) would count them. Anything else goes the whole way.
//!
//! The checks are the general parser's (`fwlog_common::packet`) for these shapes, so a packet
//! taken here is one it would have parsed to the same fields; a packet the stack would drop
//! for its lengths is never taken here (the whole way counts it as malformed).

use aya_ebpf::{bindings::__sk_buff, helpers::bpf_ktime_get_boot_ns, programs::TcContext};
use fwlog_common::{
    flow::{FlowKey, FlowScratch, SEEN_INGRESS},
    packet::{
        IPPROTO_TCP, IPPROTO_UDP, IP_VERSION_4, IP_VERSION_6, PKT_HAS_PORTS, PKT_HAS_TCP_FLAGS,
    },
    tcp_seq::{TcpSegment, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN},
};

use crate::{
    entries::{add_packet, same_key},
    maps::{may_be_tracked, FLOWS, LAST_FOUND, NEW_FLOW},
    proposal::propose_flow,
    tcp::{packet_word, tcp_progress},
};

const ETHERNET_HEADER: usize = 14;
const ETH_P_IP: [u8; 2] = [0x08, 0x00];
const ETH_P_IPV6: [u8; 2] = [0x86, 0xdd];
const IPV4_HEADER: usize = 20;
const IPV6_HEADER: usize = 40;
const TCP_HEADER: usize = 20;
const UDP_HEADER: usize = 8;
/// DNS responses go the whole way, which copies them to the collector.
const DNS_PORT: [u8; 2] = [0, 53];

/// `N` bytes at `offset` of the packet's linear data, or `None` past its end (no helper
/// fallback: a packet whose headers are not linear goes the whole way).
#[inline(always)]
fn direct<const N: usize>(data: usize, data_end: usize, offset: usize) -> Option<[u8; N]> {
    let start = data + offset;
    if start + N > data_end {
        return None;
    }
    // SAFETY: the N bytes from `start` lie within the packet's linear data, which the check
    // above proves (to the verifier as well).
    Some(unsafe { core::ptr::read_unaligned(start as *const [u8; N]) })
}

/// Counts the packet if it takes the short way; false when it must go the whole way (nothing
/// was counted then). `seen_and_link` is as for `flow.rs`'s `parse_packet`.
#[inline(never)]
pub fn fast_path(skb: *mut __sk_buff, scratch: &mut FlowScratch, seen_and_link: u64) -> bool {
    let seen = seen_and_link as u8;
    let ctx = TcContext::new(skb);
    let (data, data_end) = (ctx.data(), ctx.data_end());
    // Two constants, not a computed offset: the verifier bounds packet reads by them.
    let l3 = if seen_and_link >> 8 != 0 {
        match direct::<2>(data, data_end, 12) {
            Some(ETH_P_IP | ETH_P_IPV6) => ETHERNET_HEADER,
            _ => return false,
        }
    } else {
        0
    };
    // SAFETY: fields of the program's own context, readable from tc programs.
    let (skb_len, ifindex, from_elsewhere) =
        unsafe { ((*skb).len as usize, (*skb).ifindex, (*skb).ingress_ifindex) };
    let available = skb_len.saturating_sub(l3);
    // The smallest IP header, not one byte: with N = 1 the compiler turns the bound check into
    // `data_end > start`, after which the verifier (6.18) grants no byte at `start` and refuses
    // flow_ingress_l3 (offset 0). A shorter packet goes the whole way.
    let Some(first) = direct::<IPV4_HEADER>(data, data_end, l3) else {
        return false;
    };
    let packet = &mut scratch.packet;
    packet.clear();
    // Where the transport header starts and the IP packet's length, from the IP header.
    let (l4, ip_len) = match first[0] {
        // Version 4, a 20-byte header.
        0x45 => {
            let Some(ip) = direct::<IPV4_HEADER>(data, data_end, l3) else {
                return false;
            };
            let total = u16::from_be_bytes([ip[2], ip[3]]) as usize;
            // A length of 0 (BIG TCP) or one that does not fit, and fragments: the whole way.
            if total < IPV4_HEADER || total > available || ip[6] & 0x3f != 0 || ip[7] != 0 {
                return false;
            }
            packet.ip_version = IP_VERSION_4;
            packet.proto = ip[9];
            packet.src_addr[..4].copy_from_slice(&ip[12..16]);
            packet.dst_addr[..4].copy_from_slice(&ip[16..20]);
            (l3 + IPV4_HEADER, total)
        }
        version if version >> 4 == 6 => {
            let Some(ip) = direct::<IPV6_HEADER>(data, data_end, l3) else {
                return false;
            };
            let payload = u16::from_be_bytes([ip[4], ip[5]]) as usize;
            // Extension headers (their next-header values are neither TCP nor UDP) and
            // jumbograms: the whole way.
            if payload == 0 || IPV6_HEADER + payload > available {
                return false;
            }
            packet.ip_version = IP_VERSION_6;
            packet.proto = ip[6];
            packet.src_addr.copy_from_slice(&ip[8..24]);
            packet.dst_addr.copy_from_slice(&ip[24..40]);
            (l3 + IPV6_HEADER, IPV6_HEADER + payload)
        }
        _ => return false,
    };
    let ip_end = l3 + ip_len;
    let tcp_flags = match packet.proto {
        IPPROTO_TCP => {
            let Some(tcp) = direct::<14>(data, data_end, l4) else {
                return false;
            };
            let header_len = (tcp[12] >> 4) as usize * 4;
            let flags = tcp[13];
            if header_len < TCP_HEADER
                || l4 + header_len > ip_end
                || flags & (TCP_FIN | TCP_RST) != 0
                // A SYN opens a flow only inbound and without ACK; a SYN-ACK or an outbound
                // SYN goes the whole way.
                || flags & TCP_SYN != 0 && (seen != SEEN_INGRESS || flags & TCP_ACK != 0)
            {
                return false;
            }
            packet.src_port = u16::from_be_bytes([tcp[0], tcp[1]]);
            packet.dst_port = u16::from_be_bytes([tcp[2], tcp[3]]);
            packet.tcp_flags = flags;
            packet.flags = PKT_HAS_PORTS | PKT_HAS_TCP_FLAGS;
            scratch.segment = TcpSegment {
                seq: u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]),
                ack: u32::from_be_bytes([tcp[8], tcp[9], tcp[10], tcp[11]]),
                payload: (ip_end - l4 - header_len) as u32,
            };
            flags
        }
        IPPROTO_UDP => {
            let Some(udp) = direct::<UDP_HEADER>(data, data_end, l4) else {
                return false;
            };
            let udp_len = u16::from_be_bytes([udp[4], udp[5]]) as usize;
            if l4 + UDP_HEADER > ip_end
                || udp_len < UDP_HEADER
                || l4 + udp_len > ip_end
                || [udp[0], udp[1]] == DNS_PORT
            {
                return false;
            }
            packet.src_port = u16::from_be_bytes([udp[0], udp[1]]);
            packet.dst_port = u16::from_be_bytes([udp[2], udp[3]]);
            packet.flags = PKT_HAS_PORTS;
            scratch.segment = TcpSegment::default();
            0
        }
        _ => return false,
    };
    // A proposal waiting on this CPU is settled by the whole way, which this packet may answer.
    match NEW_FLOW.get_ptr(0) {
        // SAFETY: this CPU's entry; a plain byte read.
        Some(proposal) if unsafe { (*proposal).waiting } == 0 => {}
        _ => return false,
    }
    let side = scratch.key.set_from(&scratch.packet, ifindex);
    let is_tcp = scratch.packet.proto == IPPROTO_TCP;
    // The whole way's test: what opens a flow when none is found skips the lookup when it is
    // an inbound SYN or the filter says its flow is not there.
    let opens = !is_tcp || tcp_flags & TCP_SYN != 0;
    // A datagram of the flow found last on this CPU (a stream) goes straight to the lookup.
    let found_before = !is_tcp && found_last(&scratch.key);
    let known = if opens && !found_before && (is_tcp || !may_be_tracked(&scratch.key)) {
        None
    } else {
        FLOWS.get_ptr_mut(&scratch.key)
    };
    // SAFETY: helper without arguments.
    let now = unsafe { bpf_ktime_get_boot_ns() };
    let ip_bytes = ip_len as u64;
    match known {
        Some(stats) => {
            if !is_tcp && !found_before {
                remember_found(&scratch.key);
            }
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
            true
        }
        None if opens && seen == SEEN_INGRESS => {
            propose_flow(scratch, side, ip_bytes, now);
            true
        }
        // An outbound first packet: the whole way starts its flow.
        None if opens => false,
        // TCP in the middle of a connection that predates fwlog: not a flow.
        None => true,
    }
}

/// Whether `key` is the flow the short way last found in `FLOWS` on this CPU, so that a packet
/// of a stream need not ask the filter again (hashing the key for it was a tenth of the short
/// way's time for a stream of one flow). Only ever a shortcut: the table lookup that follows
/// decides, whether the flow is still there or not.
#[inline(always)]
pub fn found_last(key: &FlowKey) -> bool {
    match LAST_FOUND.get_ptr(0) {
        // SAFETY: this CPU's entry; plain reads.
        Some(last) => same_key(unsafe { &*last }, key),
        None => false,
    }
}

/// Remembers `key` as the flow the short way last found on this CPU (see [`found_last`]).
#[inline(always)]
pub fn remember_found(key: &FlowKey) {
    if let Some(last) = LAST_FOUND.get_ptr_mut(0) {
        // SAFETY: this CPU's entry; nothing else runs on this CPU while we do.
        unsafe { *last = *key };
    }
}
