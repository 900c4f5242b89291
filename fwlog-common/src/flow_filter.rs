//! The flow filter: a count of tracked flows per hash slot of their key, so that the tc
//! programs can skip the flow-table lookup for a packet whose flow is certainly not tracked.
//!
//! A flow-table lookup that finds nothing costs a cache miss on the table's bucket array
//! (about 80 ns per new UDP flow in `cargo xtask bench`); the filter is 64 KiB, small enough to
//! stay in the CPU's caches. Both sides keep it:
//! - the kernel adds one before inserting a flow and takes one away after removing one (FIN,
//!   RST, a refused attempt);
//! - the collector takes one away for each flow it removes (idle, crowded) and recounts every
//!   slot from the table after the kernel's LRU evicted flows behind everyone's back.
//!
//! Slots count from 0 to [`FILTER_SATURATED`], where they stay until the next recount. The
//! kernel's updates are not atomic, so two racing inserts may count one. A slot that says 0
//! for a tracked flow is therefore possible, and harmless by design: only packets that open a
//! flow when none is found consult the filter, and their insert then finds the flow, counts
//! the packet to it and the slot to the flow again.

use crate::flow::FlowKey;

/// Slots in the filter, a power of two.
pub const FILTER_SLOTS: usize = 1 << 16;
/// A slot that reached this stays there (until a recount): too many flows to count in a byte.
pub const FILTER_SATURATED: u8 = u8::MAX;

/// The filter as the kernel stores it: one array element of [`FILTER_SLOTS`] byte counters.
pub type FlowFilter = [u8; FILTER_SLOTS];

/// The slot of `key`: a multiplicative hash of its eleven 32-bit words, top 16 bits.
#[inline(always)]
pub fn filter_slot(key: &FlowKey) -> usize {
    let mut hash: u32 = 0;
    let mut mix = |bytes: [u8; 4]| {
        hash = (hash.rotate_left(5) ^ u32::from_ne_bytes(bytes)).wrapping_mul(0x9e37_79b9);
    };
    let mut i = 0;
    while i < 16 {
        mix([
            key.addr_a[i],
            key.addr_a[i + 1],
            key.addr_a[i + 2],
            key.addr_a[i + 3],
        ]);
        mix([
            key.addr_b[i],
            key.addr_b[i + 1],
            key.addr_b[i + 2],
            key.addr_b[i + 3],
        ]);
        i += 4;
    }
    let ports = (key.port_a as u32) << 16 | key.port_b as u32;
    mix(ports.to_ne_bytes());
    mix(key.ifindex.to_ne_bytes());
    mix([key.proto, key.ip_version, key._pad[0], key._pad[1]]);
    (hash >> (32 - FILTER_SLOTS.trailing_zeros())) as usize
}

/// A slot after a flow of it went into the table.
#[inline(always)]
pub const fn counted_in(slot: u8) -> u8 {
    if slot < FILTER_SATURATED {
        slot + 1
    } else {
        slot
    }
}

/// A slot after a flow of it left the table. A saturated slot keeps saying "maybe", and an
/// empty one (a count lost to a race) stays empty.
#[inline(always)]
pub const fn counted_out(slot: u8) -> u8 {
    if slot > 0 && slot < FILTER_SATURATED {
        slot - 1
    } else {
        slot
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use std::collections::HashSet;

    use super::*;

    fn key(last_octet: u8, port: u16) -> FlowKey {
        let mut key = FlowKey {
            port_a: port,
            port_b: 53,
            ifindex: 3,
            proto: 17,
            ip_version: 4,
            ..FlowKey::default()
        };
        key.addr_a[..4].copy_from_slice(&[10, 0, 0, last_octet]);
        key.addr_b[..4].copy_from_slice(&[10, 0, 1, 1]);
        key
    }

    #[test]
    fn a_key_always_falls_in_the_same_slot_within_the_filter() {
        let a = key(7, 40000);
        assert_eq!(filter_slot(&a), filter_slot(&a));
        assert!(filter_slot(&a) < FILTER_SLOTS);
        assert_ne!(filter_slot(&a), filter_slot(&a.on_interface(4)));
    }

    #[test]
    fn flows_that_differ_in_one_port_or_address_spread_over_the_slots() {
        // A flood of new flows differs in the source port or address only: those must not
        // crowd into a few slots.
        let by_port: HashSet<usize> = (0..4096u16).map(|p| filter_slot(&key(7, p))).collect();
        let by_address: HashSet<usize> = (0..=255u8).map(|a| filter_slot(&key(a, 1))).collect();
        assert!(
            by_port.len() > 3900,
            "{} slots for 4096 ports",
            by_port.len()
        );
        assert!(
            by_address.len() > 240,
            "{} slots for 256 addresses",
            by_address.len()
        );
    }

    #[test]
    fn counts_go_up_and_down_and_stick_at_saturation() {
        assert_eq!(counted_in(0), 1);
        assert_eq!(counted_out(counted_in(0)), 0);
        assert_eq!(counted_in(FILTER_SATURATED - 1), FILTER_SATURATED);
        assert_eq!(counted_in(FILTER_SATURATED), FILTER_SATURATED);
        assert_eq!(counted_out(FILTER_SATURATED), FILTER_SATURATED);
        assert_eq!(counted_out(0), 0);
    }
}
