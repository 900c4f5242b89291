//! The network namespaces something visibly holds: a process or thread in it, an open file of
//! it, or a mount of it (`ip netns add`, `unshare --net=FILE`, a container runtime's bind mount),
//! in any mount namespace a process is in. Used only for pin directories without a namespace
//! link (kernels before 5.9, fwlog versions before records): it can prove a namespace gone only
//! when it saw everything, and it says what it could not see.
//!
//! A namespace held only by a socket (made there, then passed to a process elsewhere) escapes
//! it; the namespace link does not.

use std::{collections::HashSet, fs, io::ErrorKind, os::unix::fs::MetadataExt as _, path::Path};

/// `PROC_PID_INIT_INO` (include/linux/proc_ns.h): the initial PID namespace's inode. Outside
/// it, `/proc` shows only part of the machine's processes.
const INITIAL_PID_NAMESPACE: u64 = 0xEFFF_FFFC;

#[derive(Debug, Default)]
pub struct LiveNamespaces {
    pub inodes: HashSet<u64>,
    /// Why some holders may be out of sight, if they may be.
    pub blind_spot: Option<String>,
}

impl LiveNamespaces {
    pub fn scan() -> Self {
        let mut live = LiveNamespaces::default();
        match fs::metadata("/proc/self/ns/pid") {
            Ok(pid_ns) if pid_ns.ino() == INITIAL_PID_NAMESPACE => {}
            _ => {
                live.blind_spot = Some(
                    "fwlog runs in a PID namespace of its own (a container?) and cannot see \
                     every process"
                        .to_string(),
                )
            }
        }
        let Ok(processes) = fs::read_dir("/proc") else {
            live.blind_spot = Some("/proc cannot be read".to_string());
            return live;
        };
        let mut mount_namespaces = HashSet::new();
        for process in processes.filter_map(|p| p.ok()) {
            let name = process.file_name();
            let Some(pid) = name
                .to_str()
                .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
            else {
                continue;
            };
            let dir = process.path();
            live.add_threads(pid, &dir);
            live.add_open_files(&dir);
            if let Ok(mount_ns) = fs::metadata(dir.join("ns/mnt")) {
                if mount_namespaces.insert(mount_ns.ino()) {
                    if let Ok(mountinfo) = fs::read_to_string(dir.join("mountinfo")) {
                        live.inodes.extend(nsfs_mounts(&mountinfo));
                    }
                }
            }
        }
        live
    }

    /// Every thread's namespace: threads can `setns` on their own.
    fn add_threads(&mut self, pid: &str, dir: &Path) {
        let tasks = match fs::read_dir(dir.join("task")) {
            Ok(tasks) => tasks,
            Err(error) => return self.note(pid, dir, error.kind()),
        };
        for task in tasks.filter_map(|t| t.ok()) {
            match fs::metadata(task.path().join("ns/net")) {
                Ok(netns) => {
                    self.inodes.insert(netns.ino());
                }
                Err(error) => self.note(pid, dir, error.kind()),
            }
        }
    }

    fn add_open_files(&mut self, dir: &Path) {
        let Ok(fds) = fs::read_dir(dir.join("fd")) else {
            return;
        };
        for fd in fds.filter_map(|f| f.ok()) {
            if let Some(inode) = fs::read_link(fd.path())
                .ok()
                .and_then(|target| net_namespace_inode(&target.to_string_lossy()))
            {
                self.inodes.insert(inode);
            }
        }
    }

    /// A process that vanished is no blind spot; one whose namespace cannot be read is.
    fn note(&mut self, pid: &str, dir: &Path, kind: ErrorKind) {
        if kind != ErrorKind::NotFound && dir.exists() && self.blind_spot.is_none() {
            self.blind_spot = Some(format!(
                "the namespaces of some processes cannot be read (pid {pid}: {kind})"
            ));
        }
    }
}

/// `net:[4026532289]` (the target of a namespace file, or the root of an nsfs mount) → the inode.
fn net_namespace_inode(text: &str) -> Option<u64> {
    text.strip_prefix("net:[")?.strip_suffix(']')?.parse().ok()
}

/// Network namespaces mounted somewhere in a mount namespace, from its mountinfo: lines whose
/// filesystem (after ` - `) is nsfs and whose root (the fourth field) is `net:[N]`.
fn nsfs_mounts(mountinfo: &str) -> impl Iterator<Item = u64> + '_ {
    mountinfo.lines().filter_map(|line| {
        let (mount, filesystem) = line.split_once(" - ")?;
        if filesystem.split_whitespace().next()? != "nsfs" {
            return None;
        }
        net_namespace_inode(mount.split_whitespace().nth(3)?)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_network_namespace_mounts() {
        let mountinfo = "\
25 30 0:23 / /sys rw,nosuid - sysfs sysfs rw\n\
610 29 0:4 net:[4026532289] /run/netns/a rw shared:2 - nsfs nsfs rw\n\
611 29 0:4 net:[4026532400] /tmp/held rw - nsfs nsfs rw\n\
612 29 0:4 mnt:[4026532500] /tmp/mnt rw - nsfs nsfs rw\n";
        let found: Vec<u64> = nsfs_mounts(mountinfo).collect();
        assert_eq!(found, [4_026_532_289, 4_026_532_400]);
    }

    #[test]
    fn reads_namespace_file_targets() {
        assert_eq!(net_namespace_inode("net:[4026531840]"), Some(4_026_531_840));
        assert_eq!(net_namespace_inode("pid:[4026531836]"), None);
        assert_eq!(net_namespace_inode("socket:[123]"), None);
    }

    #[test]
    fn sees_its_own_namespace() {
        let own = fs::metadata("/proc/self/ns/net").expect("procfs").ino();
        assert!(LiveNamespaces::scan().inodes.contains(&own));
    }
}
