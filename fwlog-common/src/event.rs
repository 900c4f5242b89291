//! The fixed-size records the kernel writes into the `EVENTS` ring buffer.

use core::mem::{offset_of, size_of};

use crate::{packet::PacketInfo, process::ProcessInfo};

/// First byte of every ring-buffer record: which struct follows.
pub const EVENT_KIND_VERDICT: u8 = 1;

/// What the firewall chain does with the packet after fwlog has seen it.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    Accept = 1,
    Drop = 2,
    Reject = 3,
}

impl Action {
    pub const ALL: [Action; 3] = [Action::Accept, Action::Drop, Action::Reject];

    pub const fn from_u8(value: u8) -> Option<Self> {
        match value {
            1 => Some(Action::Accept),
            2 => Some(Action::Drop),
            3 => Some(Action::Reject),
            _ => None,
        }
    }

    /// The word used in JSON (`"action"`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Action::Accept => "accept",
            Action::Drop => "drop",
            Action::Reject => "reject",
        }
    }

    /// The iptables chain that logs and then applies this action (the article's names).
    pub const fn chain(self) -> &'static str {
        match self {
            Action::Accept => "LOG_AND_ACCEPT",
            Action::Drop => "LOG_AND_DROP",
            Action::Reject => "LOG_AND_REJECT",
        }
    }

    /// The iptables target that applies this action.
    pub const fn target(self) -> &'static str {
        match self {
            Action::Accept => "ACCEPT",
            Action::Drop => "DROP",
            Action::Reject => "REJECT",
        }
    }

    /// The letter of the article's log prefixes (`[OY-A]:`, `[OY-D]:`, `[OY-R]:`).
    pub const fn letter(self) -> char {
        match self {
            Action::Accept => 'A',
            Action::Drop => 'D',
            Action::Reject => 'R',
        }
    }
}

/// The conntrack state the iptables rule matched before running the program.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CtState {
    New = 1,
    Related = 2,
}

impl CtState {
    pub const ALL: [CtState; 2] = [CtState::New, CtState::Related];

    pub const fn from_u8(value: u8) -> Option<Self> {
        match value {
            1 => Some(CtState::New),
            2 => Some(CtState::Related),
            _ => None,
        }
    }

    /// The word used in JSON (`"ct_state"`).
    pub const fn as_str(self) -> &'static str {
        match self {
            CtState::New => "new",
            CtState::Related => "related",
        }
    }

    /// The value of iptables' `--ctstate` for this state.
    pub const fn iptables_name(self) -> &'static str {
        match self {
            CtState::New => "NEW",
            CtState::Related => "RELATED",
        }
    }
}

/// `VerdictEvent::flags`: the packet had a local socket, so `uid` and `socket_cookie` are set.
pub const VERDICT_HAS_SOCKET: u8 = 1;
/// The socket's process is known (`process` is set).
pub const VERDICT_HAS_PROCESS: u8 = 2;

/// One packet that reached a `LOG_AND_*` chain in conntrack state NEW or RELATED.
///
/// A packet that came in has no local socket, so its record stops before `socket_cookie`
/// ([`VERDICT_INBOUND_BYTES`]): 80 bytes in the ring with its header instead of 136, so the
/// ring holds 1.7 times as many records of an inbound flood before it loses any. (The
/// verdict program's run time did not change measurably.)
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VerdictEvent {
    /// [`EVENT_KIND_VERDICT`].
    pub kind: u8,
    /// [`Action`] as `u8`.
    pub action: u8,
    /// [`CtState`] as `u8`.
    pub ct_state: u8,
    /// `VERDICT_*` flags.
    pub flags: u8,
    /// Input interface (`__sk_buff.ingress_ifindex`); 0 in OUTPUT, where it is not known yet.
    pub ifindex: u32,
    /// `bpf_ktime_get_boot_ns()`: CLOCK_BOOTTIME, so time asleep is counted.
    pub timestamp_ns: u64,
    /// Packet length from the IP header on (`__sk_buff.len`).
    pub len: u32,
    /// `__sk_buff.mark`.
    pub mark: u32,
    pub packet: PacketInfo,
    /// `bpf_get_socket_cookie()`; 0 when the packet has no socket.
    pub socket_cookie: u64,
    /// Owner of the local socket, valid with [`VERDICT_HAS_SOCKET`].
    pub uid: u32,
    pub _pad0: u32,
    /// Valid with [`VERDICT_HAS_PROCESS`].
    pub process: ProcessInfo,
}

