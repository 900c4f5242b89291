//! `netns_alive`: an sk_lookup program that does nothing. User space attaches it to the network
//! namespace it installs in and pins the link: the kernel clears the link's namespace when the
//! namespace exits (kernel/bpf/net_namespace.c, `netns_bpf_pernet_pre_exit`), and the link holds
//! no reference on it, so the pin tells any later fwlog whether that namespace is still alive.

use aya_ebpf::{bindings::sk_action::SK_PASS, macros::sk_lookup, programs::SkLookupContext};

/// Lets every lookup go on as if no program were attached.
#[sk_lookup]
pub fn netns_alive(_ctx: SkLookupContext) -> u32 {
    SK_PASS
}
