//! DNS answers copied from the wire for the collector's address → name cache.

use core::mem::size_of;

/// First byte of a [`DnsEvent`] in the ring buffer.
pub const EVENT_KIND_DNS: u8 = 3;
/// DNS payload bytes copied to userspace (a classic DNS/UDP message fits in 512).
pub const DNS_CAPTURE: usize = 512;

/// A DNS response seen on a watched interface, for the collector's address → name cache.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DnsEvent {
    pub kind: u8,
    pub _pad: [u8; 3],
    /// Bytes of `payload` that are valid.
    pub len: u32,
    pub payload: [u8; DNS_CAPTURE],
}

const _: () = assert!(size_of::<DnsEvent>() == 8 + DNS_CAPTURE);

impl DnsEvent {
    /// The DNS message of a ring-buffer record, if it is one.
    pub fn message(bytes: &[u8]) -> Option<&[u8]> {
        if bytes.len() < size_of::<Self>() || bytes[0] != EVENT_KIND_DNS {
            return None;
        }
        let len = u32::from_ne_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) as usize;
        bytes.get(8..8 + len.min(DNS_CAPTURE))
    }
}
