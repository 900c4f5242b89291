//! Zeroing structs without `memset`: LLVM lowers `*x = T::default()` for larger structs to a
//! call to compiler_builtins' byte-at-a-time memset, which `cargo xtask bench` showed costing
//! more than the programs' own work.

/// Zeroes `*target` a 64-bit word at a time.
///
/// `T` must be 8-aligned, a multiple of 8 bytes, and valid when all zero (the event and flow
/// structs: integers and byte arrays).
#[inline(always)]
pub fn zero_words<T>(target: *mut T) {
    const { assert!(core::mem::align_of::<T>() == 8 && core::mem::size_of::<T>().is_multiple_of(8)) };
    let words = target.cast::<u64>();
    let mut i = 0;
    while i < core::mem::size_of::<T>() / 8 {
        // SAFETY: `i` stays within `*target`, which is 8-aligned (checked above); volatile so
        // LLVM does not fold the stores back into a memset call.
        unsafe { core::ptr::write_volatile(words.add(i), 0) };
        i += 1;
    }
}

/// Copies `*source` to `*target` a 64-bit word at a time (for the same reason: a struct
/// assignment becomes a byte-at-a-time `memcpy` call, a loop the verifier walks byte by byte).
///
/// `T` must be 8-aligned and a multiple of 8 bytes (the flow structs).
#[inline(always)]
pub fn copy_words<T>(target: *mut T, source: *const T) {
    const { assert!(core::mem::align_of::<T>() == 8 && core::mem::size_of::<T>().is_multiple_of(8)) };
    let to = target.cast::<u64>();
    let from = source.cast::<u64>();
    let mut i = 0;
    while i < core::mem::size_of::<T>() / 8 {
        // SAFETY: `i` stays within both, which are 8-aligned (checked above) and do not
        // overlap (the callers copy between map values); volatile so LLVM keeps the words.
        unsafe { core::ptr::write_volatile(to.add(i), core::ptr::read_volatile(from.add(i))) };
        i += 1;
    }
}
