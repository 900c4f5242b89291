//! Where one fwlog instance keeps its state: per network namespace, so instances in different
//! namespaces (parallel tests, containers) never collide.

use std::{
    fs::{self, File, OpenOptions},
    io::{Read as _, Seek as _, Write as _},
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

use anyhow::{bail, Context as _, Result};
use nix::fcntl::{Flock, FlockArg};

/// bpffs mount point.
pub const BPFFS: &str = "/sys/fs/bpf";
/// Directory under bpffs holding one directory of pins per network namespace.
pub const PIN_ROOT: &str = "/sys/fs/bpf/fwlog";
/// Directory holding the per-namespace lock files.
pub const RUN_DIR: &str = "/run/fwlog";

/// The network namespace this process runs in, named by its inode number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetNs {
    pub inode: u64,
}

impl NetNs {
    pub fn current() -> Result<Self> {
        let metadata = fs::metadata("/proc/self/ns/net")
            .context("reading /proc/self/ns/net (is /proc mounted?)")?;
        Ok(NetNs {
            inode: metadata.ino(),
        })
    }

    /// Where this namespace's programs are pinned: `/sys/fs/bpf/fwlog/<netns inode>`.
    pub fn pin_dir(&self) -> PathBuf {
        Path::new(PIN_ROOT).join(self.inode.to_string())
    }

    fn lock_path(&self) -> PathBuf {
        Path::new(RUN_DIR).join(format!("{}.lock", self.inode))
    }
}

/// Held while an fwlog instance owns the namespace's rules and pins. The kernel releases the
/// lock when the process dies, whatever kills it.
pub struct InstanceLock {
    path: PathBuf,
    _lock: Flock<File>,
}

impl InstanceLock {
    pub fn acquire(netns: NetNs) -> Result<Self> {
        fs::create_dir_all(RUN_DIR).with_context(|| format!("creating {RUN_DIR}"))?;
        let path = netns.lock_path();
        loop {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .with_context(|| format!("opening {}", path.display()))?;
            let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(lock) => lock,
                Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => {
                    let mut holder = String::new();
                    let _ = file.read_to_string(&mut holder);
                    bail!(
                        "another fwlog is already running in this network namespace (pid {}): \
                         stop it first, or run this one in another namespace",
                        holder.trim()
                    );
                }
                Err((_, errno)) => {
                    return Err(errno).with_context(|| format!("locking {}", path.display()))
                }
            };
            // An instance that was exiting may have removed the file between our open and our
            // lock; then we hold a lock nobody else can see, so start again.
            let locked_inode = lock.metadata().map(|m| m.ino()).ok();
            let current_inode = fs::metadata(&path).map(|m| m.ino()).ok();
            if locked_inode.is_none() || locked_inode != current_inode {
                continue;
            }
            lock.set_len(0).context("truncating the lock file")?;
            lock.rewind().context("rewinding the lock file")?;
            write!(lock, "{}", std::process::id()).context("writing the lock file")?;
            return Ok(InstanceLock { path, _lock: lock });
        }
    }
}

/// The pid written in the lock file, while some instance holds the lock.
pub fn lock_holder(netns: NetNs) -> Option<String> {
    let path = netns.lock_path();
    let file = File::open(&path).ok()?;
    match Flock::lock(file, FlockArg::LockSharedNonblock) {
        // Nobody holds it: the file is a leftover of an instance that just exited.
        Ok(_) => None,
        Err((mut file, _)) => {
            let mut pid = String::new();
            file.read_to_string(&mut pid).ok()?;
            Some(pid.trim().to_string())
        }
    }
}

impl Drop for InstanceLock {
    fn drop(&mut self) {
        // Removed while still locked, so a starting instance either sees our lock or no file.
        let _ = fs::remove_file(&self.path);
    }
}
