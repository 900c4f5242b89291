//! The Debian root booted with systemd (`systemd-nspawn -b`), and commands run in it through
//! its init's namespaces. Drop powers it off (or kills it) and waits.

use std::{
    fs::File,
    path::PathBuf,
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use fwlog_tests::NetNsGuard;
use nix::{
    sys::signal::{kill, Signal},
    unistd::Pid,
};

use crate::{checked, Root};

/// How long the boot may take, until `systemctl is-system-running` says running.
const BOOT_TIMEOUT: Duration = Duration::from_secs(90);
const POWEROFF_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Booted {
    nspawn: Option<Child>,
    /// The container's PID 1 (systemd), as this machine numbers it.
    init: Pid,
    console: PathBuf,
}

impl Booted {
    /// Boots `root` in `netns` and waits until systemd has started everything.
    pub fn boot(root: &Root, netns: &NetNsGuard) -> Result<Self> {
        let console = root.path("/var/tmp/console.log");
        let log = File::create(&console).context("creating the console log")?;
        let nspawn = root
            .nspawn(netns)
            .args(["--boot", "--console=pipe"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting systemd-nspawn --boot (apt-get install systemd-container)")?;
        let nspawn_pid = nspawn.id();
        let mut booted = Booted {
            nspawn: Some(nspawn),
            init: Pid::from_raw(0),
            console,
        };
        let deadline = Instant::now() + BOOT_TIMEOUT;
        let mut state = String::from("(no init yet)");
        while Instant::now() < deadline {
            if let Some(status) = booted
                .nspawn
                .as_mut()
                .and_then(|c| c.try_wait().ok())
                .flatten()
            {
                bail!(
                    "systemd-nspawn exited ({status}) while booting: {}",
                    booted.console_text()
                );
            }
            if booted.init.as_raw() == 0 {
                if let Some(init) = first_child(nspawn_pid) {
                    booted.init = init;
                }
            } else if let Ok(output) = booted.exec("systemctl is-system-running") {
                state = String::from_utf8_lossy(&output.stdout).trim().to_string();
                if state == "running" {
                    return Ok(booted);
                }
                if state == "degraded" {
                    let failed = booted.exec("systemctl --failed --no-pager")?;
                    bail!(
                        "the container booted degraded: {}",
                        String::from_utf8_lossy(&failed.stdout)
                    );
                }
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        bail!(
            "the container did not finish booting within {BOOT_TIMEOUT:?} (state {state}): {}",
            booted.console_text()
        )
    }

    /// Runs `script` with /bin/sh in the container (all of its init's namespaces).
    pub fn exec(&self, script: &str) -> Result<Output> {
        Command::new("nsenter")
            .arg(format!("--target={}", self.init))
            .args(["--mount", "--uts", "--ipc", "--net", "--pid", "--cgroup"])
            .args(["/bin/sh", "-c", script])
            .stdin(Stdio::null())
            .output()
            .context("running nsenter")
    }

    /// [`Booted::exec`] that fails unless `script` succeeds; returns its stdout.
    pub fn exec_ok(&self, script: &str) -> Result<String> {
        checked(
            &format!("`{script}` in the booted container"),
            self.exec(script)?,
        )
    }

    /// What the container printed on its console.
    pub fn console_text(&self) -> String {
        std::fs::read_to_string(&self.console).unwrap_or_default()
    }

    /// Powers the container off and waits for systemd-nspawn to exit.
    pub fn power_off(&mut self) -> Result<()> {
        let Some(mut nspawn) = self.nspawn.take() else {
            return Ok(());
        };
        let _ = self.exec("systemctl poweroff");
        let deadline = Instant::now() + POWEROFF_TIMEOUT;
        while Instant::now() < deadline {
            if nspawn
                .try_wait()
                .context("waiting for systemd-nspawn")?
                .is_some()
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // Killing the init of a PID namespace kills every process in it.
        let _ = kill(self.init, Signal::SIGKILL);
        let _ = nspawn.kill();
        let _ = nspawn.wait();
        bail!("the container did not power off within {POWEROFF_TIMEOUT:?}; killed it")
    }
}

impl Drop for Booted {
    fn drop(&mut self) {
        if let Err(error) = self.power_off() {
            if !std::thread::panicking() {
                eprintln!("warning: {error:#}");
            }
        }
    }
}

/// The first child of `pid`: systemd-nspawn's is the container's init.
fn first_child(pid: u32) -> Option<Pid> {
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
    let child: i32 = children.split_whitespace().next()?.parse().ok()?;
    Some(Pid::from_raw(child))
}
