//! Telling inbound from forwarded packets: both arrive with an input interface, but only
//! inbound ones are addressed to this machine.

use std::{
    collections::HashSet,
    net::IpAddr,
    time::{Duration, Instant},
};

use crate::values::Direction;

/// How often an unknown destination may trigger a re-read of the local addresses.
const REFRESH_AT_MOST_EVERY: Duration = Duration::from_secs(1);

pub struct LocalAddresses {
    /// foldhash: looked up once per event; the set holds only this machine's addresses.
    addresses: HashSet<IpAddr, foldhash::fast::RandomState>,
    read_at: Option<Instant>,
}

impl Default for LocalAddresses {
    fn default() -> Self {
        let mut local = LocalAddresses {
            addresses: HashSet::default(),
            read_at: None,
        };
        local.refresh();
        local
    }
}

impl LocalAddresses {
    /// Builds the set from a fixed list (tests).
    #[cfg(test)]
    pub fn from_addresses(addresses: impl IntoIterator<Item = IpAddr>) -> Self {
        LocalAddresses {
            addresses: addresses.into_iter().collect(),
            read_at: Some(Instant::now()),
        }
    }

    /// The direction of a packet seen with input interface `ifindex` (0 in OUTPUT).
    pub fn direction(&mut self, ifindex: u32, dest: Option<IpAddr>) -> Direction {
        if ifindex == 0 {
            return Direction::Outbound;
        }
        let Some(dest) = dest else {
            return Direction::Inbound;
        };
        if self.is_local(dest) {
            return Direction::Inbound;
        }
        let stale = self
            .read_at
            .is_none_or(|at| at.elapsed() >= REFRESH_AT_MOST_EVERY);
        if stale {
            self.refresh();
            if self.is_local(dest) {
                return Direction::Inbound;
            }
        }
        Direction::Forward
    }

    fn is_local(&self, dest: IpAddr) -> bool {
        dest.is_multicast()
            || matches!(dest, IpAddr::V4(v4) if v4.is_broadcast())
            || self.addresses.contains(&dest)
    }

    fn refresh(&mut self) {
        self.read_at = Some(Instant::now());
        let Ok(interfaces) = nix::ifaddrs::getifaddrs() else {
            return;
        };
        self.addresses.clear();
        for interface in interfaces {
            for address in [interface.address, interface.broadcast]
                .into_iter()
                .flatten()
            {
                if let Some(v4) = address.as_sockaddr_in() {
                    self.addresses.insert(IpAddr::V4(v4.ip()));
                } else if let Some(v6) = address.as_sockaddr_in6() {
                    self.addresses.insert(IpAddr::V6(v6.ip()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directions() {
        let mut local = LocalAddresses::from_addresses(["10.200.0.1".parse().expect("ip")]);
        let ours = Some("10.200.0.1".parse().expect("ip"));
        let other = Some("10.9.9.9".parse().expect("ip"));
        assert_eq!(local.direction(0, other), Direction::Outbound);
        assert_eq!(local.direction(3, ours), Direction::Inbound);
        assert_eq!(
            local.direction(3, Some("224.0.0.251".parse().expect("ip"))),
            Direction::Inbound
        );
        assert_eq!(local.direction(3, other), Direction::Forward);
    }
}
