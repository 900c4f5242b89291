//! The user side's view of packet fields: addresses as `std::net::IpAddr`, protocols by name.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{
    PacketInfo, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP,
    IPPROTO_UDPLITE, IP_VERSION_4, IP_VERSION_6,
};

/// The one table of protocol names: number, fwlog's word (`proto` in its lines), and IANA's
/// keyword (Elastic Common Schema's `network.transport`, which spells ICMPv6 `ipv6-icmp`).
pub const PROTOCOL_NAMES: [(u8, &str, &str); 6] = [
    (IPPROTO_TCP, "tcp", "tcp"),
    (IPPROTO_UDP, "udp", "udp"),
    (IPPROTO_ICMP, "icmp", "icmp"),
    (IPPROTO_ICMPV6, "icmpv6", "ipv6-icmp"),
    (IPPROTO_SCTP, "sctp", "sctp"),
    (IPPROTO_UDPLITE, "udplite", "udplite"),
];

/// fwlog's word for protocol `proto` (`tcp`, `icmpv6`, …), for the protocols it knows.
pub fn protocol_name(proto: u8) -> Option<&'static str> {
    PROTOCOL_NAMES
        .iter()
        .find(|(number, _, _)| *number == proto)
        .map(|(_, name, _)| *name)
}

/// IANA's lower-case keyword for protocol `proto` (`ipv6-icmp` for ICMPv6).
pub fn protocol_keyword(proto: u8) -> Option<&'static str> {
    PROTOCOL_NAMES
        .iter()
        .find(|(number, _, _)| *number == proto)
        .map(|(_, _, keyword)| *keyword)
}

/// The number of the protocol fwlog calls `name`, compared as `same` says (exactly, or
/// ignoring case).
pub fn protocol_number(name: &str, same: impl Fn(&str, &str) -> bool) -> Option<u8> {
    PROTOCOL_NAMES
        .iter()
        .find(|(_, known, _)| same(known, name))
        .map(|(number, _, _)| *number)
}

/// An address as the kernel side stores it (IPv4 in the first 4 bytes), or `None` for an IP
/// version that is neither 4 nor 6 (a header that could not be read).
pub fn ip_addr(ip_version: u8, bytes: &[u8; 16]) -> Option<IpAddr> {
    match ip_version {
        IP_VERSION_4 => Some(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]).into()),
        IP_VERSION_6 => Some(Ipv6Addr::from(*bytes).into()),
        _ => None,
    }
}

impl PacketInfo {
    /// Source and destination address, or `None` when the IP header could not be read.
    pub fn addresses(&self) -> Option<(IpAddr, IpAddr)> {
        Some((
            ip_addr(self.ip_version, &self.src_addr)?,
            ip_addr(self.ip_version, &self.dst_addr)?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_by_ip_version() {
        let mut packet = PacketInfo {
            ip_version: IP_VERSION_4,
            ..PacketInfo::default()
        };
        packet.src_addr[..4].copy_from_slice(&[192, 0, 2, 1]);
        packet.dst_addr[15] = 1;
        assert_eq!(
            packet.addresses(),
            Some(([192, 0, 2, 1].into(), [0, 0, 0, 0].into()))
        );
        packet.ip_version = IP_VERSION_6;
        let (_, dest) = packet.addresses().expect("IPv6");
        assert_eq!(dest, IpAddr::from(Ipv6Addr::LOCALHOST));
        packet.ip_version = 0;
        assert_eq!(packet.addresses(), None);
    }

    #[test]
    fn every_protocol_name_reads_back() {
        for (number, name, keyword) in PROTOCOL_NAMES {
            assert_eq!(protocol_name(number), Some(name));
            assert_eq!(protocol_keyword(number), Some(keyword));
            assert_eq!(protocol_number(name, |a, b| a == b), Some(number));
        }
        assert_eq!(protocol_name(47), None);
        assert_eq!(
            protocol_number("TCP", str::eq_ignore_ascii_case),
            Some(IPPROTO_TCP)
        );
    }
}