/// The part of a [`VerdictEvent`] written for a packet that came in (`ifindex != 0`): the rest
/// is about the local socket, which such a packet does not have yet.
pub const VERDICT_INBOUND_BYTES: usize = offset_of!(VerdictEvent, socket_cookie);

const _: () = assert!(size_of::<VerdictEvent>() == 128);
const _: () = assert!(offset_of!(VerdictEvent, kind) == 0);
const _: () = assert!(offset_of!(VerdictEvent, timestamp_ns) == 8);
const _: () = assert!(offset_of!(VerdictEvent, packet) == 24);
const _: () = assert!(VERDICT_INBOUND_BYTES == 72);

#[cfg(feature = "user")]
// SAFETY: plain integers and byte arrays, no padding the compiler adds (checked above).
unsafe impl aya::Pod for VerdictEvent {}

impl VerdictEvent {
    /// Reads an event from a ring-buffer record, if it is one: whole, or an inbound packet's
    /// record (the first [`VERDICT_INBOUND_BYTES`]; the rest stays zero).
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if bytes.len() < VERDICT_INBOUND_BYTES || bytes[0] != EVENT_KIND_VERDICT {
            return None;
        }
        let mut event = Self::default();
        let len = bytes.len().min(size_of::<Self>());
        // SAFETY: `len` bytes fit both the record and the event, every bit pattern is a valid
        // VerdictEvent (integers and byte arrays only), and the two do not overlap.
        unsafe {
            core::ptr::copy_nonoverlapping(bytes.as_ptr(), (&raw mut event).cast::<u8>(), len);
        }
        Some(event)
    }

    pub fn as_bytes(&self) -> &[u8] {
        // SAFETY: repr(C) struct with explicit padding fields, so every byte is initialised.
        unsafe {
            core::slice::from_raw_parts((self as *const Self).cast::<u8>(), size_of::<Self>())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outbound_event() -> VerdictEvent {
        let mut event = VerdictEvent {
            kind: EVENT_KIND_VERDICT,
            action: Action::Accept as u8,
            ct_state: CtState::New as u8,
            flags: VERDICT_HAS_SOCKET | VERDICT_HAS_PROCESS,
            timestamp_ns: 42,
            len: 60,
            socket_cookie: 7,
            uid: 1000,
            ..VerdictEvent::default()
        };
        event.packet.src_port = 40000;
        event.process.pid = 99;
        event
    }

    #[test]
    fn a_whole_record_reads_back_whole() {
        let event = outbound_event();
        assert_eq!(VerdictEvent::from_bytes(event.as_bytes()), Some(event));
    }

    #[test]
    fn an_inbound_record_reads_back_without_socket_fields() {
        let mut event = outbound_event();
        event.ifindex = 3;
        let read = VerdictEvent::from_bytes(&event.as_bytes()[..VERDICT_INBOUND_BYTES])
            .expect("an inbound record is a verdict");
        assert_eq!((read.timestamp_ns, read.len, read.ifindex), (42, 60, 3));
        assert_eq!(read.packet, event.packet);
        assert_eq!((read.socket_cookie, read.uid, read.process.pid), (0, 0, 0));
    }

    #[test]
    fn short_or_foreign_records_are_not_verdicts() {
        let event = outbound_event();
        assert_eq!(
            VerdictEvent::from_bytes(&event.as_bytes()[..VERDICT_INBOUND_BYTES - 1]),
            None
        );
        let mut other = event;
        other.kind = EVENT_KIND_VERDICT + 1;
        assert_eq!(VerdictEvent::from_bytes(other.as_bytes()), None);
    }
}
