//! The flow table shared by the tc and netfilter programs: a direction-normalised key, the
//! per-flow counters, and the record sent when a flow ends.

use core::mem::{offset_of, size_of};

use crate::{
    packet::{
        icmp_query_type, PacketInfo, IPPROTO_ICMP, IPPROTO_ICMPV6, PKT_HAS_ICMP, PKT_HAS_ICMP_ID,
        PKT_HAS_PORTS,
    },
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
    /// A side sent a RST the kernel honours (at the sequence number the receiver expects), or
    /// one after which the flow stopped.
    Rst = 2,
    /// No packet for `--idle-timeout` (UDP, ICMP, half-open TCP) or `--tcp-idle-timeout`
    /// (established TCP).
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
    /// Ports; for ICMP the query's identifier (`port_a`) and type (`port_b`), whichever side
    /// sent the packet, so a query and its answer share a key the way conntrack pairs them.
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
        let is_icmp = matches!(packet.proto, IPPROTO_ICMP | IPPROTO_ICMPV6);
        let (src_port, dst_port) = if packet.flags & PKT_HAS_PORTS != 0 {
            (packet.src_port, packet.dst_port)
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
        } else {
            self.addr_a = packet.dst_addr;
            self.addr_b = packet.src_addr;
            self.port_a = dst_port;
            self.port_b = src_port;
        }
        if is_icmp && packet.flags & PKT_HAS_ICMP != 0 {
            // One flow per query (type and identifier); other messages one per type.
            let (id, kind) = match icmp_query_type(packet.proto, packet.icmp_type) {
                Some(query) if packet.flags & PKT_HAS_ICMP_ID != 0 => (packet.icmp_id, query),
                _ => (0, packet.icmp_type),
            };
            self.port_a = id;
            self.port_b = kind as u16;
        }
        if src_first {
            SIDE_A
        } else {
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

/// `FlowStats::fin`: side A sent FIN (at the place in its stream the receiver expects).
pub const FIN_A: u64 = 1;
/// Side B sent FIN.
pub const FIN_B: u64 = 2;
/// The flow's end was reported (by the kernel): set once, so it is reported once.
pub const FLOW_REPORTED: u64 = 4;
pub use crate::tcp_seq::{SEQ_KNOWN_A, SEQ_KNOWN_B};

/// How long a TCP flow may stay quiet after a RST the kernel would not honour before the sweep
/// takes it for one that did and ends the flow (`rst`): conntrack's own wait after a reset
/// (`nf_conntrack_tcp_timeout_close`, 10 s).
pub const RST_LINGER_NS: u64 = 10_000_000_000;

/// Free entries each CPU may hold back from a common-LRU hash map: a CPU takes them from the
/// shared free list in batches of up to this many, and when fewer are left there it evicts
/// rather than wait for another CPU's (kernel/bpf/bpf_lru_list.c, `LOCAL_FREE_TARGET`).
pub const LRU_FREE_BATCH: u32 = 128;

/// Entries to create the flow table with so that it holds `flows` flows in all, whichever
/// CPUs insert them, before the kernel evicts any: `flows` plus what the CPUs may hold back.
pub const fn flow_table_entries(flows: u32, cpus: u32) -> u32 {
    flows.saturating_add(cpus.saturating_mul(LRU_FREE_BATCH))
}

/// The flows a table created by [`flow_table_entries`] with `entries` holds.
pub const fn flows_held(entries: u32, cpus: u32) -> u32 {
    entries.saturating_sub(cpus.saturating_mul(LRU_FREE_BATCH))
}

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
    /// `FIN_A`, `FIN_B`, `FLOW_REPORTED`, `SEQ_KNOWN_A`, `SEQ_KNOWN_B`.
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
    /// TCP: per side, the sequence number after the last byte of its stream seen in order
    /// (or acknowledged by this host), valid with `SEQ_KNOWN_*`. A RST from that side is one
    /// the receiver honours when it carries this number (RFC 5961 3.2, which Linux follows).
    pub next_seq: [u32; 2],
    /// CLOCK_BOOTTIME of the last RST that did not end the flow (0: none), for
    /// [`RST_LINGER_NS`].
    pub rst_ns: u64,
}

const _: () = assert!(size_of::<FlowStats>() == 128);
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
    /// The TCP packet's place in its stream (zero for other protocols).
    pub segment: crate::tcp_seq::TcpSegment,
    pub _pad0: [u8; 4],
    /// Where the IP packet ends, and its length, through memory like `l4_offset`.
    pub ip_end: u64,
    pub ip_bytes: u64,
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
/// A flow starts only from a packet the stack accepted. tc ingress runs before the stack has
/// looked at a packet at all (lengths, checksums, routing, the firewall), so it does not
/// insert a new inbound flow: it leaves it here, and the verdict program that runs next on
/// this CPU (netfilter INPUT runs in the same softirq as tc ingress) inserts it when the
/// packet is accepted and drops it when it is refused. A proposal that no verdict program took
/// (a rule of the user's decided first, the packet was forwarded, or the stack dropped it) is
/// moved to `TENTATIVE` by the next tc run on this CPU, and becomes a flow only when the other
/// side answers it (the host's stack, or the host it was forwarded to, took it).
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

const _: () = assert!(size_of::<NewFlow>() == 176);
const _: () = assert!(offset_of!(NewFlow, stats) == 48);

/// Slots of `PROPOSED_ON`: which CPU last proposed a flow whose key falls in the slot.
pub const PROPOSAL_SLOTS: usize = 1 << 14;

/// `PROPOSED_ON`'s slot for `key`: a cheap mix of the ports, the interface and the address
/// words where IPv4 and IPv6 addresses differ most. A collision only costs a look at another
/// CPU's proposal that turns out not to match.
#[inline(always)]
pub fn proposal_slot(key: &FlowKey) -> usize {
    let word = |bytes: &[u8; 16], at: usize| {
        u32::from_ne_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
    };
    let mixed = word(&key.addr_a, 0)
        ^ word(&key.addr_a, 12)
        ^ word(&key.addr_b, 0).rotate_left(7)
        ^ word(&key.addr_b, 12).rotate_left(7)
        ^ ((key.port_a as u32) << 16 | key.port_b as u32)
        ^ key.ifindex.rotate_left(13);
    (mixed.wrapping_mul(0x9e37_79b9) >> (32 - PROPOSAL_SLOTS.trailing_zeros())) as usize
}

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

const _: () = assert!(size_of::<FlowEndEvent>() == 184);
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

    fn icmp(icmp_type: u8, id: u16, from_a: bool) -> PacketInfo {
        let has_id = crate::packet::icmp_query_type(IPPROTO_ICMP, icmp_type).is_some();
        let mut p = PacketInfo {
            ip_version: 4,
            proto: IPPROTO_ICMP,
            icmp_type,
            icmp_id: id,
            flags: PKT_HAS_ICMP | if has_id { PKT_HAS_ICMP_ID } else { 0 },
            ..PacketInfo::default()
        };
        let (a, b) = ([10, 0, 0, 1], [10, 0, 0, 2]);
        let (src, dst) = if from_a { (a, b) } else { (b, a) };
        p.src_addr[..4].copy_from_slice(&src);
        p.dst_addr[..4].copy_from_slice(&dst);
        p
    }

    #[test]
    fn icmp_flows_are_one_per_query_type_and_identifier() {
        let key = |t, id, from_a| FlowKey::of_packet(&icmp(t, id, from_a), 1).0;
        assert_eq!(
            key(13, 5, true),
            key(14, 5, false),
            "timestamp and its reply"
        );
        assert_ne!(key(13, 5, true), key(13, 6, true), "another identifier");
        assert_ne!(key(13, 5, true), key(8, 5, true), "another query");
        assert_ne!(
            key(17, 0, true),
            key(13, 0, true),
            "another query, no identifier"
        );
        assert_ne!(
            key(134, 0, true),
            key(9, 0, true),
            "other messages, per type"
        );
    }

    #[test]
    fn the_flow_table_has_room_for_what_cpus_hold_back() {
        assert_eq!(flow_table_entries(1024, 2), 1024 + 256);
        assert_eq!(flows_held(flow_table_entries(65_536, 64), 64), 65_536);
        assert_eq!(flows_held(10, 4), 0);
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
