//! Parser tests on hand-built byte arrays.

extern crate std;
use std::{vec, vec::Vec};

use super::*;

fn ipv4(proto: u8, options: &[u8], frag: u16, payload: &[u8]) -> Vec<u8> {
    assert!(options.len().is_multiple_of(4));
    let ihl = 5 + options.len() / 4;
    let total = (ihl * 4 + payload.len()) as u16;
    let mut p = Vec::new();
    p.push(0x40 | ihl as u8);
    p.push(0);
    p.extend_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&[0x12, 0x34]);
    p.extend_from_slice(&frag.to_be_bytes());
    p.extend_from_slice(&[64, proto, 0, 0]);
    p.extend_from_slice(&[10, 200, 0, 2]);
    p.extend_from_slice(&[10, 200, 0, 1]);
    p.extend_from_slice(options);
    p.extend_from_slice(payload);
    p
}

fn ipv6(next_header: u8, ext_and_payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&(ext_and_payload.len() as u16).to_be_bytes());
    p.extend_from_slice(&[next_header, 64]);
    let mut src = [0u8; 16];
    src[..2].copy_from_slice(&[0xfd, 0x00]);
    src[15] = 2;
    let mut dst = src;
    dst[15] = 1;
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    p.extend_from_slice(ext_and_payload);
    p
}

fn tcp_syn(src_port: u16, dst_port: u16) -> Vec<u8> {
    let mut t = Vec::new();
    t.extend_from_slice(&src_port.to_be_bytes());
    t.extend_from_slice(&dst_port.to_be_bytes());
    t.extend_from_slice(&[0; 8]);
    t.push(5 << 4);
    t.push(0x02);
    t.extend_from_slice(&[0xff, 0xff, 0, 0, 0, 0]);
    t
}

fn udp(src_port: u16, dst_port: u16) -> Vec<u8> {
    let mut u = Vec::new();
    u.extend_from_slice(&src_port.to_be_bytes());
    u.extend_from_slice(&dst_port.to_be_bytes());
    u.extend_from_slice(&[0, 8, 0, 0]);
    u
}

#[test]
fn ipv4_tcp_syn() {
    let p = ipv4(IPPROTO_TCP, &[], 0, &tcp_syn(51234, 22));
    let info = parse_ip(p.as_slice(), 0).expect("parses");
    assert_eq!(info.ip_version, 4);
    assert_eq!(info.proto, IPPROTO_TCP);
    assert_eq!(&info.src_addr[..4], &[10, 200, 0, 2]);
    assert_eq!(&info.dst_addr[..4], &[10, 200, 0, 1]);
    assert_eq!(&info.src_addr[4..], &[0; 12]);
    assert_eq!((info.src_port, info.dst_port), (51234, 22));
    assert_eq!(info.tcp_flags, 0x02);
    assert_eq!(info.flags, PKT_HAS_PORTS | PKT_HAS_TCP_FLAGS);
}

#[test]
fn ipv4_udp_at_an_offset() {
    let mut p = vec![0xaa; 14];
    p.extend(ipv4(IPPROTO_UDP, &[], 0, &udp(5353, 53)));
    let info = parse_ip(p.as_slice(), 14).expect("parses");
    assert_eq!((info.src_port, info.dst_port), (5353, 53));
    assert_eq!(info.flags, PKT_HAS_PORTS);
}

#[test]
fn ipv4_options_move_the_transport_header() {
    // Two NOPs and a 4-byte-aligned router-alert-like option: 8 bytes of options, IHL 7.
    let options = [1, 1, 0x94, 4, 0, 0, 1, 1];
    let p = ipv4(IPPROTO_UDP, &options, 0, &udp(1000, 2000));
    let info = parse_ip(p.as_slice(), 0).expect("parses");
    assert_eq!((info.src_port, info.dst_port), (1000, 2000));
}

#[test]
fn ipv4_ihl_below_five_is_rejected() {
    let mut p = ipv4(IPPROTO_UDP, &[], 0, &udp(1, 2));
    p[0] = 0x44;
    assert_eq!(parse_ip(p.as_slice(), 0), Err(ParseError::BadHeaderLength));
}

