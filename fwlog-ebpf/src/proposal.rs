//! New inbound flows before they are flows: tc ingress sees a packet before the stack has
//! checked it at all, so a flow that would start with it waits until the stack has shown it
//! took it (see `fwlog_common::flow::NewFlow`).
//!
//! - tc ingress proposes it in this CPU's `NEW_FLOW` slot (no map insert: most inbound
//!   attempts on an exposed interface are refused);
//! - the verdict program that runs next on this CPU inserts it when fwlog's chain accepts the
//!   packet, and drops it when the chain refuses it (`verdict.rs`);
//! - else the next tc run on this CPU finds it still waiting: more of it (the same side
//!   again, a later fragment) is counted to it; an answer to it (a SYN-ACK, a reply) makes it
//!   a flow, since the stack took it; anything else moves it to `TENTATIVE`, where an answer
//!   seen later at tc egress makes it a flow. Packets the stack drops (bad lengths or
//!   checksums, addresses not the host's, refused by a rule of the user's) are never
//!   answered, so they never become flows and never push real flows out of the table.

use aya_ebpf::helpers::bpf_get_smp_processor_id;
use fwlog_common::{
    flow::{proposal_slot, FlowKey, FlowScratch, NewFlow, PROPOSAL_SLOTS, SEEN_INGRESS},
    tcp_seq::TCP_RST,
};

use crate::{
    entries::{add_packet, first_packet_stats, insert_flow, same_key},
    maps::{new_flow_on, FLOWS, NEW_FLOW, PROPOSED_ON, TENTATIVE},
    memory::copy_words,
};

/// What [`settle_proposal`] did with the waiting proposal.
#[repr(u8)]
pub enum Settled {
    /// No proposal waited, or it was moved aside: the packet goes on as usual.
    Nothing = 0,
    /// The packet is more of the proposed flow and was counted to it.
    Absorbed = 1,
    /// The packet answers the proposal, which is now a flow in `FLOWS`.
    Promoted = 2,
}

/// The first packet of an inbound flow (in `scratch`): proposed to the verdict program that
/// runs next on this CPU. Whatever waited in the slot was settled before.
#[inline(never)]
pub fn propose_flow(scratch: &mut FlowScratch, side: u8, ip_bytes: u64, now: u64) {
    let Some(proposal) = NEW_FLOW.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: this CPU's entry; nothing else runs on this CPU while we do.
    let proposal = unsafe { &mut *proposal };
    first_packet_stats(
        &mut proposal.stats,
        &scratch.packet,
        &scratch.segment,
        side,
        SEEN_INGRESS as u64 | ip_bytes << 8,
        now,
    );
    proposal.key = scratch.key;
    proposal.side = side;
    proposal.waiting = 1;
    if let Some(owners) = PROPOSED_ON.get_ptr_mut(0) {
        // SAFETY: the map's one element; the index is masked to its length; a plain store of
        // a hint (see `answer_elsewhere`).
        unsafe {
            (*owners)[proposal_slot(&scratch.key) & (PROPOSAL_SLOTS - 1)] =
                bpf_get_smp_processor_id() as u16 + 1;
        }
    }
}

/// The packet in `scratch` (from `side`, leaving the host, no flow of its own yet) may answer
/// a proposal still waiting on another CPU (nothing else ran there since): if so the flow goes
/// into `FLOWS` (or, for a reset, is dropped). Returns whether it was one.
///
/// That CPU may be taking or replacing its proposal at this very moment; the worst a race does
/// is lose that proposal (its packet was not accepted by a verdict, and a later answer finds
/// nothing) or count its first packet twice (the insert finds the flow and adds to it).
#[inline(never)]
pub fn answer_elsewhere(scratch: &mut FlowScratch, side: u8, tcp_flags: u8) -> bool {
    let Some(owners) = PROPOSED_ON.get_ptr(0) else {
        return false;
    };
    // SAFETY: as in propose_flow.
    let owner = unsafe { (*owners)[proposal_slot(&scratch.key) & (PROPOSAL_SLOTS - 1)] };
    // SAFETY: helper without arguments.
    let this_cpu = unsafe { bpf_get_smp_processor_id() };
    if owner == 0 || u32::from(owner) - 1 == this_cpu {
        return false;
    }
    let Some(proposal) = new_flow_on(u32::from(owner) - 1) else {
        return false;
    };
    // SAFETY: another CPU's entry, read and written with plain loads and stores (see above).
    let proposal = unsafe { &mut *proposal };
    if proposal.waiting == 0 || proposal.side == side || !same_key(&proposal.key, &scratch.key) {
        return false;
    }
    proposal.waiting = 0;
    if tcp_flags & TCP_RST == 0 {
        copy_words(&raw mut scratch.stats, &raw const proposal.stats);
        insert_flow(&scratch.key, &scratch.stats, scratch.stats.opener);
    }
    true
}

