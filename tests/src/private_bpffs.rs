//! A mount namespace of the test's own with a fresh bpffs on /sys/fs/bpf: fwlog run in it sees
//! the test's pins only. Tests of orphan handling run there, so that neither a bug nor the
//! fwlog from before the fix can touch the pins of anything else running on the machine.

use std::{
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use anyhow::{bail, Context as _, Result};

use crate::fwlog::fwlog_bin;

/// The holder process of the mount namespace; dropping it kills the holder, and the namespace,
/// its bpffs and every pin in it go with it.
pub struct PrivateBpffs {
    holder: Child,
}

impl PrivateBpffs {
    pub fn new() -> Result<Self> {
        crate::require_root();
        // The copy of the mount table holds every `ip netns` namespace of the moment: unmount
        // those copies, so that this namespace keeps nobody else's network namespace alive.
        let script = "mount -t bpf bpf /sys/fs/bpf && \
                      for m in /run/netns/*; do umount -l \"$m\" 2>/dev/null; done; \
                      echo ready && exec sleep 600";
        let mut holder = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", script])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting unshare --mount (util-linux)")?;
        let stdout = holder.stdout.take().context("no stdout")?;
        let (ready_tx, ready) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = ready_tx.send(line);
        });
        let bpffs = PrivateBpffs { holder };
        match ready.recv_timeout(crate::patient(Duration::from_secs(10))) {
            Ok(line) if line.trim() == "ready" => Ok(bpffs),
            other => bail!("the private mount namespace did not start: {other:?}"),
        }
    }

    fn pid(&self) -> u32 {
        self.holder.id()
    }

    /// The private mount namespace, for `nsenter --mount`.
    pub fn mount_ns(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/mnt", self.pid()))
    }

    /// `/proc/PID/root` of the holder: paths under it are resolved in the private namespace
    /// (mounts made there, such as `unshare --net=FILE`, are visible only through it).
    pub fn root(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root", self.pid()))
    }

    /// `program`, in the private mount namespace and in the network namespace at `netns`.
    pub fn command(&self, netns: &Path, program: &str) -> Command {
        let mut command = Command::new("nsenter");
        command
            .arg(format!("--mount=/proc/{}/ns/mnt", self.pid()))
            .arg(format!("--net={}", netns.display()))
            .arg(program);
        command
    }

    /// `fwlog`, the same way, without the test's SSH session.
    pub fn fwlog(&self, netns: &Path) -> Command {
        let mut command = self.command(netns, &fwlog_bin().to_string_lossy());
        command.env_remove("SSH_CONNECTION");
        command
    }

    /// A shell command in the private mount namespace, in no particular network namespace.
    pub fn shell(&self, script: &str) -> Result<String> {
        let output = Command::new("nsenter")
            .arg(format!("--mount=/proc/{}/ns/mnt", self.pid()))
            .args(["sh", "-c", script])
            .output()
            .context("running nsenter")?;
        if !output.status.success() {
            bail!(
                "{script:?} failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// `/sys/fs/bpf/fwlog/INODE` as seen from the host, through the holder's root.
    pub fn pin_dir(&self, inode: u64) -> PathBuf {
        self.root().join(format!("sys/fs/bpf/fwlog/{inode}"))
    }
}

impl Drop for PrivateBpffs {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}
