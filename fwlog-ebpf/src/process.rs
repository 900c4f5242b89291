//! cgroup socket-address hooks on the root cgroup: they run in the process that calls
//! connect() (TCP, connected UDP) or sendmsg() (unconnected UDP) and record who it is under the
//! socket's cookie, which the netfilter and tc programs can read from a packet. They never
//! change anything: they always allow the call.

use aya_ebpf::{
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid,
        bpf_get_current_uid_gid, bpf_get_socket_cookie,
    },
    macros::cgroup_sock_addr,
    programs::SockAddrContext,
};
use fwlog_common::process::ProcessInfo;

use crate::maps::SOCKETS;

/// The verdict of a cgroup/sock_addr program that lets the call proceed.
const ALLOW: i32 = 1;

#[cgroup_sock_addr(connect4)]
pub fn process_connect4(ctx: SockAddrContext) -> i32 {
    remember_process(&ctx);
    ALLOW
}

#[cgroup_sock_addr(connect6)]
pub fn process_connect6(ctx: SockAddrContext) -> i32 {
    remember_process(&ctx);
    ALLOW
}

#[cgroup_sock_addr(sendmsg4)]
pub fn process_sendmsg4(ctx: SockAddrContext) -> i32 {
    remember_process(&ctx);
    ALLOW
}

#[cgroup_sock_addr(sendmsg6)]
pub fn process_sendmsg6(ctx: SockAddrContext) -> i32 {
    remember_process(&ctx);
    ALLOW
}

#[inline(always)]
fn remember_process(ctx: &SockAddrContext) {
    // SAFETY: helper calls on the program's own context or on the current task.
    let (cookie, pid_tgid, uid_gid, cgroup_id) = unsafe {
        (
            bpf_get_socket_cookie(ctx.sock_addr.cast()),
            bpf_get_current_pid_tgid(),
            bpf_get_current_uid_gid(),
            bpf_get_current_cgroup_id(),
        )
    };
    let info = ProcessInfo {
        pid: (pid_tgid >> 32) as u32,
        uid: uid_gid as u32,
        gid: (uid_gid >> 32) as u32,
        _pad: 0,
        cgroup_id,
        comm: bpf_get_current_comm().unwrap_or_default(),
    };
    let _ = SOCKETS.insert(&cookie, &info, 0);
}
