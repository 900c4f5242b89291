//! Run: build fwlog and run it as root, passing on its arguments, Ctrl-C and exit code.

use std::{
    ffi::OsString,
    os::unix::process::ExitStatusExt as _,
    process::{Command, ExitCode, ExitStatus},
};

use anyhow::{Context as _, Result};
use clap::Args;
use nix::{
    sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal},
    unistd::geteuid,
};

use crate::{build, cmd, setup};

#[derive(Args)]
pub struct Options {
    /// Build and run the release profile.
    #[arg(long)]
    release: bool,
    /// Arguments for fwlog, after `--`.
    #[arg(last = true)]
    args: Vec<OsString>,
}

/// `cargo xtask run`: returns fwlog's own exit code.
pub fn run(options: Options) -> Result<ExitCode> {
    setup::prepare(setup::Report::ChangesOnly)?;
    let fwlog = build::build_fwlog(options.release)?;

    let mut command = if geteuid().is_root() {
        Command::new(&fwlog)
    } else {
        // Loading eBPF programs and changing iptables rules need root.
        eprintln!("not root: running fwlog through sudo");
        let mut sudo = Command::new("sudo");
        sudo.arg(&fwlog);
        sudo
    };
    command.args(&options.args);

    let mut child = command
        .spawn()
        .with_context(|| format!("could not start `{}`", cmd::describe(&command)))?;
    // fwlog shares our process group, so Ctrl-C reaches it directly; ignore it here so that xtask
    // outlives fwlog's cleanup and reports its exit code. Only after spawn: an ignored signal would be
    // inherited across exec.
    let status = {
        // Failing to ignore SIGINT must not orphan fwlog: warn and wait all the same.
        let _sigint = SigintIgnored::new()
            .inspect_err(|error| eprintln!("warning: {error:#}; Ctrl-C may end xtask before fwlog"))
            .ok();
        child.wait()
    }
    .context("waiting for fwlog failed")?;
    Ok(exit_code(status))
}

/// The exit code a shell would show: the child's own, or 128 + the signal that killed it.
fn exit_code(status: ExitStatus) -> ExitCode {
    let code = status
        .code()
        .or_else(|| status.signal().map(|signal| 128 + signal))
        .unwrap_or(1);
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// SIGINT ignored in this process until dropped, then restored to what it was.
struct SigintIgnored {
    previous: SigAction,
}

impl SigintIgnored {
    fn new() -> Result<Self> {
        let ignore = SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty());
        // SAFETY: SIG_IGN installs no handler code, so nothing runs in signal context.
        let previous = unsafe { sigaction(Signal::SIGINT, &ignore) }
            .context("cannot ignore SIGINT while fwlog runs")?;
        Ok(Self { previous })
    }
}

impl Drop for SigintIgnored {
    fn drop(&mut self) {
        // SAFETY: restores the disposition saved in `new`, which was valid when it was installed.
        // Failure only leaves SIGINT ignored in a process that is about to exit.
        let _ = unsafe { sigaction(Signal::SIGINT, &self.previous) };
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt as _;

    use super::*;

    #[test]
    fn exit_code_is_the_childs_or_128_plus_its_signal() {
        // Raw wait statuses: exit code in bits 8..16, terminating signal in the low bits.
        assert_eq!(exit_code(ExitStatus::from_raw(3 << 8)), ExitCode::from(3));
        assert_eq!(exit_code(ExitStatus::from_raw(2)), ExitCode::from(130));
    }
}