#[test]
fn truncated_ip_header_is_an_error() {
    let p = ipv4(IPPROTO_TCP, &[], 0, &tcp_syn(1, 2));
    assert_eq!(parse_ip(&p[..19], 0), Err(ParseError::Truncated));
    assert_eq!(parse_ip(&p[..0], 0), Err(ParseError::Truncated));
    let v6 = ipv6(IPPROTO_TCP, &tcp_syn(1, 2));
    assert_eq!(parse_ip(&v6[..39], 0), Err(ParseError::Truncated));
}

#[test]
fn unknown_version_is_an_error() {
    let mut p = ipv4(IPPROTO_TCP, &[], 0, &tcp_syn(1, 2));
    p[0] = 0x55;
    assert_eq!(parse_ip(p.as_slice(), 0), Err(ParseError::UnknownVersion));
}

#[test]
fn truncated_tcp_header_keeps_addresses_and_drops_ports() {
    let p = ipv4(IPPROTO_TCP, &[], 0, &tcp_syn(1234, 80)[..10]);
    let info = parse_ip(p.as_slice(), 0).expect("IP header is fine");
    assert_eq!(info.flags, PKT_L4_UNPARSED);
    assert_eq!((info.src_port, info.dst_port), (0, 0));
    assert_eq!(&info.dst_addr[..4], &[10, 200, 0, 1]);
}

#[test]
fn tcp_data_offset_below_five_is_malformed() {
    let mut t = tcp_syn(1234, 80);
    t[12] = 4 << 4;
    let p = ipv4(IPPROTO_TCP, &[], 0, &t);
    let info = parse_ip(p.as_slice(), 0).expect("IP header is fine");
    assert_eq!(info.flags, PKT_L4_UNPARSED);
}

#[test]
fn ipv4_non_first_fragment_has_no_ports() {
    // Offset 185 * 8 bytes: the payload is the middle of a datagram, not a UDP header.
    let p = ipv4(IPPROTO_UDP, &[], 185, &udp(1111, 2222));
    let info = parse_ip(p.as_slice(), 0).expect("parses");
    assert_eq!(info.flags, PKT_FRAGMENT | PKT_FRAGMENTED);
    assert_eq!((info.src_port, info.dst_port), (0, 0));
    assert_eq!(info.proto, IPPROTO_UDP);
    assert_eq!(info.frag_id, 0x1234);
}

#[test]
fn ipv4_first_fragment_carries_the_ports() {
    // More-fragments set, offset 0.
    let p = ipv4(IPPROTO_UDP, &[], 0x2000, &udp(1111, 2222));
    let info = parse_ip(p.as_slice(), 0).expect("parses");
    assert_eq!(info.flags, PKT_HAS_PORTS | PKT_FRAGMENTED);
    assert_eq!((info.src_port, info.dst_port), (1111, 2222));
    assert_eq!(info.frag_id, 0x1234);
}

#[test]
fn icmp_echo_request() {
    let p = ipv4(IPPROTO_ICMP, &[], 0, &[8, 0, 0, 0, 0, 1, 0, 1]);
    let info = parse_ip(p.as_slice(), 0).expect("parses");
    assert_eq!((info.icmp_type, info.icmp_code), (8, 0));
    assert_eq!(info.flags, PKT_HAS_ICMP | PKT_HAS_ICMP_ID);
    assert_eq!(info.icmp_id, 1);
}

#[test]
fn ipv6_tcp() {
    let p = ipv6(IPPROTO_TCP, &tcp_syn(40000, 443));
    let info = parse_ip(p.as_slice(), 0).expect("parses");
    assert_eq!(info.ip_version, 6);
    assert_eq!(info.src_addr[0], 0xfd);
    assert_eq!(info.src_addr[15], 2);
    assert_eq!(info.dst_addr[15], 1);
    assert_eq!((info.src_port, info.dst_port), (40000, 443));
}

