//! Community ID v1 (the flow hash Zeek and Suricata emit), so fwlog's lines join with theirs.
//!
//! Written here over the `sha1` and `base64` crates rather than called from the `community-id`
//! crate: that one builds each ID from three allocations (and looks ICMP types up in a
//! SipHash map), once per event on the collector's hot path. The tests check this against
//! it.

use std::net::IpAddr;

use base64::{prelude::BASE64_STANDARD, Engine as _};
use fwlog_common::packet::{IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP};
use sha1::{Digest as _, Sha1};

/// ICMP types that answer each other (the spec's port equivalents): a pair hashes as one flow.
const ICMP_PAIRS: [(u16, u16); 5] = [(8, 0), (13, 14), (15, 16), (10, 9), (17, 18)];
const ICMPV6_PAIRS: [(u16, u16); 6] = [
    (128, 129),
    (130, 131),
    (133, 134),
    (135, 136),
    (139, 140),
    (144, 145),
];

/// Ports for TCP/UDP/SCTP, type and code for ICMP, nothing otherwise (as the spec says).
pub fn community_id(
    src: IpAddr,
    dest: IpAddr,
    proto: u8,
    ports_or_icmp: Option<(u16, u16)>,
) -> Option<String> {
    let (ports, one_way) = match (proto, ports_or_icmp) {
        (IPPROTO_TCP | IPPROTO_UDP | IPPROTO_SCTP, Some(ports)) => (Some(ports), false),
        (IPPROTO_TCP | IPPROTO_UDP | IPPROTO_SCTP, None) => return None,
        (IPPROTO_ICMP, icmp) => icmp_ports(&ICMP_PAIRS, icmp.unwrap_or_default()),
        (IPPROTO_ICMPV6, _) if src.is_ipv4() => return None,
        (IPPROTO_ICMPV6, icmp) => icmp_ports(&ICMPV6_PAIRS, icmp.unwrap_or_default()),
        _ => (None, false),
    };
    let mut message = [0u8; 2 + 16 + 16 + 2 + 4];
    let (v4, v6);
    let (src, dest): (&[u8], &[u8]) = match (src, dest) {
        (IpAddr::V4(src), IpAddr::V4(dest)) => {
            v4 = (src.octets(), dest.octets());
            (&v4.0, &v4.1)
        }
        (IpAddr::V6(src), IpAddr::V6(dest)) => {
            v6 = (src.octets(), dest.octets());
            (&v6.0, &v6.1)
        }
        _ => return None,
    };
    let len = write_message(&mut message, src, dest, proto, ports, one_way);
    let hash = Sha1::digest(&message[..len]);
    let mut id = String::with_capacity(30);
    id.push_str("1:");
    BASE64_STANDARD.encode_string(hash, &mut id);
    Some(id)
}

/// An ICMP type and code as the spec's ports: (type, the answering type) for a type with one,
/// else (type, code) and one-way (never reordered).
fn icmp_ports(pairs: &[(u16, u16)], (icmp_type, code): (u16, u16)) -> (Option<(u16, u16)>, bool) {
    let answer = pairs.iter().find_map(|&(a, b)| {
        if a == icmp_type {
            Some(b)
        } else if b == icmp_type {
            Some(a)
        } else {
            None
        }
    });
    match answer {
        Some(answer) => (Some((icmp_type, answer)), false),
        None => (Some((icmp_type, code)), true),
    }
}

