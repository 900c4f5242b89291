//! A child process in a process group of its own, waited on with a deadline: a guest (vng and the
//! qemu it forks) or a test binary (and the fwlog processes it starts) is killed whole when it runs
//! too long or the user interrupts xtask.

use std::{
    os::unix::process::CommandExt as _,
    process::{Child, Command, ExitStatus},
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use nix::{
    errno::Errno,
    sys::signal::{killpg, sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal},
    unistd::Pid,
};

use crate::cmd;

/// Set by Ctrl-C, SIGTERM or SIGHUP once [`catch_interrupts`] ran.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// How often a waiting loop looks at the child and the deadline.
const POLL: Duration = Duration::from_millis(200);

/// How a waited-on child ended.
#[derive(Debug)]
pub enum Ending {
    Exited(ExitStatus),
    /// Killed at the deadline.
    TimedOut,
    /// Killed because xtask was interrupted.
    Interrupted,
}

extern "C" fn on_interrupt(_signal: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
}

/// Ctrl-C, SIGTERM and SIGHUP make [`wait`] kill its child's group and return, instead of
/// killing xtask and leaving a guest running in a group the terminal does not signal.
pub fn catch_interrupts() -> Result<()> {
    let action = SigAction::new(
        SigHandler::Handler(on_interrupt),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { sigaction(signal, &action) }.with_context(|| format!("catching {signal}"))?;
    }
    Ok(())
}

pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::Relaxed)
}

/// Starts `command` as the leader of a new process group.
pub fn spawn(command: &mut Command) -> Result<Child> {
    command
        .process_group(0)
        .spawn()
        .with_context(|| format!("could not start `{}`", cmd::describe(command)))
}

/// Waits for `child` until `timeout`; kills its whole group at the deadline or on an interrupt.
pub fn wait(child: &mut Child, timeout: Duration) -> Result<Ending> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().context("checking on a child process")? {
            return Ok(Ending::Exited(status));
        }
        let ending = if interrupted() {
            Ending::Interrupted
        } else if Instant::now() >= deadline {
            Ending::TimedOut
        } else {
            std::thread::sleep(POLL);
            continue;
        };
        kill_group(child)?;
        return Ok(ending);
    }
}

/// SIGKILL to the child's process group, then reaps the child.
fn kill_group(child: &mut Child) -> Result<()> {
    let group = Pid::from_raw(i32::try_from(child.id()).context("a pid beyond i32")?);
    match killpg(group, Signal::SIGKILL) {
        // ESRCH: the group is gone already.
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(error) => return Err(error).context("killing a child's process group"),
    }
    child.wait().context("reaping a killed child")?;
    Ok(())
}
