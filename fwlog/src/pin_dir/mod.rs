//! One namespace's pin directory, `/sys/fs/bpf/fwlog/<netns inode>`: whose it is (a record and
//! a namespace link say), what it holds and how much kernel memory that is, and taking it away
//! in an order that keeps it recognisable until the end.

pub mod bpf_obj;
mod holders;
pub mod record;

use std::{
    collections::BTreeSet,
    fs,
    io::ErrorKind,
    os::fd::AsFd as _,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result};
use aya::{maps::MapData, programs::ProgramInfo};

pub use self::holders::LiveNamespaces;
use self::record::{Record, RECORD_PIN};
use crate::{
    netns::{NetNs, PIN_ROOT},
    tc_attach,
};

/// The pinned netns link of the `netns_alive` program (see fwlog-ebpf/src/liveness.rs).
pub const NETNS_LINK_PIN: &str = "link_netns";

/// A directory under [`PIN_ROOT`] named by a namespace inode.
#[derive(Debug)]
pub struct PinDir {
    pub path: PathBuf,
    /// The inode the directory is named by.
    pub inode: u64,
    pub record: Option<Record>,
    /// Why the record could not be read, when there is one that cannot.
    pub record_error: Option<String>,
    /// The namespace link's `netns_ino`: 0 once that namespace has exited; `None` without a link.
    pub link_netns: Option<u64>,
}

/// Whose a pin directory is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Owner {
    /// This network namespace's.
    Here,
    /// Another network namespace's, which exists.
    Alive,
    /// Its namespace no longer exists; the reason, for the user.
    Gone(String),
    /// fwlog cannot tell (the reason): the directory is kept.
    Unknown(String),
}

impl PinDir {
    /// The directory at `path`, if it exists and is named by a number.
    pub fn open(path: &Path) -> Option<Self> {
        let inode = path.file_name()?.to_str()?.parse().ok()?;
        if !path.is_dir() {
            return None;
        }
        let (record, record_error) = match Record::read(path) {
            Ok(record) => (record, None),
            Err(error) => (None, Some(format!("{error:#}"))),
        };
        Some(PinDir {
            path: path.to_path_buf(),
            inode,
            record,
            record_error,
            link_netns: netns_link_inode(&path.join(NETNS_LINK_PIN)),
        })
    }

    /// This namespace's slot, if something is in it (which may be a dead namespace's).
    pub fn of(netns: NetNs) -> Option<Self> {
        Self::open(&netns.pin_dir())
    }

    /// Whose the directory is, seen from `here`. `live` is scanned on first need (directories
    /// without a namespace link only) and kept for the next directory.
    pub fn owner(&self, here: NetNs, live: &mut Option<LiveNamespaces>) -> Owner {
        if let Some(inode) = self.link_netns {
            return if inode == 0 {
                Owner::Gone(
                    "its network namespace has exited (the kernel detached the namespace link \
                     pinned there)"
                        .to_string(),
                )
            } else if inode == here.inode {
                // Inodes are unique among live namespaces: a live link with ours is on us.
                Owner::Here
            } else {
                Owner::Alive
            };
        }
        if self.inode == here.inode {
            let recorded = self.record.as_ref().and_then(|r| r.netns_cookie);
            return match (recorded, here.cookie) {
                (Some(then), Some(now)) if then != now => Owner::Gone(
                    "it was made in a network namespace that has exited, whose inode this one \
                     reuses"
                        .to_string(),
                ),
                _ => Owner::Here,
            };
        }
        let live = live.get_or_insert_with(LiveNamespaces::scan);
        if live.inodes.contains(&self.inode) {
            Owner::Alive
        } else if let Some(blind_spot) = &live.blind_spot {
            Owner::Unknown(format!(
                "nothing in sight holds network namespace {}, but {blind_spot}",
                self.inode
            ))
        } else {
            Owner::Gone(format!(
                "no process, thread, open file or mount holds network namespace {} (it has no \
                 namespace link to ask the kernel)",
                self.inode
            ))
        }
    }

