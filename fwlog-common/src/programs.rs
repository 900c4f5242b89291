//! Names of the kernel objects the user side looks up in the loaded object.

use crate::event::{Action, CtState};

/// Ring buffer carrying every event but the verdicts (DNS answers, ended flows) to the
/// collector.
pub const EVENTS_MAP: &str = "EVENTS";
/// Array of maps: each CPU's ring buffer of verdict events, at the CPU's number.
pub const EVENT_RINGS_MAP: &str = "EVENT_RINGS";
/// Per-CPU `u64` counters, indexed by [`crate::counters`].
pub const COUNTERS_MAP: &str = "COUNTERS";
/// The flow table: [`crate::flow::FlowKey`] → [`crate::flow::FlowStats`] (LRU).
pub const FLOWS_MAP: &str = "FLOWS";
/// Per-CPU [`crate::flow::NewFlow`]: an inbound flow tc ingress saw start, not yet in `FLOWS`.
pub const NEW_FLOW_MAP: &str = "NEW_FLOW";
/// One [`crate::flow_filter::FlowFilter`], memory-mapped by the collector: tracked flows per
/// hash slot.
pub const FLOW_FILTER_MAP: &str = "FLOW_FILTER";
/// Global (`u64`): bytes waiting in a ring at which a submit wakes the collector.
pub const RING_WAKE_GLOBAL: &str = "RING_WAKE_BYTES";
/// Global (`u8`): 1 when the flow table is in use, so the verdict programs update it.
pub const FLOW_TRACKING_GLOBAL: &str = "FLOW_TRACKING";
/// Socket cookie → [`crate::process::ProcessInfo`] (LRU), filled by the cgroup hooks.
pub const SOCKETS_MAP: &str = "SOCKETS";
/// Global (`u8`): 1 when DNS responses are copied to the collector (names for addresses).
pub const DNS_CAPTURE_GLOBAL: &str = "DNS_CAPTURE";
/// cgroup/connect4, connect6, sendmsg4, sendmsg6 programs recording who uses each socket.
pub const PROCESS_PROGRAMS: [&str; 4] = [
    "process_connect4",
    "process_connect6",
    "process_sendmsg4",
    "process_sendmsg6",
];
/// The sk_lookup program whose pinned netns link shows whether the namespace fwlog installed
/// in still exists (it lets every lookup go on).
pub const NETNS_ALIVE_PROGRAM: &str = "netns_alive";
/// The tc programs, on ingress and egress of every watched Ethernet-like interface.
pub const FLOW_INGRESS_PROGRAM: &str = "flow_ingress";
pub const FLOW_EGRESS_PROGRAM: &str = "flow_egress";
/// The same for interfaces without a link-layer header (tun, WireGuard, PPP).
pub const FLOW_INGRESS_L3_PROGRAM: &str = "flow_ingress_l3";
pub const FLOW_EGRESS_L3_PROGRAM: &str = "flow_egress_l3";

/// The socket-filter program that iptables' `-m bpf` match runs for `action` and `state`.
///
/// One program per (action, state) pair: the rule that names the pin tells the event what the
/// packet's verdict and conntrack state are, which the program cannot see by itself.
pub const fn verdict_program(action: Action, state: CtState) -> &'static str {
    match (action, state) {
        (Action::Accept, CtState::New) => "verdict_accept_new",
        (Action::Accept, CtState::Related) => "verdict_accept_related",
        (Action::Drop, CtState::New) => "verdict_drop_new",
        (Action::Drop, CtState::Related) => "verdict_drop_related",
        (Action::Reject, CtState::New) => "verdict_reject_new",
        (Action::Reject, CtState::Related) => "verdict_reject_related",
    }
}
