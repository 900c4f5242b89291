//! Socket filters run by iptables' `-m bpf --object-pinned` match inside the `LOG_AND_*` chains.
//!
//! xt_bpf hands the program the packet from the IP header on (net/netfilter/xt_bpf.c calls
//! `bpf_prog_run_save_cb` on the skb as netfilter sees it). Each program records what it saw
//! and returns 1, "match": in a chain fwlog created, the rule then takes the chain's action
//! itself; in a chain the user had, the rule has no target and the chain goes on.

use aya_ebpf::{
    helpers::{bpf_get_socket_cookie, bpf_ktime_get_boot_ns},
    macros::socket_filter,
    programs::SkBuffContext,
};
use aya_log_ebpf::debug;
use fwlog_common::{
    counters::{FLOWS_ENDED, LOST_EVENTS, MALFORMED_PACKETS, VERDICT_EVENTS},
    event::{
        Action, CtState, VerdictEvent, EVENT_KIND_VERDICT, VERDICT_HAS_PROCESS, VERDICT_HAS_SOCKET,
        VERDICT_INBOUND_BYTES,
    },
    flow::{FlowKey, PendingVerdict, SEEN_INGRESS},
    packet::{
        parse_ip_into, IpLayout, PacketInfo, IPPROTO_TCP, PKT_HAS_TCP_FLAGS, PKT_L4_UNPARSED,
    },
};

use fwlog_common::tcp_seq::{tcp_segment, TcpSegment};

use crate::{
    entries::{first_packet_stats, same_key},
    maps::{
        count, cpu_ring, cpu_ring_submit_flags, filter_count_out, FLOWS, FLOW_SCRATCH, NEW_FLOW,
        PENDING_VERDICTS, SOCKETS, TENTATIVE,
    },
    memory::zero_words,
    proposal::{accept_tentative, insert_new_flow, stash_tentative},
    skb::SkbReader,
};

/// 1 when the tc programs keep the flow table (the user side sets it at load time), so the
/// verdict is written into the flow too.
#[no_mangle]
static FLOW_TRACKING: u8 = 0;

/// xt_bpf treats a non-zero return as a match. Every logged packet matches, whatever happened
/// to its record (see the module comment).
const MATCH: i64 = 1;

#[socket_filter]
pub fn verdict_accept_new(ctx: SkBuffContext) -> i64 {
    record_verdict(&ctx, Action::Accept, CtState::New)
}

#[socket_filter]
pub fn verdict_accept_related(ctx: SkBuffContext) -> i64 {
    record_verdict(&ctx, Action::Accept, CtState::Related)
}

#[socket_filter]
pub fn verdict_drop_new(ctx: SkBuffContext) -> i64 {
    record_verdict(&ctx, Action::Drop, CtState::New)
}

#[socket_filter]
pub fn verdict_drop_related(ctx: SkBuffContext) -> i64 {
    record_verdict(&ctx, Action::Drop, CtState::Related)
}

#[socket_filter]
pub fn verdict_reject_new(ctx: SkBuffContext) -> i64 {
    record_verdict(&ctx, Action::Reject, CtState::New)
}

#[socket_filter]
pub fn verdict_reject_related(ctx: SkBuffContext) -> i64 {
    record_verdict(&ctx, Action::Reject, CtState::Related)
}

/// An inbound packet's record: the first [`VERDICT_INBOUND_BYTES`] of a [`VerdictEvent`].
#[repr(C)]
struct InboundRecord([u64; VERDICT_INBOUND_BYTES / 8]);

/// Writes one [`VerdictEvent`] for the packet: whole in OUTPUT, without the socket part for a
/// packet that came in. Fails open: whatever goes wrong, the packet goes on to the chain's
/// action, and the problem is counted.
#[inline(always)]
fn record_verdict(ctx: &SkBuffContext, action: Action, state: CtState) -> i64 {
    // SAFETY: a field of the program's own context, readable from socket filters.
    let ifindex = unsafe { (*ctx.skb.skb).ingress_ifindex };
    if ifindex == 0 {
        record::<VerdictEvent, true>(ctx, action, state)
    } else {
        record::<InboundRecord, false>(ctx, action, state)
    }
}

