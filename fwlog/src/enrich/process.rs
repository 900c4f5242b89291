//! Process details the kernel cannot give cheaply: the executable, the user name, and the
//! systemd unit or container from the cgroup path. Read from /proc at first sight of a process
//! and cached by (pid, start time), so a reused pid is not mistaken for the old process.

use std::{collections::HashMap, sync::Arc};

use fwlog_common::process::ProcessInfo;

use crate::record::ProcessView;

/// Processes remembered; the cache starts over past this.
const CAPACITY: usize = 4096;

#[derive(Default)]
pub struct ProcessCache {
    details: HashMap<(u32, u64), Details>,
    users: HashMap<u32, Option<Arc<str>>>,
}

#[derive(Clone, Default)]
struct Details {
    exe: Option<Arc<str>>,
    unit: Option<Arc<str>>,
    container: Option<Arc<str>>,
}

impl ProcessCache {
    pub fn view(&mut self, info: &ProcessInfo) -> ProcessView {
        let details = self.details(info.pid);
        let user = self
            .users
            .entry(info.uid)
            .or_insert_with(|| {
                nix::unistd::User::from_uid(info.uid.into())
                    .ok()
                    .flatten()
                    .map(|u| u.name.into())
            })
            .clone();
        ProcessView {
            pid: info.pid,
            comm: String::from_utf8_lossy(info.comm_bytes()).into_owned(),
            exe: details.exe,
            uid: info.uid,
            user,
            unit: details.unit,
            container: details.container,
        }
    }

    fn details(&mut self, pid: u32) -> Details {
        // The process may be gone already: then only the kernel's fields are known.
        let Some(start) = start_time(pid) else {
            return Details::default();
        };
        if self.details.len() >= CAPACITY {
            self.details.clear();
        }
        self.details
            .entry((pid, start))
            .or_insert_with(|| {
                let cgroup =
                    std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
                let (unit, container) = unit_and_container(&cgroup);
                Details {
                    exe: std::fs::read_link(format!("/proc/{pid}/exe"))
                        .ok()
                        .map(|p| p.to_string_lossy().into()),
                    unit: unit.map(Into::into),
                    container: container.map(Into::into),
                }
            })
            .clone()
    }
}

/// Field 22 of /proc/PID/stat: start time in clock ticks since boot.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: count from the last ')'.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19)?.parse().ok()
}

/// The systemd unit and the container id in a /proc/PID/cgroup file (cgroup v2 line `0::`
/// preferred, else the `name=systemd` v1 line).
pub fn unit_and_container(cgroup: &str) -> (Option<String>, Option<String>) {
    let path = cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .or_else(|| {
            cgroup
                .lines()
                .find_map(|l| l.split_once(":name=systemd:").map(|(_, p)| p))
        })
        .unwrap_or("");
    let mut unit = None;
    let mut container = None;
    for part in path.split('/') {
        let id = part
            .strip_prefix("docker-")
            .or_else(|| part.strip_prefix("libpod-"))
            .and_then(|rest| rest.strip_suffix(".scope"));
        if let Some(id) = id.filter(|id| is_container_id(id)) {
            container = Some(id.to_string());
        } else if is_container_id(part) {
            container = Some(part.to_string());
        } else if part.ends_with(".service") || part.ends_with(".scope") {
            unit = Some(part.to_string());
        }
    }
    (unit, container)
}

fn is_container_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "4f3c2b1a4f3c2b1a4f3c2b1a4f3c2b1a4f3c2b1a4f3c2b1a4f3c2b1a4f3c2b1a";

    #[test]
    fn units_and_containers() {
        assert_eq!(
            unit_and_container("0::/user.slice/user-1000.slice/session-2.scope\n"),
            (Some("session-2.scope".into()), None)
        );
        assert_eq!(
            unit_and_container(&format!("0::/system.slice/docker-{ID}.scope\n")),
            (None, Some(ID.into()))
        );
        assert_eq!(
            unit_and_container(&format!("12:pids:/\n1:name=systemd:/docker/{ID}\n")),
            (None, Some(ID.into()))
        );
        assert_eq!(
            unit_and_container("1:name=systemd:/system.slice/ssh.service\n"),
            (Some("ssh.service".into()), None)
        );
        assert_eq!(unit_and_container(""), (None, None));
    }

    #[test]
    fn this_process_is_found() {
        let me = std::process::id();
        let mut cache = ProcessCache::default();
        let mut comm = [0u8; 16];
        comm[..4].copy_from_slice(b"test");
        let view = cache.view(&ProcessInfo {
            pid: me,
            uid: 0,
            comm,
            ..ProcessInfo::default()
        });
        assert_eq!(view.pid, me);
        assert_eq!(view.comm, "test");
        assert!(view.exe.is_some_and(|exe| !exe.is_empty()));
        assert_eq!(
            view.user.as_deref(),
            Some("root")
                .filter(|_| nix::unistd::geteuid().is_root())
                .or(view.user.as_deref())
        );
    }
}
