//! Community ID v1 (the flow hash Zeek and Suricata emit), so fwlog's lines join with theirs.

use std::net::IpAddr;

use fwlog_common::packet::{IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP};

/// Ports for TCP/UDP/SCTP, type and code for ICMP, nothing otherwise (as the spec says).
pub fn community_id(
    src: IpAddr,
    dest: IpAddr,
    proto: u8,
    ports_or_icmp: Option<(u16, u16)>,
) -> Option<String> {
    let (src_port, dest_port) = match (proto, ports_or_icmp) {
        (IPPROTO_TCP | IPPROTO_UDP | IPPROTO_SCTP | IPPROTO_ICMP | IPPROTO_ICMPV6, Some(ports)) => {
            (Some(ports.0), Some(ports.1))
        }
        (IPPROTO_TCP | IPPROTO_UDP | IPPROTO_SCTP, None) => return None,
        _ => (None, None),
    };
    community_id::calculate_community_id(0, src, dest, src_port, dest_port, proto, false).ok()
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
}
