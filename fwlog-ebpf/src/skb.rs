//! The one bounds-checked packet access path: `bpf_skb_load_bytes`, which fails instead of
//! reading past the end of the packet.

use aya_ebpf::programs::SkBuffContext;
use fwlog_common::packet::PacketReader;

pub struct SkbReader<'a>(pub &'a SkBuffContext);

impl PacketReader for SkbReader<'_> {
    #[inline(always)]
    fn read<const N: usize>(&self, offset: usize) -> Option<[u8; N]> {
        self.0.load::<[u8; N]>(offset).ok()
    }

    #[inline(always)]
    fn packet_len(&self) -> usize {
        self.0.len() as usize
    }

    #[inline(always)]
    fn forget(&self, offset: usize) -> usize {
        crate::maps::forget(offset)
    }
}

pub struct TcReader<'a>(pub &'a aya_ebpf::programs::TcContext);

impl PacketReader for TcReader<'_> {
    #[inline(always)]
    fn read<const N: usize>(&self, offset: usize) -> Option<[u8; N]> {
        self.0.load::<[u8; N]>(offset).ok()
    }

    #[inline(always)]
    fn packet_len(&self) -> usize {
        self.0.len() as usize
    }
}

/// Reads headers straight from the packet when they are in its linear part, as they nearly
/// always are at tc, and through `bpf_skb_load_bytes` otherwise. A helper call per header
/// read showed in the tc program's run time.
pub struct TcDirectReader<'a> {
    ctx: &'a aya_ebpf::programs::TcContext,
    data: usize,
    data_end: usize,
}

impl<'a> TcDirectReader<'a> {
    #[inline(always)]
    pub fn new(ctx: &'a aya_ebpf::programs::TcContext) -> Self {
        TcDirectReader {
            ctx,
            data: ctx.data(),
            data_end: ctx.data_end(),
        }
    }
}

impl PacketReader for TcDirectReader<'_> {
    #[inline(always)]
    fn read<const N: usize>(&self, offset: usize) -> Option<[u8; N]> {
        let start = self.data + offset;
        if start + N <= self.data_end {
            // SAFETY: the N bytes from `start` lie within the packet's linear data, which the
            // check above proves (to the verifier as well).
            return Some(unsafe { core::ptr::read_unaligned(start as *const [u8; N]) });
        }
        self.ctx.load::<[u8; N]>(offset).ok()
    }

    /// Two byte loads after one bounds check, never a 16-bit value (see the trait).
    #[inline(always)]
    fn read_pair(&self, offset: usize) -> Option<(u8, u8)> {
        let start = self.data + offset;
        if start + 2 <= self.data_end {
            // SAFETY: both bytes lie within the packet's linear data (checked above).
            return Some(unsafe { (*(start as *const u8), *((start + 1) as *const u8)) });
        }
        self.ctx
            .load::<[u8; 2]>(offset)
            .ok()
            .map(|[first, second]| (first, second))
    }

    #[inline(always)]
    fn packet_len(&self) -> usize {
        self.ctx.len() as usize
    }

    #[inline(always)]
    fn forget(&self, offset: usize) -> usize {
        crate::maps::forget(offset)
    }

    #[inline(always)]
    fn read_rare<const N: usize>(&self, offset: usize) -> Option<[u8; N]> {
        self.ctx.load::<[u8; N]>(offset).ok()
    }
}
