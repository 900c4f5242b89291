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
}

pub struct TcReader<'a>(pub &'a aya_ebpf::programs::TcContext);

impl PacketReader for TcReader<'_> {
    #[inline(always)]
    fn read<const N: usize>(&self, offset: usize) -> Option<[u8; N]> {
        self.0.load::<[u8; N]>(offset).ok()
    }
}
