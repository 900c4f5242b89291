//! Empty host-side library: lets `fwlog`'s build script depend on this crate so cargo rebuilds the
//! eBPF object when it changes. The programs themselves are in the `fwlog` binary (main.rs).
#![no_std]
