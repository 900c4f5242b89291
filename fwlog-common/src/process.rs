//! Who sent a packet: the process behind a socket, as the cgroup hooks saw it at connect() or
//! sendmsg() time, keyed by the socket cookie that the netfilter and tc programs can read.

use core::mem::size_of;

/// The process that used a socket.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcessInfo {
    /// Thread-group id: the process id users know.
    pub pid: u32,
    pub uid: u32,
    pub gid: u32,
    pub _pad: u32,
    pub cgroup_id: u64,
    /// `comm`, NUL-padded.
    pub comm: [u8; 16],
}

const _: () = assert!(size_of::<ProcessInfo>() == 40);

#[cfg(feature = "user")]
// SAFETY: integers and a byte array, no implicit padding (size checked above).
unsafe impl aya::Pod for ProcessInfo {}

impl ProcessInfo {
    /// `comm` up to its first NUL.
    pub fn comm_bytes(&self) -> &[u8] {
        let end = self
            .comm
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(self.comm.len());
        &self.comm[..end]
    }
}

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