/// [`record_verdict`] with a record of type `R`; `OUTPUT`: the packet leaves through OUTPUT,
/// so `R` is a whole [`VerdictEvent`] and its socket part is filled in.
#[inline(always)]
fn record<R: 'static, const OUTPUT: bool>(
    ctx: &SkBuffContext,
    action: Action,
    state: CtState,
) -> i64 {
    // SAFETY: a global the loader may set; read volatile so it is not folded at build time.
    let flow_tracking = unsafe { core::ptr::read_volatile(&FLOW_TRACKING) } != 0;
    let ring = cpu_ring();
    match ring.and_then(|ring| ring.reserve_untyped::<R>(0).map(|entry| (ring, entry))) {
        Some((ring, mut entry)) => {
            // Built in place in the ring buffer: a copy would not fit the 512-byte eBPF stack
            // next to the parser. Only the fields within `R` are touched (the socket part only
            // when OUTPUT, whose record is whole), through raw places, never a reference to
            // the whole event.
            let raw = entry.as_mut_ptr();
            zero_words(raw);
            let event = raw.cast::<VerdictEvent>();
            let parsed = fill_event::<OUTPUT>(ctx, event, action, state, flow_tracking);
            // SAFETY: `packet` lies within every record's first bytes.
            let seen_at_tc = if parsed && flow_tracking {
                unsafe { record_flow_verdict(ctx, &(*event).packet, action, state) }
            } else {
                None
            };
            // SAFETY: as above; the helper takes no arguments.
            unsafe {
                (*event).timestamp_ns = seen_at_tc.unwrap_or_else(|| bpf_ktime_get_boot_ns());
            }
            entry.submit(cpu_ring_submit_flags(ring));
            count(VERDICT_EVENTS);
        }
        None => {
            count(LOST_EVENTS);
            if flow_tracking {
                let mut packet = PacketInfo::default();
                if let Ok(layout) = parse_ip_into(&SkbReader(ctx), 0, &mut packet) {
                    remember_layout(layout);
                    let _ = record_flow_verdict(ctx, &packet, action, state);
                }
            }
        }
    }
    MATCH
}

/// Fills the zeroed record at `event` from the packet, the skb and, in OUTPUT, its socket;
/// returns whether its IP header parsed (its layout is then in `FLOW_SCRATCH`, for a packet
/// that came in).
#[inline(always)]
fn fill_event<const OUTPUT: bool>(
    ctx: &SkBuffContext,
    event: *mut VerdictEvent,
    action: Action,
    state: CtState,
    flow_tracking: bool,
) -> bool {
    let skb = ctx.skb.skb;
    // SAFETY: `event` points to a reserved, zeroed record holding at least the fields before
    // `socket_cookie`, and the whole event when OUTPUT. `skb` is the context pointer the
    // kernel passed to this program; these fields are readable from socket filters
    // (net/core/filter.c, sk_filter_is_valid_access). The helpers take the program's own
    // context or no argument.
    unsafe {
        (*event).kind = EVENT_KIND_VERDICT;
        (*event).action = action as u8;
        (*event).ct_state = state as u8;
        (*event).ifindex = (*skb).ingress_ifindex;
        (*event).len = (*skb).len;
        (*event).mark = (*skb).mark;
        // Only OUTPUT's packets have a socket to ask about. One that came in finds its socket
        // after netfilter, except through early demux, which attaches established TCP and
        // connected UDP sockets, which a NEW packet almost never belongs to; the collector
        // names the listener of an accepted inbound connection instead.
        if OUTPUT {
            let cookie = bpf_get_socket_cookie(skb.cast());
            (*event).socket_cookie = cookie;
            if cookie != 0 {
                (*event).uid = ctx.get_socket_uid();
                (*event).flags |= VERDICT_HAS_SOCKET;
                if let Some(known) = SOCKETS.get(&cookie) {
                    (*event).flags |= VERDICT_HAS_PROCESS;
                    (*event).process = *known;
                }
            }
        }
    }
    // A packet that came in crossed tc ingress on a watched interface (the INPUT rules name
    // them), which counted it if it was malformed: each malformed packet is counted once.
    // SAFETY: `ifindex` lies within every record.
    let counted_at_tc = flow_tracking && unsafe { (*event).ifindex } != 0;
    // Parsed in place, into the ring buffer.
    // SAFETY: `packet` lies within every record; nothing else refers to it meanwhile.
    let packet = unsafe { &mut (*event).packet };
    match parse_ip_into(&SkbReader(ctx), 0, packet) {
        Ok(layout) => {
            if packet.flags & PKT_L4_UNPARSED != 0 && !counted_at_tc {
                count(MALFORMED_PACKETS);
            }
            if !OUTPUT {
                remember_layout(layout);
            }
            true
        }
        Err(error) => {
            if !counted_at_tc {
                count(MALFORMED_PACKETS);
            }
            packet.clear();
            debug!(ctx, "unparsable IP header ({})", error as u8);
            false
        }
    }
}

/// Keeps a packet's layout in this CPU's `FLOW_SCRATCH` for [`record_flow_verdict`]. Read
/// back from map memory, it is just a number to the verifier: carried in registers, each way
/// through the parser (each exact header length) had the rest of the program verified once
/// more, past the kernel's million instructions. Only for packets that came in: their verdict
/// runs in the softirq that ran tc ingress before it, which is done with the scratch by then.
#[inline(always)]
fn remember_layout(layout: IpLayout) {
    if let Some(scratch) = FLOW_SCRATCH.get_ptr_mut(0) {
        // SAFETY: this CPU's scratch entry; plain stores.
        unsafe {
            (*scratch).l4_offset = layout.l4_offset as u64;
            (*scratch).ip_end = layout.ip_end as u64;
        }
    }
}