#[test]
fn ipv6_extension_headers_are_walked() {
    // Hop-by-hop (8 bytes) then destination options (16 bytes) then UDP.
    let mut ext = vec![IPV6_DEST_OPTS, 0, 1, 4, 0, 0, 0, 0];
    ext.extend_from_slice(&[IPPROTO_UDP, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    ext.extend(udp(546, 547));
    let p = ipv6(IPV6_HOP_BY_HOP, &ext);
    let info = parse_ip(p.as_slice(), 0).expect("parses");
    assert_eq!(info.proto, IPPROTO_UDP);
    assert_eq!((info.src_port, info.dst_port), (546, 547));
}

#[test]
fn ipv6_icmpv6_echo() {
    let p = ipv6(IPPROTO_ICMPV6, &[128, 0, 0, 0, 0, 1, 0, 1]);
    let info = parse_ip(p.as_slice(), 0).expect("parses");
    assert_eq!(info.proto, IPPROTO_ICMPV6);
    assert_eq!((info.icmp_type, info.icmp_code), (128, 0));
}

#[test]
fn ipv6_fragments() {
    let mut first = vec![IPPROTO_UDP, 0, 0x00, 0x01, 0, 0, 0, 7];
    first.extend(udp(7, 9));
    let info = parse_ip(ipv6(IPV6_FRAGMENT, &first).as_slice(), 0).expect("parses");
    assert_eq!(
        (info.proto, info.src_port, info.dst_port),
        (IPPROTO_UDP, 7, 9)
    );

    let mut later = vec![IPPROTO_UDP, 0, 0x05, 0x00, 0, 0, 0, 7];
    later.extend(udp(7, 9));
    let info = parse_ip(ipv6(IPV6_FRAGMENT, &later).as_slice(), 0).expect("parses");
    assert_eq!(info.flags, PKT_FRAGMENT | PKT_FRAGMENTED);
    assert_eq!(info.frag_id, 7);
    assert_eq!((info.proto, info.src_port), (IPPROTO_UDP, 0));
}

#[test]
fn ipv6_endless_extension_chain_is_bounded() {
    // Hop-by-hop headers pointing at each other, more than the walk allows.
    let mut ext = Vec::new();
    for _ in 0..MAX_IPV6_EXT_HEADERS + 2 {
        ext.extend_from_slice(&[IPV6_HOP_BY_HOP, 0, 0, 0, 0, 0, 0, 0]);
    }
    let info = parse_ip(ipv6(IPV6_HOP_BY_HOP, &ext).as_slice(), 0).expect("parses");
    assert_eq!(info.flags, PKT_L4_UNPARSED);
}

#[test]
fn ipv6_extension_header_running_off_the_end() {
    // The hop-by-hop header claims 16 bytes, the packet ends after 8.
    let info = parse_ip(
        ipv6(IPV6_HOP_BY_HOP, &[IPPROTO_TCP, 1, 0, 0, 0, 0, 0, 0]).as_slice(),
        0,
    )
    .expect("parses");
    assert_eq!(info.flags, PKT_L4_UNPARSED);
    assert_eq!(info.proto, IPPROTO_TCP);
}

#[test]
fn reads_never_pass_the_end() {
    let bytes = [1u8, 2, 3];
    assert_eq!(bytes.as_slice().read::<3>(0), Some([1, 2, 3]));
    assert_eq!(bytes.as_slice().read::<2>(2), None);
    assert_eq!(bytes.as_slice().read::<1>(usize::MAX), None);
}

#[test]
fn icmp_error_quotes_the_flow_it_answers() {
    // Port unreachable (3/3) quoting a UDP datagram 10.200.0.2:5353 -> 10.200.0.1:9.
    let quoted = ipv4(IPPROTO_UDP, &[], 0, &udp(5353, 9));
    let mut icmp = vec![3, 3, 0, 0, 0, 0, 0, 0];
    icmp.extend_from_slice(&quoted[..28]);
    let p = ipv4(IPPROTO_ICMP, &[], 0, &icmp);
    let outer = parse_ip(p.as_slice(), 0).expect("parses");
    assert!(is_icmp_error(&outer));
    assert_eq!(outer.flags & PKT_HAS_ICMP_ID, 0, "errors carry no echo id");
    let inner = parse_quoted(p.as_slice(), 20 + 8).expect("quoted header parses");
    assert_eq!(
        (inner.proto, inner.src_port, inner.dst_port),
        (IPPROTO_UDP, 5353, 9)
    );
    assert_eq!(&inner.src_addr[..4], &[10, 200, 0, 2]);
}

#[test]
fn quoted_tcp_needs_only_the_ports() {
    // Time exceeded quoting only 8 bytes of a TCP header: the ports are there, the flags not.
    let quoted = ipv4(IPPROTO_TCP, &[], 0, &tcp_syn(4000, 443));
    let mut icmp = vec![11, 0, 0, 0, 0, 0, 0, 0];
    icmp.extend_from_slice(&quoted[..28]);
    let p = ipv4(IPPROTO_ICMP, &[], 0, &icmp);
    let inner = parse_quoted(p.as_slice(), 28).expect("parses");
    assert_eq!((inner.src_port, inner.dst_port), (4000, 443));
    assert_eq!(inner.flags, PKT_HAS_PORTS);
}

#[test]
fn echo_is_not_an_error() {
    let p = ipv6(IPPROTO_ICMPV6, &[129, 0, 0, 0, 0x12, 0x34, 0, 1]);
    let info = parse_ip(p.as_slice(), 0).expect("parses");
    assert!(!is_icmp_error(&info));
    assert_eq!(info.icmp_id, 0x1234);
    let unreachable = parse_ip(
        ipv6(IPPROTO_ICMPV6, &[1, 4, 0, 0, 0, 0, 0, 0]).as_slice(),
        0,
    )
    .expect("parses");
    assert!(is_icmp_error(&unreachable));
}

#[test]
fn link_layer_padding_is_not_part_of_the_packet() {
    // A 28-byte datagram padded to a 46-byte Ethernet payload.
    let mut p = ipv4(IPPROTO_UDP, &[], 0, &udp(40000, 7000));
    p.extend_from_slice(&[0; 18]);
    let (info, layout) = parse_ip_layout(p.as_slice(), 0).expect("parses");
    assert_eq!((info.src_port, info.dst_port), (40000, 7000));
    assert_eq!(layout.ip_len(0), 28);
}

/// `p` with its IPv4 total length set to `total`.
fn with_total_length(mut p: Vec<u8>, total: u16) -> Vec<u8> {
    p[2..4].copy_from_slice(&total.to_be_bytes());
    p
}

#[test]
fn lying_ipv4_lengths_are_errors() {
    let p = ipv4(IPPROTO_UDP, &[], 0, &udp(1, 2));
    assert_eq!(
        parse_ip(with_total_length(p.clone(), 1000).as_slice(), 0),
        Err(ParseError::BadTotalLength),
        "longer than the packet"
    );
    assert_eq!(
        parse_ip(with_total_length(p.clone(), 10).as_slice(), 0),
        Err(ParseError::BadTotalLength),
        "shorter than its header"
    );
    assert_eq!(
        parse_ip(with_total_length(p, 0).as_slice(), 0),
        Err(ParseError::BadTotalLength),
        "zero, in a packet that is not a BIG TCP one"
    );
}

#[test]
fn headers_past_the_ip_packets_end_are_not_read() {
    // The IP packet ends with its header; a UDP header follows in the frame.
    let p = with_total_length(ipv4(IPPROTO_UDP, &[], 0, &udp(1, 2)), 20);
    let info = parse_ip(p.as_slice(), 0).expect("the IP header is fine");
    assert_eq!(info.flags, PKT_L4_UNPARSED);
    assert_eq!((info.src_port, info.dst_port), (0, 0));
    // A TCP SYN cut 10 bytes into its header: ports there, flags not.
    let p = with_total_length(ipv4(IPPROTO_TCP, &[], 0, &tcp_syn(1, 2)), 30);
    assert_eq!(
        parse_ip(p.as_slice(), 0).expect("parses").flags,
        PKT_L4_UNPARSED
    );
    // A UDP length that runs past the packet.
    let mut datagram = udp(1, 2);
    datagram[4..6].copy_from_slice(&100u16.to_be_bytes());
    let p = ipv4(IPPROTO_UDP, &[], 0, &datagram);
    assert_eq!(
        parse_ip(p.as_slice(), 0).expect("parses").flags,
        PKT_L4_UNPARSED
    );
}

#[test]
fn a_tiny_first_fragment_is_a_fragment_not_malformed() {
    // More fragments, offset 0, and only 8 bytes of the TCP header (RFC 1858).
    let p = ipv4(IPPROTO_TCP, &[], 0x2000, &tcp_syn(1, 2)[..8]);
    let info = parse_ip(p.as_slice(), 0).expect("parses");
    assert_eq!(info.flags, PKT_FRAGMENT | PKT_FRAGMENTED);
}

/// `n` destination-options headers, then UDP.
fn destination_options_chain(n: usize) -> Vec<u8> {
    let mut ext = Vec::new();
    for i in 0..n {
        let next = if i + 1 == n {
            IPPROTO_UDP
        } else {
            IPV6_DEST_OPTS
        };
        ext.extend_from_slice(&[next, 0, 1, 4, 0, 0, 0, 0]);
    }
    ext.extend(udp(546, 547));
    ipv6(IPV6_DEST_OPTS, &ext)
}

#[test]
fn ipv6_chains_up_to_the_bound_keep_their_transport_header() {
    for n in [8, 11, MAX_IPV6_EXT_HEADERS] {
        let info = parse_ip(destination_options_chain(n).as_slice(), 0).expect("parses");
        assert_eq!(info.proto, IPPROTO_UDP, "{n} headers");
        assert_eq!((info.src_port, info.dst_port), (546, 547), "{n} headers");
        assert_eq!(info.flags, PKT_HAS_PORTS, "{n} headers");
    }
    let info = parse_ip(
        destination_options_chain(MAX_IPV6_EXT_HEADERS + 1).as_slice(),
        0,
    )
    .expect("parses");
    assert_eq!(info.flags, PKT_L4_UNPARSED, "past the bound");
}

#[test]
fn lying_ipv6_payload_lengths() {
    let mut p = ipv6(IPPROTO_UDP, &udp(1, 2));
    p[4..6].copy_from_slice(&100u16.to_be_bytes());
    assert_eq!(parse_ip(p.as_slice(), 0), Err(ParseError::BadTotalLength));
    // Payload length 0 without a jumbogram: the packet is its header.
    p[4..6].copy_from_slice(&0u16.to_be_bytes());
    assert_eq!(
        parse_ip(p.as_slice(), 0).expect("parses").flags,
        PKT_L4_UNPARSED
    );
}

#[test]
fn icmp_queries_carry_their_identifier() {
    for icmp_type in [0u8, 8, 13, 14, 15, 16, 17, 18] {
        let p = ipv4(IPPROTO_ICMP, &[], 0, &[icmp_type, 0, 0, 0, 0, 42, 0, 1]);
        let info = parse_ip(p.as_slice(), 0).expect("parses");
        assert_eq!(info.icmp_id, 42, "type {icmp_type}");
        assert_ne!(info.flags & PKT_HAS_ICMP_ID, 0, "type {icmp_type}");
    }
    let p = ipv4(IPPROTO_ICMP, &[], 0, &[9, 0, 0, 0, 0, 42, 0, 1]);
    assert_eq!(
        parse_ip(p.as_slice(), 0).expect("parses").flags,
        PKT_HAS_ICMP
    );
    assert_eq!(icmp_query_type(IPPROTO_ICMP, 14), Some(13));
    assert_eq!(icmp_query_type(IPPROTO_ICMPV6, 129), Some(128));
    assert_eq!(icmp_query_type(IPPROTO_ICMPV6, 135), None);
}
