//! A child process in a process group of its own, waited on with a deadline: a guest (vng and the
//! qemu it forks) or a test binary (and the fwlog processes it starts) is killed whole when it runs
//! too long or the user interrupts xtask.

use std::{
    os::unix::process::CommandExt as _,
    process::{Child, Command, ExitStatus},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use nix::{
    errno::Errno,
    sys::signal::{killpg, Signal},
    unistd::Pid,
};

use crate::cmd;
/// Ctrl-C, SIGTERM and SIGHUP make [`wait`] kill its child's group and return, instead of
/// killing xtask and leaving a guest running in a group the terminal does not signal.
pub use crate::interrupt::{catch as catch_interrupts, interrupted};

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
