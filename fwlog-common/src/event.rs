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
    /// `bpf_get_socket_cookie()`; 0 when the packet has no socket.
    pub socket_cookie: u64,
    /// Owner of the local socket, valid with [`VERDICT_HAS_SOCKET`].
    pub uid: u32,
    /// Packet length from the IP header on (`__sk_buff.len`).
    pub len: u32,
    /// `__sk_buff.mark`.
    pub mark: u32,
    pub _pad0: u32,
    pub packet: PacketInfo,
    /// Valid with [`VERDICT_HAS_PROCESS`].
    pub process: ProcessInfo,
}

const _: () = assert!(size_of::<VerdictEvent>() == 128);
const _: () = assert!(offset_of!(VerdictEvent, kind) == 0);
const _: () = assert!(offset_of!(VerdictEvent, timestamp_ns) == 8);
const _: () = assert!(offset_of!(VerdictEvent, packet) == 40);

#[cfg(feature = "user")]
// SAFETY: plain integers and byte arrays, no padding the compiler adds (checked above).
unsafe impl aya::Pod for VerdictEvent {}

impl VerdictEvent {
    /// Reads an event from a ring-buffer record, if it is one and is whole.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if bytes.len() < size_of::<Self>() || bytes[0] != EVENT_KIND_VERDICT {
            return None;
        }
        // SAFETY: the length is checked above, every bit pattern is a valid VerdictEvent
        // (integers and byte arrays only) and read_unaligned needs no alignment.
        Some(unsafe { core::ptr::read_unaligned(bytes.as_ptr().cast::<Self>()) })
    }

    pub fn as_bytes(&self) -> &[u8] {
        // SAFETY: repr(C) struct with explicit padding fields, so every byte is initialised.
        unsafe {
            core::slice::from_raw_parts((self as *const Self).cast::<u8>(), size_of::<Self>())
        }
    }
}
