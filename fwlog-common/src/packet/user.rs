//! The user side's view of packet fields: addresses as `std::net::IpAddr`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{PacketInfo, IP_VERSION_4, IP_VERSION_6};

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
}
