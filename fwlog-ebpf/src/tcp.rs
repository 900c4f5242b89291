//! How a tracked TCP flow ends, judged the way the kernel judges it: each side's place in its
//! byte stream is followed, a RST ends the flow only at the sequence number the receiver
//! expects, and a FIN counts only where its side's stream has got to, so segments forged from
//! the wire without the sequence number end nothing (the rules: `fwlog_common::tcp_seq`).

use fwlog_common::{
    flow::{EndReason, FlowScratch, FlowStats, FIN_A, FIN_B, SEEN_EGRESS},
    tcp_seq::{after, continues, honoured_reset, seq_known, TCP_ACK, TCP_FIN, TCP_RST},
};

use crate::{atomic::fetch_or_u64, entries::end_flow};

/// What [`tcp_progress`] needs to know about the packet besides its segment, in one word
/// (BPF calls pass at most five arguments).
#[inline(always)]
pub const fn packet_word(side: u8, flags: u8, seen: u8, local: bool) -> u64 {
    side as u64 | (flags as u64) << 8 | (seen as u64) << 16 | (local as u64) << 24
}

/// Counts a TCP segment's effect on its flow (after its packet was counted): follows the
/// sender's stream (`scratch.segment`), records FINs, and ends the flow (`scratch.key`) on FIN
/// from both sides or on a RST that the receiver honours. `packet` is [`packet_word`]: the
/// sending side, the flags, where tc saw it and whether this host sent it (not forwarded), in
/// which case its acknowledgement is this host's own view of the other stream.
///
/// Two CPUs may update one flow at once (its two directions); the sequence numbers are plain
/// stores, so a race can only leave one behind, which makes a later RST look unhonoured: the
/// flow then ends `rst` once it stays quiet ([`fwlog_common::flow::RST_LINGER_NS`]).
#[inline(never)]
pub fn tcp_progress(scratch: &FlowScratch, stats: *mut FlowStats, packet: u64, now: u64) {
    let side = (packet & 1) as usize;
    let flags = (packet >> 8) as u8;
    let seen = (packet >> 16) as u8;
    let local = (packet >> 24) & 1 != 0;
    let segment = &scratch.segment;
    // SAFETY: `stats` points into a live map value; fields are read and stored whole, and the
    // flag word only changes through atomic ORs.
    unsafe {
        let known = core::ptr::read_volatile(&raw const (*stats).fin);
        if flags & TCP_RST != 0 {
            if honoured_reset(&(*stats).next_seq, side, flags, segment, known) {
                end_flow(&scratch.key, stats, EndReason::Rst as u8);
            } else {
                (*stats).rst_ns = now;
            }
            return;
        }
        let end = segment.end(flags);
        let in_order = if known & seq_known(side) == 0 {
            (*stats).next_seq[side] = end;
            fetch_or_u64(&raw mut (*stats).fin, seq_known(side));
            true
        } else {
            let next = (*stats).next_seq[side];
            let continued = continues(segment.seq, end, next);
            if continued {
                (*stats).next_seq[side] = end;
            }
            // A retransmitted FIN ends where the stream already is.
            continued || end == next
        };
        let other = side ^ 1;
        if seen == SEEN_EGRESS
            && local
            && flags & TCP_ACK != 0
            && known & seq_known(other) != 0
            && after(segment.ack, (*stats).next_seq[other])
        {
            // This host acknowledged that much of the other stream (its rcv_nxt): segments
            // that arrived out of order, which the walk above does not follow, count too.
            (*stats).next_seq[other] = segment.ack;
        }
        if flags & TCP_FIN != 0 && in_order {
            let fin = if side == 0 { FIN_A } else { FIN_B };
            let before = fetch_or_u64(&raw mut (*stats).fin, fin);
            if (before | fin) & (FIN_A | FIN_B) == FIN_A | FIN_B {
                end_flow(&scratch.key, stats, EndReason::Fin as u8);
            }
        }
    }
}
