//! The flow table shared by the tc and netfilter programs: a direction-normalised key, the
//! per-flow counters, and the record sent when a flow ends.

use core::mem::{offset_of, size_of};

use crate::{
    packet::{PacketInfo, IPPROTO_ICMP, IPPROTO_ICMPV6, PKT_HAS_ICMP_ID, PKT_HAS_PORTS},
    process::ProcessInfo,
};

/// First byte of a [`FlowEndEvent`] in the ring buffer.
pub const EVENT_KIND_FLOW_END: u8 = 2;

/// Side A of a key is the smaller (address, port) of the two ends; B the other.
pub const SIDE_A: u8 = 0;
pub const SIDE_B: u8 = 1;

/// Where the tc program saw a packet.
pub const SEEN_INGRESS: u8 = 1;
pub const SEEN_EGRESS: u8 = 2;

/// Why a flow record was written.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndReason {
    /// Both sides sent FIN.
    Fin = 1,
    /// A side sent RST.
    Rst = 2,
    /// No packet for `--idle-timeout` (UDP, ICMP, half-open TCP).
    Idle = 3,
    /// The flow table was full and the kernel dropped the entry.
    Evicted = 4,
    /// fwlog stopped while the flow was open.
    Exit = 5,
}

impl EndReason {
    pub const fn from_u8(value: u8) -> Option<Self> {
        match value {
            1 => Some(EndReason::Fin),
            2 => Some(EndReason::Rst),
            3 => Some(EndReason::Idle),
            4 => Some(EndReason::Evicted),
            5 => Some(EndReason::Exit),
            _ => None,
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            EndReason::Fin => "fin",
            EndReason::Rst => "rst",
            EndReason::Idle => "idle",
            EndReason::Evicted => "evicted",
            EndReason::Exit => "exit",
        }
    }
}

/// A flow, whichever way its packets go: the two ends in a fixed order, plus the interface.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub addr_a: [u8; 16],
    pub addr_b: [u8; 16],
    /// Ports, or the echo identifier on both sides for ICMP echo.
    pub port_a: u16,
    pub port_b: u16,
    /// The tc program's interface; 0 for verdicts seen in OUTPUT (see `PENDING_VERDICTS`).
    pub ifindex: u32,
    pub proto: u8,
    pub ip_version: u8,
    pub _pad: [u8; 2],
}

const _: () = assert!(size_of::<FlowKey>() == 44);

impl FlowKey {
    /// The key of `packet`'s flow on `ifindex`, and which side of the key sent it.
    pub fn of_packet(packet: &PacketInfo, ifindex: u32) -> (FlowKey, u8) {
        let mut key = FlowKey::default();
        let side = key.set_from(packet, ifindex);
        (key, side)
    }

    /// Makes `self` the key of `packet`'s flow on `ifindex`; returns which side sent it.
    /// (In place: the eBPF programs keep keys in map memory, not on their small stack.)
    #[inline(always)]
    pub fn set_from(&mut self, packet: &PacketInfo, ifindex: u32) -> u8 {
        let (src_port, dst_port) = if packet.flags & PKT_HAS_PORTS != 0 {
            (packet.src_port, packet.dst_port)
        } else if packet.flags & PKT_HAS_ICMP_ID != 0
            && matches!(packet.proto, IPPROTO_ICMP | IPPROTO_ICMPV6)
        {
            (packet.icmp_id, packet.icmp_id)
        } else {
            (0, 0)
        };
        let src_first = match compare(&packet.src_addr, &packet.dst_addr) {
            core::cmp::Ordering::Less => true,
            core::cmp::Ordering::Greater => false,
            core::cmp::Ordering::Equal => src_port <= dst_port,
        };
        self.ifindex = ifindex;
        self.proto = packet.proto;
        self.ip_version = packet.ip_version;
        self._pad = [0; 2];
        if src_first {
            self.addr_a = packet.src_addr;
            self.addr_b = packet.dst_addr;
            self.port_a = src_port;
            self.port_b = dst_port;
            SIDE_A
        } else {
            self.addr_a = packet.dst_addr;
            self.addr_b = packet.src_addr;
            self.port_a = dst_port;
            self.port_b = src_port;
            SIDE_B
        }
    }

    /// The same flow on another interface.
    pub const fn on_interface(mut self, ifindex: u32) -> Self {
        self.ifindex = ifindex;
        self
    }
}

/// Byte-wise comparison without slices' panicking paths (the verifier rejects those).
#[inline(always)]
fn compare(a: &[u8; 16], b: &[u8; 16]) -> core::cmp::Ordering {
    let mut i = 0;
    while i < 16 {
        if a[i] != b[i] {
            return if a[i] < b[i] {
                core::cmp::Ordering::Less
            } else {
                core::cmp::Ordering::Greater
            };
        }
        i += 1;
    }
    core::cmp::Ordering::Equal
}

