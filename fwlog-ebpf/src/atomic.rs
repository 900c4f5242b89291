//! Atomic read-modify-write on map values. The bpfel target's `core::sync::atomic` has no RMW
//! methods, so this uses the intrinsics, which LLVM lowers to BPF_ATOMIC instructions
//! (`lock xadd`, and `atomic_fetch_or` with BPF_FETCH, kernel ≥ 5.12).

use core::intrinsics::{atomic_or, atomic_xadd, AtomicOrdering};

/// `*target += value`, atomically.
///
/// # Safety
/// `target` must point to a live, aligned `u64` (a field of a map value).
#[inline(always)]
pub unsafe fn add_u64(target: *mut u64, value: u64) {
    // SAFETY: upheld by the caller.
    unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(target, value) };
}

/// `*target |= bits`, atomically; returns the value before. (64-bit only: the default BPF CPU
/// model has no 32-bit atomics.)
///
/// # Safety
/// `target` must point to a live, aligned `u64` (a field of a map value).
#[inline(always)]
pub unsafe fn fetch_or_u64(target: *mut u64, bits: u64) -> u64 {
    // SAFETY: upheld by the caller.
    unsafe { atomic_or::<u64, u64, { AtomicOrdering::Relaxed }>(target, bits) }
}
