//! How full the kernel → collector ring buffer is, read at scrape time from the ring's own
//! position counters, so `/metrics` shows it rising even while the collector is held up.
//!
//! A BPF ring buffer maps its consumer position in its first page and its producer position in
//! the second (kernel/bpf/ringbuf.c, `struct bpf_ringbuf`: each `unsigned long` sits alone on
//! its page); a read-only mapping of those two pages is allowed (`ringbuf_map_mmap_kern` only
//! refuses writable mappings past the first page). The bytes between them, record headers
//! included, wait for the collector.

use std::{
    num::NonZeroUsize,
    os::fd::AsFd,
    ptr::NonNull,
    sync::atomic::{AtomicU64, Ordering},
};

use anyhow::{Context as _, Result};
use nix::sys::mman::{mmap, munmap, MapFlags, ProtFlags};

/// A read-only view of a ring buffer's two position pages.
#[derive(Debug)]
pub struct RingFill {
    pages: NonNull<std::ffi::c_void>,
    page_size: usize,
    /// The ring's data size in bytes.
    pub size: u64,
}

// SAFETY: the mapping is read-only and only read through atomics; the kernel writes the
// positions with release stores (`smp_store_release` in ringbuf.c), whichever thread reads.
unsafe impl Send for RingFill {}
// SAFETY: as above: shared reads of atomics only.
unsafe impl Sync for RingFill {}

impl RingFill {
    /// Maps the position pages of the ring buffer `ring` (whose data is `size` bytes).
    pub fn new(ring: impl AsFd, size: u64) -> Result<Self> {
        let page_size = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
            .ok()
            .flatten()
            .and_then(|size| usize::try_from(size).ok())
            .unwrap_or(4096);
        let length = NonZeroUsize::new(2 * page_size).context("page size is zero")?;
        // SAFETY: a fresh shared read-only mapping of the ring map's fd at offset 0; the kernel
        // checks the length and offset, and nothing else aliases the returned address.
        let pages = unsafe {
            mmap(
                None,
                length,
                ProtFlags::PROT_READ,
                MapFlags::MAP_SHARED,
                ring.as_fd(),
                0,
            )
        }
        .context("mapping the ring buffer's positions (for /metrics)")?;
        Ok(RingFill {
            pages,
            page_size,
            size,
        })
    }

    /// Bytes written by the programs and not yet read by the collector.
    pub fn used(&self) -> u64 {
        let consumer = self.position(0);
        let producer = self.position(self.page_size);
        producer.saturating_sub(consumer).min(self.size)
    }

    fn position(&self, offset: usize) -> u64 {
        // SAFETY: `offset` is 0 or one page into a two-page mapping that lives as long as
        // `self`; the position is an aligned 8-byte word the kernel updates atomically.
        let word = unsafe { &*(self.pages.as_ptr().cast::<u8>().add(offset) as *const AtomicU64) };
        word.load(Ordering::Acquire)
    }
}

impl Drop for RingFill {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once, here.
        let _ = unsafe { munmap(self.pages, 2 * self.page_size) };
    }
}
