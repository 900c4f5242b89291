//! Loading fwlog's eBPF object, pinning the verdict programs where iptables' `-m bpf` finds them,
//! and removing the pins again.

use std::{
    fs,
    io::ErrorKind,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result};
use aya::{programs::SocketFilter, Ebpf, EbpfLoader};
use fwlog_common::{
    event::{Action, CtState},
    programs::{verdict_program, EVENTS_MAP},
};

use crate::netns::PIN_ROOT;

/// The object built from fwlog-ebpf by build.rs.
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/fwlog"));

/// Loads the object with a ring buffer of `ring_bytes` and loads (verifies) every program.
pub fn load(ring_bytes: u32) -> Result<Ebpf> {
    let kernel_log_level = log::max_level() as u8;
    let mut ebpf = EbpfLoader::new()
        .map_max_entries(EVENTS_MAP, ring_bytes)
        .override_global(aya_log::LEVEL, &kernel_log_level, false)
        .load(EBPF_OBJECT)
        .context(
            "loading fwlog's eBPF object (does this kernel have BPF, BTF and ring buffers?)",
        )?;
    for (action, state) in verdict_programs() {
        let name = verdict_program(action, state);
        socket_filter(&mut ebpf, name)?
            .load()
            .with_context(|| format!("loading the eBPF program {name} into the kernel"))?;
    }
    Ok(ebpf)
}

/// Pins every verdict program under `pin_dir`.
pub fn pin_verdict_programs(ebpf: &mut Ebpf, pin_dir: &Path) -> Result<()> {
    fs::create_dir_all(pin_dir).with_context(|| format!("creating {}", pin_dir.display()))?;
    for (action, state) in verdict_programs() {
        let name = verdict_program(action, state);
        let path = pin_dir.join(name);
        socket_filter(ebpf, name)?
            .pin(&path)
            .with_context(|| format!("pinning {name} at {}", path.display()))?;
    }
    Ok(())
}

/// Removes the pins under `pin_dir` and the directory itself. Returns whether there was any.
pub fn remove_pins(pin_dir: &Path) -> Result<bool> {
    let entries = match fs::read_dir(pin_dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == ErrorKind::NotFound => return Ok(false),
        Err(error) => return Err(error).with_context(|| format!("reading {}", pin_dir.display())),
    };
    for entry in entries {
        let path = entry
            .with_context(|| format!("reading {}", pin_dir.display()))?
            .path();
        fs::remove_file(&path).with_context(|| format!("removing the pin {}", path.display()))?;
    }
    fs::remove_dir(pin_dir).with_context(|| format!("removing {}", pin_dir.display()))?;
    // The shared parent goes when the last namespace's directory has gone.
    let _ = fs::remove_dir(PIN_ROOT);
    Ok(true)
}

/// Pin directories of network namespaces that no longer exist: their rules died with the
/// namespace, but the pins keep the programs in the kernel.
pub fn orphaned_pin_dirs() -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(PIN_ROOT) else {
        return Vec::new();
    };
    let live = live_netns_inodes();
    entries
        .filter_map(|entry| entry.ok())
        .filter(|entry| {
            entry
                .file_name()
                .to_str()
                .and_then(|name| name.parse::<u64>().ok())
                .is_some_and(|inode| !live.contains(&inode))
        })
        .map(|entry| entry.path())
        .collect()
}

/// Inodes of every network namespace a process is in or that `ip netns` keeps mounted.
fn live_netns_inodes() -> Vec<u64> {
    let mut inodes = Vec::new();
    if let Ok(processes) = fs::read_dir("/proc") {
        for process in processes.filter_map(|p| p.ok()) {
            if let Ok(metadata) = fs::metadata(process.path().join("ns/net")) {
                inodes.push(metadata.ino());
            }
        }
    }
    if let Ok(named) = fs::read_dir("/run/netns") {
        for netns in named.filter_map(|n| n.ok()) {
            if let Ok(metadata) = fs::metadata(netns.path()) {
                inodes.push(metadata.ino());
            }
        }
    }
    inodes.sort_unstable();
    inodes.dedup();
    inodes
}

fn verdict_programs() -> impl Iterator<Item = (Action, CtState)> {
    Action::ALL
        .into_iter()
        .flat_map(|action| CtState::ALL.into_iter().map(move |state| (action, state)))
}

fn socket_filter<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut SocketFilter> {
    ebpf.program_mut(name)
        .with_context(|| format!("the eBPF object has no program {name}"))?
        .try_into()
        .with_context(|| format!("{name} is not a socket filter"))
}
