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

/// The network namespace this process runs in: its inode number, which names its pin directory
/// and lock but which the kernel reuses once the namespace is gone, and its cookie, which the
/// kernel never reuses during a boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetNs {
    pub inode: u64,
    /// `SO_NETNS_COOKIE` (Linux 5.14+); `None` on older kernels.
    pub cookie: Option<u64>,
}

impl NetNs {
    pub fn current() -> Result<Self> {
        let metadata = fs::metadata("/proc/self/ns/net")
            .context("reading /proc/self/ns/net (is /proc mounted?)")?;
        Ok(NetNs {
            inode: metadata.ino(),
            cookie: netns_cookie(),
        })
    }

    /// Where this namespace's programs are pinned: `/sys/fs/bpf/fwlog/<netns inode>`.
    pub fn pin_dir(&self) -> PathBuf {
        Path::new(PIN_ROOT).join(self.inode.to_string())
    }

    fn lock_path(&self) -> PathBuf {
        Path::new(RUN_DIR).join(format!("{}.lock", self.inode))
    }

    /// How to run `fwlog COMMAND` again for this namespace: through `nsenter --net` when `ip
    /// netns` names it (`ip netns exec` would hide bpffs).
    pub fn run_hint(&self, command: &str) -> String {
        match self.named() {
            Some(path) => format!("`nsenter --net={} fwlog {command}`", path.display()),
            None => format!("`fwlog {command}` in this network namespace"),
        }
    }

    /// `/run/netns/NAME` when this process runs under `ip netns exec NAME`, which gives it a
    /// fresh /sys (without bpffs) mounted with NAME as its source (iproute2's netns_switch).
    pub fn ip_netns_exec(&self) -> Option<PathBuf> {
        let named = self.named()?;
        let name = named.file_name()?.to_str()?;
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").ok()?;
        mountinfo
            .lines()
            .any(|line| sys_mounted_from(line) == Some(name))
            .then_some(named)
    }

    /// `/run/netns/NAME` (or `/var/run/netns/NAME`) when one is this namespace.
    pub fn named(&self) -> Option<PathBuf> {
        ["/run/netns", "/var/run/netns"].iter().find_map(|dir| {
            fs::read_dir(dir)
                .ok()?
                .filter_map(|entry| entry.ok())
                .map(|entry| entry.path())
                .find(|path| {
                    fs::metadata(path).is_ok_and(|m| m.ino() == self.inode && m.dev() != 0)
                        && is_nsfs(path)
                })
        })
    }
}

/// The source of a mountinfo line's sysfs mounted on /sys.
fn sys_mounted_from(line: &str) -> Option<&str> {
    let (mount, filesystem) = line.split_once(" - ")?;
    if mount.split_whitespace().nth(4)? != "/sys" {
        return None;
    }
    let mut filesystem = filesystem.split_whitespace();
    (filesystem.next()? == "sysfs")
        .then(|| filesystem.next())
        .flatten()
}

/// Whether `path` is a namespace file (a bind mount of nsfs), not a leftover regular file.
fn is_nsfs(path: &Path) -> bool {
    const NSFS_MAGIC: i64 = 0x6e73_6673;
    nix::sys::statfs::statfs(path).is_ok_and(|s| s.filesystem_type().0 == NSFS_MAGIC)
}

/// `SO_NETNS_COOKIE` of any socket: the cookie of the namespace it was made in.
fn netns_cookie() -> Option<u64> {
    use std::os::fd::AsRawFd as _;
    let socket = std::os::unix::net::UnixDatagram::unbound().ok()?;
    let mut cookie: u64 = 0;
    let mut length = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `length` bytes into `cookie`, which lives on our stack.
    let ret = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_NETNS_COOKIE,
            (&mut cookie as *mut u64).cast(),
            &mut length,
        )
    };
    (ret == 0 && length as usize == std::mem::size_of::<u64>()).then_some(cookie)
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

#[cfg(test)]
mod tests {
    #[test]
    fn recognises_the_sysfs_of_ip_netns_exec() {
        let exec = "55 52 0:43 / /sys rw,relatime - sysfs st-q rw";
        assert_eq!(super::sys_mounted_from(exec), Some("st-q"));
        let host = "22 28 0:20 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw";
        assert_eq!(super::sys_mounted_from(host), Some("sysfs"));
        let bpf = "30 22 0:27 / /sys/fs/bpf rw - bpf bpf rw";
        assert_eq!(super::sys_mounted_from(bpf), None);
    }
}
