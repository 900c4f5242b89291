//! fwlog's eBPF object: one file per hook, maps in `maps`.
#![no_std]
#![no_main]
// Atomic read-modify-write on map values (see atomic.rs).
#![allow(internal_features)]
#![feature(core_intrinsics)]
// Map keys and values go to the map helpers by reference on purpose: by value (as clippy
// suggests for `impl Borrow<K>` arguments) they would be copied onto the 512-byte eBPF stack.
#![allow(clippy::needless_borrows_for_generic_args)]

mod atomic;
mod entries;
mod fast_path;
mod flow;
mod liveness;
mod maps;
mod memory;
mod process;
mod proposal;
mod skb;
mod tcp;
mod verdict;

// A reachable panic must fail verification loudly, so it loops instead of being "unreachable".
#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

/// GPL-compatible, so the kernel lets the programs call every helper they need.
#[link_section = "license"]
#[no_mangle]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