/// Deals with a proposal still waiting on this CPU before the packet in `scratch` (its key
/// set, sent by `side`) is counted; returns a [`Settled`] as `u8`.
#[inline(never)]
pub fn settle_proposal(
    scratch: &mut FlowScratch,
    side: u8,
    tcp_flags: u8,
    ip_bytes: u64,
    now: u64,
) -> u8 {
    let Some(proposal) = NEW_FLOW.get_ptr_mut(0) else {
        return Settled::Nothing as u8;
    };
    // SAFETY: this CPU's entry; nothing else runs on this CPU while we do.
    let proposal = unsafe { &mut *proposal };
    if proposal.waiting == 0 {
        return Settled::Nothing as u8;
    }
    if !same_key(&proposal.key, &scratch.key) {
        stash_tentative(proposal);
        return Settled::Nothing as u8;
    }
    if side == proposal.side {
        // The opener again before any verdict: a retransmitted SYN, a second datagram.
        add_packet(&raw mut proposal.stats, side, ip_bytes, now, tcp_flags);
        return Settled::Absorbed as u8;
    }
    proposal.waiting = 0;
    if tcp_flags & TCP_RST != 0 {
        // Answered with a reset: nothing took it (no listener, or a rule rejected it).
        return Settled::Nothing as u8;
    }
    // Answered (a listener's SYN-ACK, sent in the same softirq): the stack took it.
    insert_flow(&proposal.key, &proposal.stats, proposal.side);
    Settled::Promoted as u8
}

/// Counts a packet of the waiting proposal's flow (`key`, from `side`) to it; false when no
/// proposal for that flow waits on this CPU.
#[inline(always)]
pub fn count_to_waiting(key: &FlowKey, side: u8, ip_bytes: u64, now: u64) -> bool {
    let Some(proposal) = NEW_FLOW.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: this CPU's entry; nothing else runs on this CPU while we do.
    let proposal = unsafe { &mut *proposal };
    if proposal.waiting == 0 || !same_key(&proposal.key, key) {
        return false;
    }
    add_packet(&raw mut proposal.stats, side, ip_bytes, now, 0);
    true
}

/// Moves a proposal that nothing took to `TENTATIVE`, where an answer can still make it a
/// flow; merged into an earlier proposal of the same flow waiting there.
#[inline(always)]
pub fn stash_tentative(proposal: &mut NewFlow) {
    proposal.waiting = 0;
    let side = proposal.side;
    if let Some(tracked) = FLOWS.get_ptr_mut(&proposal.key) {
        // A packet of a tracked flow that the flow filter took for a new one (a count lost to
        // a race): it belongs to that flow.
        add_packet(
            tracked,
            side,
            proposal.stats.bytes[side as usize & 1],
            proposal.stats.last_ns,
            proposal.stats.tcp_flags as u8,
        );
        return;
    }
    if TENTATIVE
        .insert(
            &proposal.key,
            &proposal.stats,
            aya_ebpf::bindings::BPF_NOEXIST as u64,
        )
        .is_err()
    {
        if let Some(earlier) = TENTATIVE.get_ptr_mut(&proposal.key) {
            add_packet(
                earlier,
                side,
                proposal.stats.bytes[side as usize & 1],
                proposal.stats.last_ns,
                proposal.stats.tcp_flags as u8,
            );
        }
    }
}

/// The packet in `scratch` (from `side`, leaving the host) may answer a tentative flow: if so
/// the flow goes into `FLOWS` (or, for a reset, is dropped). Returns whether it was one.
#[inline(never)]
pub fn answer_tentative(scratch: &mut FlowScratch, side: u8, tcp_flags: u8) -> bool {
    let Some(tentative) = TENTATIVE.get_ptr(&scratch.key) else {
        return false;
    };
    // A live map value, copied whole into this CPU's scratch (not onto the stack).
    copy_words(&raw mut scratch.stats, tentative);
    let opener = scratch.stats.opener;
    if opener == side {
        // The opener's own packet leaving again (it cannot be, on one interface): not an
        // answer, and not a new flow either.
        return true;
    }
    let _ = TENTATIVE.remove(&scratch.key);
    if tcp_flags & TCP_RST == 0 {
        insert_flow(&scratch.key, &scratch.stats, opener);
    }
    true
}

/// For the verdict program, which accepts the flow of `key`: moves it from `TENTATIVE` into
/// `FLOWS` with the verdict; returns when its first packet was seen, or `None` if it was not
/// there.
#[inline(always)]
pub fn accept_tentative(key: &FlowKey, action: u8, ct_state: u8) -> Option<u64> {
    let tentative = TENTATIVE.get_ptr_mut(key)?;
    // SAFETY: a live map value, only read and written by byte stores here.
    let first_ns = unsafe {
        (*tentative).action = action;
        (*tentative).ct_state = ct_state;
        insert_flow(key, &*tentative, (*tentative).opener);
        (*tentative).first_ns
    };
    let _ = TENTATIVE.remove(key);
    Some(first_ns)
}

/// Puts a proposed flow into the table and empties the proposal slot.
#[inline(never)]
pub fn insert_new_flow(proposal: &mut NewFlow) {
    proposal.waiting = 0;
    insert_flow(&proposal.key, &proposal.stats, proposal.side);
}