/// The hashed message (seed 0, the smaller endpoint first unless one-way, protocol, a zero
/// byte, the ports if any, all in network order) into `out`; returns its length.
fn write_message(
    out: &mut [u8; 40],
    src: &[u8],
    dest: &[u8],
    proto: u8,
    ports: Option<(u16, u16)>,
    one_way: bool,
) -> usize {
    let in_order = one_way
        || src < dest
        || (src == dest && ports.is_some_and(|(src_port, dest_port)| src_port < dest_port));
    let (first, second, ports) = if in_order {
        (src, dest, ports)
    } else {
        (dest, src, ports.map(|(a, b)| (b, a)))
    };
    let mut len = 2;
    for part in [first, second, &[proto, 0][..]] {
        out[len..len + part.len()].copy_from_slice(part);
        len += part.len();
    }
    if let Some((first_port, second_port)) = ports {
        out[len..len + 2].copy_from_slice(&first_port.to_be_bytes());
        out[len + 2..len + 4].copy_from_slice(&second_port.to_be_bytes());
        len += 4;
    }
    len
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The published test vectors (community-id-spec; also in Elasticsearch's processor tests).
    #[test]
    fn spec_vectors() {
        let ip = |s: &str| s.parse::<IpAddr>().expect("address");
        let cases = [
            (
                "66.35.250.204",
                "128.232.110.120",
                6,
                (80, 34855),
                "1:LQU9qZlK+B5F3KDmev6m5PMibrg=",
            ),
            (
                "128.232.110.120",
                "66.35.250.204",
                6,
                (34855, 80),
                "1:LQU9qZlK+B5F3KDmev6m5PMibrg=",
            ),
            (
                "8.8.8.8",
                "192.168.1.52",
                17,
                (53, 54585),
                "1:d/FP5EW3wiY1vCndhwleRRKHowQ=",
            ),
            (
                "192.168.170.8",
                "192.168.170.56",
                132,
                (7, 7),
                "1:MP2EtRCAUIZvTw6MxJHLV7N7JDs=",
            ),
            (
                "192.168.0.89",
                "192.168.0.1",
                1,
                (8, 0),
                "1:X0snYXpgwiv9TZtqg64sgzUn6Dk=",
            ),
            (
                "fe80::260:97ff:fe07:69ea",
                "ff02::1",
                58,
                (134, 0),
                "1:pkvHqCL88/tg1k4cPigmZXUtL00=",
            ),
        ];
        for (src, dest, proto, ports, expected) in cases {
            assert_eq!(
                community_id(ip(src), ip(dest), proto, Some(ports)).as_deref(),
                Some(expected),
                "{src} -> {dest} proto {proto}"
            );
        }
    }

    #[test]
    fn tcp_without_ports_has_none() {
        let a: IpAddr = "10.0.0.1".parse().expect("address");
        assert_eq!(community_id(a, a, 6, None), None);
    }

    /// The `community-id` crate's answer, as fwlog called it before.
    fn reference(
        src: IpAddr,
        dest: IpAddr,
        proto: u8,
        ports_or_icmp: Option<(u16, u16)>,
    ) -> Option<String> {
        let (src_port, dest_port) = match (proto, ports_or_icmp) {
            (
                IPPROTO_TCP | IPPROTO_UDP | IPPROTO_SCTP | IPPROTO_ICMP | IPPROTO_ICMPV6,
                Some(ports),
            ) => (Some(ports.0), Some(ports.1)),
            (IPPROTO_TCP | IPPROTO_UDP | IPPROTO_SCTP, None) => return None,
            _ => (None, None),
        };
        ::community_id::calculate_community_id(0, src, dest, src_port, dest_port, proto, false).ok()
    }

    #[test]
    fn the_same_as_the_community_id_crate() {
        // xorshift: many tuples, the same each run.
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for n in 0..20_000u32 {
            let r = next();
            // Few distinct addresses and ports, so equal ones (and the tie-break) come up.
            let v4 = |x: u64| IpAddr::from([10, 0, 0, (x % 4) as u8]);
            let v6 = |x: u64| IpAddr::from([0xfd00, 0, 0, 0, 0, 0, 0, (x % 4) as u16]);
            let (src, dest) = match n % 3 {
                0 => (v4(r), v4(r >> 8)),
                1 => (v6(r), v6(r >> 8)),
                _ => (v4(r), v6(r >> 8)),
            };
            let proto = [1, 6, 17, 58, 132, 47, 0, 255][(r >> 16) as usize % 8];
            let ports = match (r >> 24) % 5 {
                0 => None,
                1 => Some(((r >> 32) as u16 % 3, (r >> 48) as u16 % 3)),
                // ICMP types and codes, every type that has an answering one among them.
                _ => Some(((r >> 32) as u16 % 256, (r >> 48) as u16 % 4)),
            };
            assert_eq!(
                community_id(src, dest, proto, ports),
                reference(src, dest, proto, ports),
                "{src} -> {dest} proto {proto} ports {ports:?}"
            );
        }
    }
}