/// `FlowStats::fin`: side A sent FIN.
pub const FIN_A: u64 = 1;
/// Side B sent FIN.
pub const FIN_B: u64 = 2;
/// The flow's end was reported (by the kernel): set once, so it is reported once.
pub const FLOW_REPORTED: u64 = 4;

/// What the flow table keeps per flow. Counters are updated with atomic adds: the ingress and
/// egress programs of one flow can run on two CPUs at once.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowStats {
    /// CLOCK_BOOTTIME of the first and last packet.
    pub first_ns: u64,
    pub last_ns: u64,
    /// Packets and IP bytes sent by side A, then by side B.
    pub pkts: [u64; 2],
    pub bytes: [u64; 2],
    /// Every TCP flag seen, in either direction. (64 bits: eBPF's atomic OR on the default
    /// CPU model has no 32-bit form.)
    pub tcp_flags: u64,
    /// `FIN_A`, `FIN_B`, `FLOW_REPORTED`.
    pub fin: u64,
    /// Which side sent the first packet: the client.
    pub opener: u8,
    /// `SEEN_INGRESS` or `SEEN_EGRESS`: where the first packet was seen.
    pub first_seen: u8,
    /// The netfilter verdict ([`crate::event::Action`]) when a `LOG_AND_*` chain saw the flow;
    /// 0 when none did.
    pub action: u8,
    /// Its conntrack state ([`crate::event::CtState`]), 0 when none.
    pub ct_state: u8,
    /// The last ICMP error attached to the flow (type 0 = none: no error has type 0).
    pub icmp_error_type: u8,
    pub icmp_error_code: u8,
    /// ICMP type and code of the first packet, for ICMP flows.
    pub icmp_type: u8,
    pub icmp_code: u8,
    /// The local process that opened the flow, when known (`process.pid != 0`).
    pub process: ProcessInfo,
}

const _: () = assert!(size_of::<FlowStats>() == 112);
const _: () = assert!(offset_of!(FlowStats, pkts) == 16);

/// Ties later fragments to the flow of the first one.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FragmentKey {
    pub src_addr: [u8; 16],
    pub dst_addr: [u8; 16],
    pub frag_id: u32,
    pub ifindex: u32,
    pub proto: u8,
    pub ip_version: u8,
    pub _pad: [u8; 2],
}

const _: () = assert!(size_of::<FragmentKey>() == 44);

impl FragmentKey {
    pub const fn of_packet(packet: &PacketInfo, ifindex: u32) -> Self {
        FragmentKey {
            src_addr: packet.src_addr,
            dst_addr: packet.dst_addr,
            frag_id: packet.frag_id,
            ifindex,
            proto: packet.proto,
            ip_version: packet.ip_version,
            _pad: [0; 2],
        }
    }
}

/// The flow a fragmented datagram belongs to, and the side that sent it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FragmentFlow {
    pub key: FlowKey,
    pub side: u8,
    pub _pad: [u8; 3],
}

/// Per-CPU working memory of the tc programs (their stack is too small for these).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowScratch {
    pub packet: PacketInfo,
    pub quoted: PacketInfo,
    pub key: FlowKey,
    pub pending: FlowKey,
    pub fragment: FragmentKey,
    pub _pad: [u8; 4],
    /// Socket cookie of the packet that starts an outbound flow (0: none).
    pub socket_cookie: u64,
    /// Where the transport header starts, passed through memory so that the verifier forgets
    /// its exact value (see `track` in fwlog-ebpf's flow.rs).
    pub l4_offset: u64,
    pub stats: FlowStats,
}

/// A flow proposed by tc ingress and not yet in the table (one per CPU, `NEW_FLOW`).
///
/// Most inbound connection attempts on an exposed interface are refused, and a refused attempt
/// is not kept as a flow. So tc ingress does not insert a new flow at once: it leaves it here,
/// and the verdict program that runs next on this CPU (netfilter INPUT runs in the same softirq
/// as tc ingress) inserts it when the packet is accepted and drops it when it is refused. A
/// proposal that no verdict program took (the packet was accepted or dropped by a rule of the
/// user's) is inserted by the next tc run on this CPU, as before.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NewFlow {
    pub key: FlowKey,
    /// 1 while the proposal waits; 0 once it was inserted or dropped.
    pub waiting: u8,
    /// The side that sent the first packet.
    pub side: u8,
    pub _pad: [u8; 2],
    pub stats: FlowStats,
}

const _: () = assert!(size_of::<NewFlow>() == 160);
const _: () = assert!(offset_of!(NewFlow, stats) == 48);

/// A verdict seen in OUTPUT, before the tc egress program creates the flow.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PendingVerdict {
    pub action: u8,
    pub ct_state: u8,
    pub _pad: [u8; 2],
}

