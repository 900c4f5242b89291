//! A network namespace made for a test or a bench run (`ip netns add`), deleted when its guard
//! is dropped, also on error or panic, with what those look at inside it (fwlog's pins, the
//! rules): the one fixture fwlog's kernel tests and `cargo xtask bench` share. (fwlog's own
//! `netns.rs` is another thing: the namespace fwlog runs in, which names its pins and lock.)

use std::{
    ffi::OsStr,
    fs::File,
    io::Write as _,
    marker::PhantomData,
    os::unix::fs::MetadataExt as _,
    path::PathBuf,
    process::{Command, Output, Stdio},
    thread::JoinHandle,
};

use anyhow::{bail, Context as _, Result};
use nix::sched::{setns, CloneFlags};

/// A network namespace, deleted on drop. Not `Send`: it stays with the thread that made it;
/// threads that work inside it enter it through [`NetNsGuard::spawn_inside`].
pub struct NetNsGuard {
    name: String,
    _not_send: PhantomData<*const ()>,
}

impl NetNsGuard {
    /// `ip netns add NAME`. The caller picks a name no one else uses (a prefix of its own and
    /// its pid, say), short enough for the interface names derived from it.
    pub fn create(name: impl Into<String>) -> Result<Self> {
        let name = name.into();
        run(Command::new("ip").args(["netns", "add", &name])).with_context(|| {
            format!("creating network namespace {name} (is iproute2 installed, and are we root?)")
        })?;
        Ok(NetNsGuard {
            name,
            _not_send: PhantomData,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `/run/netns/NAME`.
    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    /// The namespace's inode number (fwlog names its pin directory and lock after it).
    pub fn inode(&self) -> u64 {
        std::fs::metadata(self.path()).map_or(0, |m| m.ino())
    }

    /// fwlog's pin directory for this namespace (`/sys/fs/bpf/fwlog/INODE`).
    pub fn pin_dir(&self) -> PathBuf {
        PathBuf::from("/sys/fs/bpf/fwlog").join(self.inode().to_string())
    }

    /// `iptables-save` and `ip6tables-save` of the filter table, without comments and counters.
    pub fn saved_rules(&self) -> Result<String> {
        let mut saved = String::new();
        for command in ["iptables-save", "ip6tables-save"] {
            let out = self.output(command, &["-t", "filter"])?;
            for line in out.lines().filter(|l| !l.starts_with('#')) {
                saved.push_str(line);
                saved.push('\n');
            }
        }
        Ok(saved)
    }

    /// `program` run inside the namespace. `nsenter --net` (unlike `ip netns exec`) keeps the
    /// mount namespace, so the program sees the same bpffs and fwlog's pins; nsenter execs
    /// `program`, so the child's pid is the program's.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut command = Command::new("nsenter");
        command
            .arg(format!("--net={}", self.path().display()))
            .arg(program);
        command
    }

    /// Runs `program ARGS` inside the namespace and returns its stdout; fails with its stderr.
    pub fn output(&self, program: &str, args: &[&str]) -> Result<String> {
        let output = run(self.command(program).args(args))?;
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Runs `program ARGS` inside the namespace with `input` on its standard input.
    pub fn run_with_input(&self, program: &str, args: &[&str], input: &str) -> Result<()> {
        let mut command = self.command(program);
        command
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .with_context(|| format!("could not start {command:?}"))?;
        let written = child
            .stdin
            .take()
            .context("no standard input")
            .and_then(|mut stdin| {
                stdin
                    .write_all(input.as_bytes())
                    .context("writing standard input")
            });
        let output = child
            .wait_with_output()
            .with_context(|| format!("waiting for {command:?}"))?;
        if !output.status.success() {
            bail!(
                "{command:?} failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        written.with_context(|| format!("feeding {command:?}"))
    }

    /// Runs `work` on a new thread that has entered this namespace: sockets it opens stay there.
    pub fn spawn_inside<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T> + Send + 'static,
    ) -> Result<JoinHandle<Result<T>>> {
        let namespace = File::open(self.path())
            .with_context(|| format!("opening {}", self.path().display()))?;
        let name = self.name.clone();
        std::thread::Builder::new()
            .name(format!("in {name}"))
            .spawn(move || {
                setns(&namespace, CloneFlags::CLONE_NEWNET)
                    .with_context(|| format!("entering network namespace {name}"))?;
                work()
            })
            .context("starting a thread")
    }

    /// Runs `work` inside the namespace (on a thread that entered it) and waits for it.
    pub fn enter<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> Result<T> {
        let handle = self.spawn_inside(move || Ok(work()))?;
        match handle.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

impl Drop for NetNsGuard {
    fn drop(&mut self) {
        let deleted = run(Command::new("ip").args(["netns", "del", &self.name]));
        if let Err(error) = deleted {
            if !std::thread::panicking() {
                eprintln!(
                    "warning: {error:#}; delete it with `ip netns del {}`",
                    self.name
                );
            }
        }
    }
}

/// Runs `command` and fails, with its stderr, unless it succeeds.
pub fn run(command: &mut Command) -> Result<Output> {
    let output = command
        .output()
        .with_context(|| format!("running {command:?}"))?;
    if !output.status.success() {
        bail!(
            "{command:?} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(output)
}
