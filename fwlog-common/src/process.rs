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
