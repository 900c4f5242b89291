//! The connection an event is about, oriented client (the side that sent the first packet) to
//! server, turned once from the kernel's packet or flow key into addresses, a protocol and ports.

use std::net::IpAddr;

use fwlog_common::{
    flow::{FlowKey, FlowStats, SIDE_A},
    packet::{PacketInfo, PKT_FRAGMENT, PKT_HAS_ICMP, PKT_HAS_PORTS, PKT_L4_UNPARSED},
};

use crate::values::Protocol;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Connection {
    pub protocol: Protocol,
    /// `src_ip` in the lines.
    pub client: IpAddr,
    /// `dest_ip` in the lines.
    pub server: IpAddr,
    /// Client and server port, for protocols that have ports.
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
    /// The connection a verdict's packet opens: its sender is the client. `None` when the IP
    /// header could not be read (the lines say `"malformed":true`).
    pub fn of_packet(packet: &PacketInfo) -> Option<Self> {
        let (client, server) = packet.addresses()?;
        Some(Connection {
            protocol: Protocol(packet.proto),
            client,
            server,
            ports: (packet.flags & PKT_HAS_PORTS != 0)
                .then_some((packet.src_port, packet.dst_port)),
            icmp: (packet.flags & PKT_HAS_ICMP != 0)
                .then_some((packet.icmp_type, packet.icmp_code)),
            fragment: packet.flags & PKT_FRAGMENT != 0,
            malformed: packet.flags & PKT_L4_UNPARSED != 0,
        })
    }

    /// A flow from the side that opened it, and its counts that way round. The connection is
    /// `None` for a key whose IP version is neither 4 nor 6.
    pub fn of_flow(key: &FlowKey, stats: &FlowStats) -> (Option<Self>, FlowCounts) {
        let (client, server) = if stats.opener == SIDE_A {
            (0, 1)
        } else {
            (1, 0)
        };
        let ports = [key.port_a, key.port_b];
        let protocol = Protocol(key.proto);
        let connection = key.addresses().map(|(a, b)| {
            let addresses = [a, b];
            Connection {
                protocol,
                client: addresses[client],
                server: addresses[server],
                ports: protocol
                    .has_ports()
                    .then_some((ports[client], ports[server])),
                icmp: protocol
                    .is_icmp()
                    .then_some((stats.icmp_type, stats.icmp_code)),
                fragment: false,
                malformed: false,
            }
        });
        let counts = FlowCounts {
            pkts_toserver: stats.pkts[client],
            bytes_toserver: stats.bytes[client],
            pkts_toclient: stats.pkts[server],
            bytes_toclient: stats.bytes[server],
        };
        (connection, counts)
    }

    /// 4 or 6.
    pub fn ip_version(&self) -> u8 {
        if self.client.is_ipv4() {
            4
        } else {
            6
        }
    }

    /// The server's port, for protocols that have ports.
    pub fn server_port(&self) -> Option<u16> {
        self.ports.map(|(_, port)| port)
    }

    /// What the Community ID hashes besides the addresses: ports, or ICMP type and code.
    pub fn ports_or_icmp(&self) -> Option<(u16, u16)> {
        self.ports.or(self
            .icmp
            .map(|(icmp_type, code)| (icmp_type.into(), code.into())))
    }
}