/// The layout [`remember_layout`] kept.
#[inline(always)]
fn remembered_layout() -> Option<IpLayout> {
    let scratch = FLOW_SCRATCH.get_ptr(0)?;
    // SAFETY: this CPU's scratch entry; volatile so the stored values are not reused.
    unsafe {
        Some(IpLayout {
            l4_offset: core::ptr::read_volatile(&raw const (*scratch).l4_offset) as usize,
            ip_end: core::ptr::read_volatile(&raw const (*scratch).ip_end) as usize,
        })
    }
}

/// Puts the verdict into the packet's flow, and returns when tc ingress saw the packet if it
/// proposed the flow (one clock read fewer per connection attempt) or when the flow this
/// verdict starts starts.
///
/// In INPUT (and FORWARD) tc ingress has run: a new flow waits in `NEW_FLOW` (or, when other
/// packets came between, in `TENTATIVE`) and goes into the table only if the packet is
/// accepted; an accepted packet whose proposal is gone makes the flow itself. An existing flow
/// gets the verdict (or is removed, for a refused attempt). In OUTPUT the interface is not
/// known yet and tc egress has not run, so the verdict waits in `PENDING_VERDICTS` for the
/// flow's creation.
#[inline(always)]
fn record_flow_verdict(
    ctx: &SkBuffContext,
    packet: &PacketInfo,
    action: Action,
    state: CtState,
) -> Option<u64> {
    // SAFETY: a field of the program's own context, readable from socket filters.
    let ifindex = unsafe { (*ctx.skb.skb).ingress_ifindex };
    let mut key = FlowKey::default();
    let side = key.set_from(packet, ifindex);
    // A connection attempt the firewall refuses never becomes a flow: its verdict event is its
    // record. Keeping it would let a flood of spoofed attempts push real flows out of the LRU
    // table (and cost an insert and a delete per attempt).
    let refused = state == CtState::New && action != Action::Accept;
    if ifindex == 0 {
        let verdict = PendingVerdict {
            action: action as u8,
            ct_state: state as u8,
            _pad: [0; 2],
        };
        let _ = PENDING_VERDICTS.insert(&key, &verdict, 0);
        return None;
    }
    let proposal = NEW_FLOW.get_ptr_mut(0)?;
    // SAFETY: this CPU's entry; nothing else runs on this CPU while we do.
    let proposal = unsafe { &mut *proposal };
    if proposal.waiting != 0 && same_key(&proposal.key, &key) {
        let seen_at = proposal.stats.first_ns;
        if refused {
            proposal.waiting = 0;
        } else {
            proposal.stats.action = action as u8;
            proposal.stats.ct_state = state as u8;
            insert_new_flow(proposal);
        }
        return Some(seen_at);
    }
    if refused {
        let _ = TENTATIVE.remove(&key);
        if FLOWS.remove(&key).is_ok() {
            filter_count_out(&key);
            count(FLOWS_ENDED);
        }
        return None;
    }
    if let Some(stats) = FLOWS.get_ptr_mut(&key) {
        // SAFETY: a live map value; single-byte stores.
        unsafe {
            (*stats).action = action as u8;
            (*stats).ct_state = state as u8;
        }
        return None;
    }
    if let Some(seen_at) = accept_tentative(&key, action as u8, state as u8) {
        return Some(seen_at);
    }
    if state != CtState::New {
        return None;
    }
    // Accepted, and its proposal is gone (other packets came between: a batch of received
    // packets goes through tc before the stack, or the packet was reassembled from fragments
    // whose first was too short to propose anything): the flow starts here.
    if proposal.waiting != 0 {
        stash_tentative(proposal);
    }
    let segment = if packet.proto == IPPROTO_TCP && packet.flags & PKT_HAS_TCP_FLAGS != 0 {
        remembered_layout()
            .and_then(|layout| tcp_segment(&SkbReader(ctx), layout))
            .unwrap_or_default()
    } else {
        TcpSegment::default()
    };
    // SAFETY: helper without arguments.
    let now = unsafe { bpf_ktime_get_boot_ns() };
    // SAFETY: a field of the program's own context: the IP packet's length.
    let ip_bytes = unsafe { (*ctx.skb.skb).len } as u64;
    first_packet_stats(
        &mut proposal.stats,
        packet,
        &segment,
        side,
        SEEN_INGRESS as u64 | ip_bytes << 8,
        now,
    );
    proposal.stats.action = action as u8;
    proposal.stats.ct_state = state as u8;
    proposal.key = key;
    proposal.side = side;
    insert_new_flow(proposal);
    Some(now)
}
