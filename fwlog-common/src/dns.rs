//! DNS messages copied from the wire for the collector's address → name cache: the questions
//! the host sends, and the answers that come back to them (an answer to no question the host
//! asked is never copied).

use core::mem::size_of;

use crate::packet::PacketInfo;

/// First byte of a [`DnsEvent`] in the ring buffer.
pub const EVENT_KIND_DNS: u8 = 3;
/// DNS payload bytes copied to userspace (a classic DNS/UDP message fits in 512).
pub const DNS_CAPTURE: usize = 512;
/// Questions remembered in the kernel until their answer comes (LRU).
pub const DNS_QUESTION_SLOTS: u32 = 4096;

/// A DNS message seen on a watched interface: a question the host sent (tc egress) or an
/// answer to one (tc ingress), for the collector's address → name cache.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DnsEvent {
    pub kind: u8,
    /// `SEEN_EGRESS` for a question the host sent, `SEEN_INGRESS` for an answer.
    pub seen: u8,
    pub _pad: [u8; 2],
    /// Bytes of `payload` that are valid.
    pub len: u32,
    /// The datagram's addresses and ports.
    pub packet: PacketInfo,
    pub payload: [u8; DNS_CAPTURE],
}

const _: () = assert!(size_of::<DnsEvent>() == 8 + 48 + DNS_CAPTURE);
const PAYLOAD_OFFSET: usize = 8 + size_of::<PacketInfo>();

/// A question in flight, as the kernel remembers it: the host's address and port, the
/// resolver's, and the query id. An answer is copied only when its reversed 4-tuple and id
/// find one.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DnsQuestionKey {
    pub local_addr: [u8; 16],
    pub remote_addr: [u8; 16],
    pub local_port: u16,
    pub remote_port: u16,
    /// The DNS header's id, as its two bytes on the wire.
    pub id: [u8; 2],
    pub ip_version: u8,
    pub _pad: u8,
}

const _: () = assert!(size_of::<DnsQuestionKey>() == 40);

impl DnsEvent {
    /// A ring-buffer record's datagram (addresses and ports), `seen` and DNS message, if the
    /// record is a DNS event.
    pub fn parse(bytes: &[u8]) -> Option<(PacketInfo, u8, &[u8])> {
        if bytes.len() < size_of::<Self>() || bytes[0] != EVENT_KIND_DNS {
            return None;
        }
        let len = u32::from_ne_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) as usize;
        let mut packet = PacketInfo::default();
        // SAFETY: `bytes` holds a whole DnsEvent (checked above), so the PacketInfo's bytes
        // are in it; every bit pattern is a valid PacketInfo (integers and byte arrays); the
        // copy is bytewise, whatever the record's alignment, and the two do not overlap.
        unsafe {
            core::ptr::copy_nonoverlapping(
                bytes.as_ptr().add(8),
                (&raw mut packet).cast::<u8>(),
                size_of::<PacketInfo>(),
            );
        }
        let message = bytes.get(PAYLOAD_OFFSET..PAYLOAD_OFFSET + len.min(DNS_CAPTURE))?;
        Some((packet, bytes[1], message))
    }
}