    /// The names of the pins, sorted.
    pub fn pins(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(&self.path)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// The cgroup hooks an install pinned here (they run for the whole machine).
    pub fn cgroup_hooks(&self) -> Vec<String> {
        self.pins()
            .into_iter()
            .filter(|name| name.starts_with("link_process_"))
            .collect()
    }

    /// Kernel memory the pins keep: their programs and every map those programs use, counted
    /// once (the kernel's `memlock` figures).
    pub fn memory(&self) -> u64 {
        let mut programs = Vec::new();
        let mut maps = BTreeSet::new();
        let mut total = 0;
        for name in self.pins() {
            let path = self.path.join(&name);
            if let Ok(program) = ProgramInfo::from_pin(&path) {
                programs.push(program);
            } else if let Ok(map) = MapData::from_pin(&path) {
                if map.info().is_ok_and(|info| maps.insert(info.id())) {
                    total += bpf_obj::fdinfo(map.fd().as_fd(), "memlock").unwrap_or(0);
                }
            } else if let Some(program) = linked_program(&path) {
                programs.push(program);
            }
        }
        for program in programs {
            total += u64::from(program.memory_locked().unwrap_or(0));
            for id in program.map_ids().ok().flatten().unwrap_or_default() {
                if maps.insert(id) {
                    if let Ok(map) = MapData::from_id(id) {
                        total += bpf_obj::fdinfo(map.fd().as_fd(), "memlock").unwrap_or(0);
                    }
                }
            }
        }
        total
    }

    /// Unpins everything, the record last, then removes the directory (and the shared parent
    /// when it is empty). Returns whether there was anything.
    pub fn remove(&self) -> Result<bool> {
        remove_pin_dir(&self.path)
    }
}

/// [`PinDir::remove`] for a directory that may not exist (or not be named by a number).
pub fn remove_pin_dir(path: &Path) -> Result<bool> {
    // Netlink tc filters are no pins: the directory only records them (see tc_attach).
    tc_attach::remove_recorded(path)?;
    let mut names = match fs::read_dir(path) {
        Ok(entries) => entries
            .map(|e| e.map(|e| e.file_name()))
            .collect::<std::io::Result<Vec<_>>>()
            .with_context(|| format!("reading {}", path.display()))?,
        Err(error) if error.kind() == ErrorKind::NotFound => return Ok(false),
        Err(error) => return Err(error).with_context(|| format!("reading {}", path.display())),
    };
    // Links first (their hooks stop), the namespace link and the record last: until then the
    // directory still says whose it is.
    let rank = |name: &std::ffi::OsStr| match name.to_str() {
        Some(RECORD_PIN) => 3,
        Some(NETNS_LINK_PIN) => 2,
        Some(name) if name.starts_with("link_") => 0,
        _ => 1,
    };
    names.sort_by_key(|name| rank(name));
    for name in names {
        let pin = path.join(name);
        fs::remove_file(&pin).with_context(|| format!("removing the pin {}", pin.display()))?;
    }
    fs::remove_dir(path).with_context(|| format!("removing {}", path.display()))?;
    let _ = fs::remove_dir(PIN_ROOT);
    Ok(true)
}

/// Unpins everything in `path` but its record and namespace link, for an instance of the same
/// namespace that takes the directory over (the rules of the earlier one hold their programs).
pub fn unpin_for_replacement(path: &Path) -> Result<()> {
    // The earlier instance's netlink tc filters go too: the new one attaches its own.
    tc_attach::remove_recorded(path)?;
    let mut names = fs::read_dir(path)
        .and_then(|entries| {
            entries
                .map(|e| e.map(|e| e.file_name()))
                .collect::<std::io::Result<Vec<_>>>()
        })
        .with_context(|| format!("reading {}", path.display()))?;
    names.retain(|name| !matches!(name.to_str(), Some(RECORD_PIN | NETNS_LINK_PIN)));
    names.sort_by_key(|name| !name.to_string_lossy().starts_with("link_"));
    for name in names {
        let pin = path.join(name);
        fs::remove_file(&pin).with_context(|| format!("removing the pin {}", pin.display()))?;
    }
    Ok(())
}

/// Every pin directory on this bpffs, in inode order.
pub fn all() -> Vec<PinDir> {
    let Ok(entries) = fs::read_dir(PIN_ROOT) else {
        return Vec::new();
    };
    let mut dirs: Vec<PinDir> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| PinDir::open(&e.path()))
        .collect();
    dirs.sort_by_key(|d| d.inode);
    dirs
}

/// A pin directory that is not this namespace's and whose namespace is gone (or may be).
#[derive(Debug)]
pub struct Orphan {
    pub dir: PinDir,
    pub why: String,
    pub memory: u64,
}

/// Other namespaces' pin directories: those whose namespace is provably gone, and those fwlog
/// cannot tell about (which it keeps).
pub fn orphans(here: NetNs) -> (Vec<Orphan>, Vec<Orphan>) {
    let mut live = None;
    let (mut gone, mut unknown) = (Vec::new(), Vec::new());
    for dir in all() {
        match dir.owner(here, &mut live) {
            Owner::Gone(why) => gone.push(Orphan {
                memory: dir.memory(),
                dir,
                why,
            }),
            Owner::Unknown(why) => unknown.push(Orphan {
                memory: dir.memory(),
                dir,
                why,
            }),
            Owner::Here | Owner::Alive => {}
        }
    }
    (gone, unknown)
}

/// Says how many pin directories of namespaces that are gone there are and what they hold, if
/// any (`watch`, `install` and `uninstall` mention them; `status` lists them).
pub fn mention_orphans(here: NetNs) {
    let (gone, _) = orphans(here);
    if gone.is_empty() {
        return;
    }
    let memory = gone.iter().map(|orphan| orphan.memory).sum();
    eprintln!(
        "fwlog: {} pin directories of network namespaces that no longer exist hold {}: `fwlog \
         status` lists them, `fwlog uninstall --orphans` removes them",
        gone.len(),
        human_bytes(memory)
    );
}

/// The namespace a pinned netns link is attached to (0 once it has exited), or `None` when
/// there is no such link.
fn netns_link_inode(path: &Path) -> Option<u64> {
    let fd = bpf_obj::open(path).ok()?;
    bpf_obj::fdinfo(fd.as_fd(), "netns_ino")
}

/// The program a pinned link runs (tc and cgroup programs are held only by their links).
fn linked_program(path: &Path) -> Option<ProgramInfo> {
    let fd = bpf_obj::open(path).ok()?;
    let id = u32::try_from(bpf_obj::fdinfo(fd.as_fd(), "prog_id")?).ok()?;
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .find(|program| program.id() == id)
}

/// `38.2 MiB`.
pub fn human_bytes(bytes: u64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    if bytes >= 1024 * 1024 {
        format!("{:.1} MiB", bytes as f64 / MIB)
    } else {
        format!("{} KiB", bytes.div_ceil(1024))
    }
}
