//! TCP sequence-space arithmetic for judging a segment the way the receiving kernel would:
//! whether it continues its side's stream, and whether a RST is one the receiver honours.

use crate::packet::{IpLayout, PacketReader};

/// `FlowStats::fin`: `next_seq[SIDE_A]` is set (side A's first TCP segment was seen).
pub const SEQ_KNOWN_A: u64 = 8;
/// `next_seq[SIDE_B]` is set.
pub const SEQ_KNOWN_B: u64 = 16;

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;

/// `a` comes after `b` in sequence space (RFC 9293's modular comparison).
#[inline(always)]
pub const fn after(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

/// Whether a segment from `seq` to `end` continues a stream that has got to `next`: it starts
/// at or before `next` and reaches past it (a new segment, or a retransmission that overlaps
/// and extends it). A segment forged at a guessed sequence number almost never does.
#[inline(always)]
pub const fn continues(seq: u32, end: u32, next: u32) -> bool {
    !after(seq, next) && after(end, next)
}

/// The `FlowStats::fin` bit saying `next_seq[side]` is set.
#[inline(always)]
pub const fn seq_known(side: usize) -> u64 {
    if side == 0 {
        SEQ_KNOWN_A
    } else {
        SEQ_KNOWN_B
    }
}

/// A RST from `side` carrying `segment` and `flags`: does its receiver honour it? When that
/// side's stream is known, only at the sequence number it has got to (or one before it, which
/// Linux also takes after a FIN, `tcp_reset_check`): RFC 5961 3.2, which Linux follows in
/// `tcp_validate_incoming` (anything else in the window gets a challenge ACK, anything outside
/// it is dropped). When that side has sent nothing yet (it refuses a SYN): only when it
/// acknowledges the other side's stream exactly, as in SYN-SENT (RFC 9293 3.10.7.3).
/// `next_seq` and `known` are the flow's `next_seq` and `fin` word.
#[inline(always)]
pub fn honoured_reset(
    next_seq: &[u32; 2],
    side: usize,
    flags: u8,
    segment: &TcpSegment,
    known: u64,
) -> bool {
    let side = side & 1;
    let other = side ^ 1;
    if known & seq_known(side) != 0 {
        let next = next_seq[side];
        segment.seq == next || segment.seq == next.wrapping_sub(1)
    } else {
        flags & TCP_ACK != 0 && known & seq_known(other) != 0 && segment.ack == next_seq[other]
    }
}

/// What a TCP segment says about its place in its side's byte stream.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpSegment {
    pub seq: u32,
    pub ack: u32,
    /// Bytes of data after the header.
    pub payload: u32,
}

impl TcpSegment {
    /// The sequence number after this segment (SYN and FIN take one each, RFC 9293 3.4).
    pub const fn end(&self, tcp_flags: u8) -> u32 {
        self.seq
            .wrapping_add(self.payload)
            .wrapping_add((tcp_flags & TCP_SYN != 0) as u32)
            .wrapping_add((tcp_flags & TCP_FIN != 0) as u32)
    }
}

/// The sequence and acknowledgement numbers of a TCP packet that [`parse_ip_into`] parsed
/// (`PKT_HAS_TCP_FLAGS` set), and how much data it carries.
#[inline(always)]
pub fn tcp_segment<R: PacketReader + ?Sized>(packet: &R, layout: IpLayout) -> Option<TcpSegment> {
    let header: [u8; 9] = packet.read(layout.l4_offset + 4)?;
    let header_len = (header[8] >> 4) as usize * 4;
    let payload = layout
        .ip_end
        .saturating_sub(layout.l4_offset)
        .saturating_sub(header_len);
    Some(TcpSegment {
        seq: u32::from_be_bytes([header[0], header[1], header[2], header[3]]),
        ack: u32::from_be_bytes([header[4], header[5], header[6], header[7]]),
        payload: payload as u32,
    })
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec;

    use super::*;

    #[test]
    fn sequence_space_wraps() {
        assert!(after(1, u32::MAX));
        assert!(!after(u32::MAX, 1));
        assert!(!after(5, 5));
    }

    #[test]
    fn a_stream_is_continued_by_segments_that_reach_past_where_it_is() {
        assert!(continues(100, 200, 100), "the next segment");
        assert!(continues(50, 200, 100), "a retransmission that extends it");
        assert!(!continues(150, 200, 100), "a gap: out of order, or forged");
        assert!(!continues(50, 100, 100), "an old retransmission");
        assert!(
            continues(u32::MAX - 10, 20, u32::MAX - 10),
            "across the wrap"
        );
    }

    struct Flow {
        next_seq: [u32; 2],
        fin: u64,
    }

    fn stats(next: [u32; 2], known: u64) -> Flow {
        Flow {
            next_seq: next,
            fin: known,
        }
    }

    #[test]
    fn only_a_reset_at_the_expected_sequence_number_is_honoured() {
        let flow = stats([1000, 5000], SEQ_KNOWN_A | SEQ_KNOWN_B);
        let at = |seq| TcpSegment {
            seq,
            ack: 0,
            payload: 0,
        };
        assert!(honoured_reset(
            &flow.next_seq,
            0,
            TCP_RST,
            &at(1000),
            flow.fin
        ));
        assert!(honoured_reset(
            &flow.next_seq,
            0,
            TCP_RST,
            &at(999),
            flow.fin
        ));
        assert!(
            !honoured_reset(&flow.next_seq, 0, TCP_RST, &at(1001), flow.fin),
            "in the window"
        );
        assert!(
            !honoured_reset(&flow.next_seq, 0, TCP_RST, &at(12345), flow.fin),
            "a guess"
        );
        assert!(
            !honoured_reset(&flow.next_seq, 1, TCP_RST, &at(1000), flow.fin),
            "the other side's"
        );
    }

    #[test]
    fn a_side_that_sent_nothing_resets_by_acknowledging_the_syn() {
        let flow = stats([1001, 0], SEQ_KNOWN_A);
        let refusal = |ack| TcpSegment {
            seq: 0,
            ack,
            payload: 0,
        };
        assert!(honoured_reset(
            &flow.next_seq,
            1,
            TCP_RST | TCP_ACK,
            &refusal(1001),
            flow.fin
        ));
        assert!(!honoured_reset(
            &flow.next_seq,
            1,
            TCP_RST | TCP_ACK,
            &refusal(1002),
            flow.fin
        ));
        assert!(
            !honoured_reset(&flow.next_seq, 1, TCP_RST, &refusal(1001), flow.fin),
            "no ACK"
        );
    }

    #[test]
    fn tcp_segments_know_their_place_in_the_stream() {
        let mut syn = vec![
            0,
            1,
            0,
            2,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            5 << 4,
            TCP_SYN,
            0xff,
            0xff,
            0,
            0,
            0,
            0,
        ];
        syn[4..8].copy_from_slice(&1000u32.to_be_bytes());
        syn.extend_from_slice(b"data");
        let mut p = vec![
            0x45, 0, 0, 0, 0, 0, 0, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        let total = (p.len() + syn.len()) as u16;
        p[2..4].copy_from_slice(&total.to_be_bytes());
        p.extend_from_slice(&syn);
        let (info, layout) = crate::packet::parse_ip_layout(p.as_slice(), 0).expect("parses");
        let segment = tcp_segment(p.as_slice(), layout).expect("a TCP header");
        assert_eq!((segment.seq, segment.payload), (1000, 4));
        assert_eq!(segment.end(info.tcp_flags), 1005, "SYN takes one");
    }
}
