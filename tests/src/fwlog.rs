//! A running `fwlog watch`: its JSON lines, its messages, and its end.

use std::{
    io::{BufRead as _, BufReader},
    path::PathBuf,
    process::{Child, Command, ExitStatus, Stdio},
    sync::{
        mpsc::{self, Receiver, RecvTimeoutError},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Context as _, Result};
use nix::{
    sys::signal::{kill, Signal},
    unistd::Pid,
};
use serde_json::Value;

use crate::NetNsGuard;

/// How long fwlog gets to load, install and print that it is watching.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// What fwlog says when it gives connectionless flows a grace, and when the grace ends.
const GRACE_STARTS: &str = "connectionless (UDP, …) attempts are accepted and logged for";
const GRACE_ENDS: &str = "fwlog: the policy applies to new connectionless attempts too";
/// How long a test waits for an event it expects.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(5);

/// The fwlog binary under test: `FWLOG_BIN` (set by `cargo xtask test`), else the workspace's
/// debug build.
pub fn fwlog_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("FWLOG_BIN") {
        return PathBuf::from(path);
    }
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/debug/fwlog");
    assert!(
        path.exists(),
        "no fwlog binary at {}: build it with `cargo xtask build` or run `cargo xtask test`",
        path.display()
    );
    path
}

/// `fwlog ARGS` run to completion in `netns`.
pub fn fwlog_command(netns: &NetNsGuard) -> Command {
    let mut command = netns.command(fwlog_bin());
    // The SSH guard reads SSH_CONNECTION: tests that want it set it themselves.
    command
        .env("RUST_BACKTRACE", "1")
        .env_remove("SSH_CONNECTION");
    command
}

/// A `fwlog watch` child. Drop kills it if it still runs and removes what it installed.
pub struct Fwlog {
    child: Option<Child>,
    events: Receiver<Value>,
    stderr: Arc<Mutex<Vec<String>>>,
    ready: Receiver<()>,
    netns_path: PathBuf,
    mount_ns: Option<PathBuf>,
    /// Lines that were read but not matched yet.
    seen: Vec<Value>,
}

impl Fwlog {
    /// Starts `fwlog watch ARGS` in `netns` and waits until it says it is watching.
    pub fn watch(netns: &NetNsGuard, args: &[&str]) -> Result<Self> {
        Self::watch_with_env(netns, args, &[])
    }

    /// [`Fwlog::watch`] with extra environment variables.
    pub fn watch_with_env(netns: &NetNsGuard, args: &[&str], env: &[(&str, &str)]) -> Result<Self> {
        let mut command = fwlog_command(netns);
        command.arg("watch").args(args).envs(env.iter().copied());
        let mut fwlog = Self::start(command, netns.path(), None)?;
        fwlog.wait_until_watching()?;
        Ok(fwlog)
    }

