//! The connection a verdict or flow record describes, client (`src`) to server (`dest`), the
//! same way the JSON writer states it, for the other line formats.

use std::net::IpAddr;

use fwlog_common::{
    flow::SIDE_A,
    packet::{
        IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP, IPPROTO_UDPLITE,
        IP_VERSION_4, IP_VERSION_6, PKT_FRAGMENT, PKT_HAS_ICMP, PKT_HAS_PORTS, PKT_L4_UNPARSED,
    },
};

use super::{FlowRecord, VerdictRecord};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Connection {
    pub ip_version: u8,
    pub proto: u8,
    pub src: IpAddr,
    pub dest: IpAddr,
    /// Source and destination port, for protocols that have ports.
    pub ports: Option<(u16, u16)>,
    /// ICMP type and code.
    pub icmp: Option<(u8, u8)>,
    /// A non-first fragment: no transport header, so no ports.
    pub fragment: bool,
    /// The transport header could not be read.
    pub malformed: bool,
}

/// Packets and IP bytes each way of a flow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowCounts {
    pub pkts_toserver: u64,
    pub bytes_toserver: u64,
    pub pkts_toclient: u64,
    pub bytes_toclient: u64,
}

impl Connection {
    /// `None` when the IP header could not be read (the JSON line says `"malformed":true`).
    pub fn of_verdict(record: &VerdictRecord) -> Option<Self> {
        let packet = &record.event.packet;
        let (src, dest) = packet.addresses()?;
        Some(Connection {
            ip_version: packet.ip_version,
            proto: packet.proto,
            src,
            dest,
            ports: (packet.flags & PKT_HAS_PORTS != 0)
                .then_some((packet.src_port, packet.dst_port)),
            icmp: (packet.flags & PKT_HAS_ICMP != 0)
                .then_some((packet.icmp_type, packet.icmp_code)),
            fragment: packet.flags & PKT_FRAGMENT != 0,
            malformed: packet.flags & PKT_L4_UNPARSED != 0,
        })
    }

    /// The flow from the side that opened it, and its counts that way round.
    pub fn of_flow(record: &FlowRecord) -> (Option<Self>, FlowCounts) {
        let (key, stats) = (record.key, record.stats);
        let (client, server) = if stats.opener == SIDE_A {
            (0, 1)
        } else {
            (1, 0)
        };
        let addrs = [&key.addr_a, &key.addr_b];
        let ports = [key.port_a, key.port_b];
        let address = |bytes: &[u8; 16]| match key.ip_version {
            IP_VERSION_4 => Some(IpAddr::from([bytes[0], bytes[1], bytes[2], bytes[3]])),
            IP_VERSION_6 => Some(IpAddr::from(*bytes)),
            _ => None,
        };
        let connection = address(addrs[client])
            .zip(address(addrs[server]))
            .map(|(src, dest)| Connection {
                ip_version: key.ip_version,
                proto: key.proto,
                src,
                dest,
                ports: matches!(
                    key.proto,
                    IPPROTO_TCP | IPPROTO_UDP | IPPROTO_SCTP | IPPROTO_UDPLITE
                )
                .then_some((ports[client], ports[server])),
                icmp: matches!(key.proto, IPPROTO_ICMP | IPPROTO_ICMPV6)
                    .then_some((stats.icmp_type, stats.icmp_code)),
                fragment: false,
                malformed: false,
            });
        let counts = FlowCounts {
            pkts_toserver: stats.pkts[client],
            bytes_toserver: stats.bytes[client],
            pkts_toclient: stats.pkts[server],
            bytes_toclient: stats.bytes[server],
        };
        (connection, counts)
    }
}