/// The ring-buffer record of a flow that ended in the kernel (FIN, RST).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowEndEvent {
    /// [`EVENT_KIND_FLOW_END`].
    pub kind: u8,
    /// [`EndReason`] as `u8`.
    pub reason: u8,
    pub _pad: [u8; 6],
    pub key: FlowKey,
    pub _pad1: [u8; 4],
    pub stats: FlowStats,
}

const _: () = assert!(size_of::<FlowEndEvent>() == 168);
const _: () = assert!(offset_of!(FlowEndEvent, stats) == 56);

#[cfg(feature = "user")]
// SAFETY: plain integers and byte arrays with explicit padding (sizes checked above).
unsafe impl aya::Pod for FlowKey {}
#[cfg(feature = "user")]
// SAFETY: as above.
unsafe impl aya::Pod for FlowStats {}
#[cfg(feature = "user")]
// SAFETY: as above.
unsafe impl aya::Pod for FlowEndEvent {}
#[cfg(feature = "user")]
// SAFETY: as above.
unsafe impl aya::Pod for NewFlow {}

impl FlowEndEvent {
    /// Reads a flow-end record from a ring-buffer item, if it is one and is whole.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if bytes.len() < size_of::<Self>() || bytes[0] != EVENT_KIND_FLOW_END {
            return None;
        }
        // SAFETY: length checked; every bit pattern is valid for these integer fields.
        Some(unsafe { core::ptr::read_unaligned(bytes.as_ptr().cast::<Self>()) })
    }
}

#[cfg(feature = "user")]
mod user;

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use crate::packet::{IPPROTO_TCP, PKT_HAS_TCP_FLAGS};

    fn tcp(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> PacketInfo {
        let mut p = PacketInfo {
            ip_version: 4,
            proto: IPPROTO_TCP,
            src_port: sport,
            dst_port: dport,
            flags: PKT_HAS_PORTS | PKT_HAS_TCP_FLAGS,
            ..PacketInfo::default()
        };
        p.src_addr[..4].copy_from_slice(&src);
        p.dst_addr[..4].copy_from_slice(&dst);
        p
    }

    #[test]
    fn both_directions_share_a_key() {
        let out = tcp([10, 0, 0, 2], 40000, [10, 0, 0, 1], 22);
        let back = tcp([10, 0, 0, 1], 22, [10, 0, 0, 2], 40000);
        let (k1, s1) = FlowKey::of_packet(&out, 3);
        let (k2, s2) = FlowKey::of_packet(&back, 3);
        assert_eq!(k1, k2);
        assert_ne!(s1, s2);
        assert_eq!(
            (s1, s2),
            (SIDE_B, SIDE_A),
            "10.0.0.1 is the smaller address"
        );
        assert_eq!((k1.port_a, k1.port_b), (22, 40000));
    }

    #[test]
    fn same_address_orders_by_port() {
        let a = tcp([127, 0, 0, 1], 5000, [127, 0, 0, 1], 80);
        let (key, side) = FlowKey::of_packet(&a, 1);
        assert_eq!(side, SIDE_B);
        assert_eq!((key.port_a, key.port_b), (80, 5000));
    }

    #[test]
    fn interfaces_separate_flows() {
        let a = tcp([10, 0, 0, 2], 1, [10, 0, 0, 1], 2);
        assert_ne!(FlowKey::of_packet(&a, 1).0, FlowKey::of_packet(&a, 2).0);
        assert_eq!(
            FlowKey::of_packet(&a, 1).0.on_interface(2),
            FlowKey::of_packet(&a, 2).0
        );
    }

    #[test]
    fn echo_request_and_reply_share_a_key() {
        let mut request = PacketInfo {
            ip_version: 4,
            proto: IPPROTO_ICMP,
            icmp_type: 8,
            icmp_id: 77,
            flags: crate::packet::PKT_HAS_ICMP | PKT_HAS_ICMP_ID,
            ..PacketInfo::default()
        };
        request.src_addr[..4].copy_from_slice(&[10, 0, 0, 1]);
        request.dst_addr[..4].copy_from_slice(&[10, 0, 0, 2]);
        let mut reply = request;
        reply.icmp_type = 0;
        reply.src_addr = request.dst_addr;
        reply.dst_addr = request.src_addr;
        assert_eq!(
            FlowKey::of_packet(&request, 1).0,
            FlowKey::of_packet(&reply, 1).0
        );
        let mut other = request;
        other.icmp_id = 78;
        assert_ne!(
            FlowKey::of_packet(&request, 1).0,
            FlowKey::of_packet(&other, 1).0
        );
    }

    #[test]
    fn reasons_round_trip() {
        for reason in [
            EndReason::Fin,
            EndReason::Rst,
            EndReason::Idle,
            EndReason::Evicted,
            EndReason::Exit,
        ] {
            assert_eq!(EndReason::from_u8(reason as u8), Some(reason));
        }
        assert_eq!(EndReason::from_u8(0), None);
    }
}