    /// Starts `command` (a `fwlog watch` or `install` in the network namespace at `netns_path`,
    /// and in the mount namespace at `mount_ns` if given, where drop runs its uninstall)
    /// without waiting for it to say anything.
    pub fn start(
        mut command: Command,
        netns_path: PathBuf,
        mount_ns: Option<PathBuf>,
    ) -> Result<Self> {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting fwlog")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let stderr = child.stderr.take().context("no stderr")?;
        let (event_tx, events) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let value = serde_json::from_str::<Value>(&line).unwrap_or_else(|e| {
                    panic!("fwlog printed a line that is not JSON ({e}): {line}")
                });
                if event_tx.send(value).is_err() {
                    break;
                }
            }
        });
        let messages = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready) = mpsc::channel();
        let sink = Arc::clone(&messages);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.starts_with("fwlog: watching") {
                    let _ = ready_tx.send(());
                }
                if let Ok(mut lines) = sink.lock() {
                    lines.push(line);
                }
            }
        });
        Ok(Fwlog {
            child: Some(child),
            events,
            stderr: messages,
            ready,
            netns_path,
            mount_ns,
            seen: Vec::new(),
        })
    }

    /// Waits until fwlog says it is watching and, if it gave connectionless flows a grace,
    /// until the policy applies to them too; kills it if that does not happen within
    /// [`START_TIMEOUT`] each (stretched by [`crate::slowdown`]).
    pub fn wait_until_watching(&mut self) -> Result<()> {
        match self.ready.recv_timeout(crate::patient(START_TIMEOUT)) {
            Ok(()) if self.stderr_text().contains(GRACE_STARTS) => {
                self.wait_for_message(GRACE_ENDS, START_TIMEOUT)
            }
            Ok(()) => Ok(()),
            Err(_) => {
                let status = self.stop(Signal::SIGKILL)?;
                bail!(
                    "fwlog watch did not start ({status}): {}",
                    self.stderr_text()
                )
            }
        }
    }

    /// Waits (bounded, stretched by [`crate::slowdown`]) until fwlog has said a line containing `text`.
    pub fn wait_for_message(&self, text: &str, timeout: Duration) -> Result<()> {
        let timeout = crate::patient(timeout);
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.stderr_text().contains(text) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!(
            "fwlog did not say {text:?} within {timeout:?}: {}",
            self.stderr_text()
        )
    }

    /// Waits for the first event (in order of arrival) that `matches`, keeping the others.
    pub fn expect_event(&mut self, what: &str, matches: impl Fn(&Value) -> bool) -> Result<Value> {
        if let Some(i) = self.seen.iter().position(&matches) {
            return Ok(self.seen.remove(i));
        }
        let timeout = crate::patient(EVENT_TIMEOUT);
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(event) if matches(&event) => return Ok(event),
                Ok(event) => self.seen.push(event),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
                    return Err(anyhow!(
                        "no event {what} within {timeout:?}; events: {:#?}; fwlog said: {}",
                        self.seen,
                        self.stderr_text()
                    ))
                }
            }
        }
    }

    /// Every event that arrives within `quiet` of the previous one (or of the call).
    pub fn collect_events(&mut self, quiet: Duration) -> Vec<Value> {
        let mut events = std::mem::take(&mut self.seen);
        let quiet = crate::patient(quiet);
        while let Ok(event) = self.events.recv_timeout(quiet) {
            events.push(event);
        }
        events
    }

    pub fn pid(&self) -> Option<Pid> {
        self.child.as_ref().map(|c| Pid::from_raw(c.id() as i32))
    }

    /// Sends `signal` and waits (bounded) for fwlog to exit.
    pub fn stop(&mut self, signal: Signal) -> Result<ExitStatus> {
        let mut child = self.child.take().context("fwlog already stopped")?;
        kill(Pid::from_raw(child.id() as i32), signal).context("signalling fwlog")?;
        let timeout = crate::patient(Duration::from_secs(15));
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().context("waiting for fwlog")? {
                // Let the reader threads catch the last lines.
                std::thread::sleep(Duration::from_millis(100));
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("fwlog did not exit within {timeout:?} of {signal}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits (bounded, stretched by [`crate::slowdown`]) for fwlog to exit by itself.
    pub fn wait(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let child = self.child.as_mut().context("fwlog already stopped")?;
        let timeout = crate::patient(timeout);
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().context("waiting for fwlog")? {
                std::thread::sleep(Duration::from_millis(100));
                self.child = None;
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!(
                    "fwlog did not exit within {timeout:?}: {}",
                    self.stderr_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn stderr_text(&self) -> String {
        self.stderr
            .lock()
            .map(|lines| lines.join("\n"))
            .unwrap_or_default()
    }
}

impl Drop for Fwlog {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            let mut uninstall = Command::new("nsenter");
            if let Some(mount_ns) = &self.mount_ns {
                uninstall.arg(format!("--mount={}", mount_ns.display()));
            }
            let _ = uninstall
                .arg(format!("--net={}", self.netns_path.display()))
                .arg(fwlog_bin())
                .arg("uninstall")
                .output();
        }
    }
}

/// Whether JSON line `line` is a flow record to `dest_port`.
pub fn is_flow_to(line: &Value, dest_port: u16) -> bool {
    line["event_type"] == "flow" && line["dest_port"] == dest_port
}

/// A JSON number that must be there.
pub fn number(value: &Value) -> u64 {
    value
        .as_u64()
        .unwrap_or_else(|| panic!("not a number: {value}"))
}
