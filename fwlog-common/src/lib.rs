//! What fwlog's kernel and user sides agree on: event layouts, constants and pure packet parsing.
#![no_std]

pub mod counters;
pub mod dns;
pub mod event;
pub mod flow;
pub mod flow_filter;
pub mod packet;
pub mod process;
pub mod programs;
pub mod tcp_seq;

#[cfg(feature = "user")]
extern crate std;
