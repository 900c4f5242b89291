//! The user side's view of a flow key: its two ends as `std::net::IpAddr`.

use std::net::IpAddr;

use super::FlowKey;
use crate::packet::ip_addr;

impl FlowKey {
    /// Side A's and side B's address, or `None` for an IP version neither 4 nor 6.
    pub fn addresses(&self) -> Option<(IpAddr, IpAddr)> {
        Some((
            ip_addr(self.ip_version, &self.addr_a)?,
            ip_addr(self.ip_version, &self.addr_b)?,
        ))
    }
}
