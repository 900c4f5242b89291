//! fwlog's eBPF object: one file per hook, maps in `maps`.
#![no_std]
#![no_main]

mod maps;
mod skb;
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
