//! Checks run before anything is installed, each failing with one line that says what to do.

use std::path::Path;

use anyhow::{bail, Result};

use aya::programs::ProgramType;

use crate::{kernel_features, netns::BPFFS};

/// `statfs.f_type` of a bpf filesystem (include/uapi/linux/magic.h, BPF_FS_MAGIC).
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;
/// Commands fwlog runs, per family.
pub const IPTABLES_COMMANDS: [&str; 4] = [
    "iptables-save",
    "iptables-restore",
    "ip6tables-save",
    "ip6tables-restore",
];

pub fn require_root(command: &str) -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!(
            "fwlog {command} must run as root (it installs iptables rules and loads eBPF \
             programs): try `sudo fwlog {command} ...`"
        );
    }
    Ok(())
}

/// The kernel must have the bpf() system call and what every mode needs (the ring buffer, the
/// boot clock in socket filters), found by probing.
pub fn require_kernel() -> Result<()> {
    if !bpf_syscall_available() {
        bail!(
            "this kernel has no BPF support (the bpf() system call is missing or blocked): \
             fwlog needs a kernel built with CONFIG_BPF_SYSCALL"
        );
    }
    if !kernel_features::ring_buffer()? {
        bail!(
            "this kernel has no BPF ring buffer (BPF_MAP_TYPE_RINGBUF, Linux 5.8 and later), \
             which carries every event: fwlog cannot run here"
        );
    }
    if !kernel_features::map_in_map()? {
        bail!(
            "this kernel has no BPF arrays of maps (BPF_MAP_TYPE_ARRAY_OF_MAPS, Linux 4.12 and \
             later), which hold each CPU's ring buffer of verdicts: fwlog cannot run here"
        );
    }
    if !kernel_features::boot_clock(ProgramType::SocketFilter)? {
        bail!(
            "this kernel has no bpf_ktime_get_boot_ns for socket filters (Linux 5.8 and later), \
             which timestamps every event: fwlog cannot run here"
        );
    }
    Ok(())
}

/// What the chosen events need besides: `flows` the flow programs' instructions and helpers,
/// `processes` the cgroup hooks'. A kernel that cannot name processes is said in one line and
/// the answer is `false`; anything else missing fails here, before anything is installed,
/// naming the feature and what still works.
pub fn require_kernel_for(flows: bool, processes: bool) -> Result<bool> {
    if flows {
        let missing = if !kernel_features::boot_clock(ProgramType::SchedClassifier)? {
            Some("bpf_ktime_get_boot_ns in tc programs (Linux 5.8 and later)")
        } else if !kernel_features::atomic_fetch_or()? {
            Some("BPF atomic fetch instructions (Linux 5.12 and later)")
        } else {
            None
        };
        if let Some(missing) = missing {
            bail!(
                "this kernel has no {missing}, which fwlog's flow programs use: \
                 `--events verdict` records verdicts without flows"
            );
        }
    }
    if processes && !kernel_features::process_hooks()? {
        eprintln!(
            "fwlog: this kernel's cgroup socket hooks cannot tell which process connects (Linux \
             5.7 and later): verdicts and flows without processes"
        );
        return Ok(false);
    }
    Ok(processes)
}

/// Calls bpf(BPF_MAP_CREATE) with no attributes: a kernel with BPF answers EINVAL or EFAULT,
/// one without answers ENOSYS.
fn bpf_syscall_available() -> bool {
    // SAFETY: a null attribute pointer with size 0 is rejected by the kernel before any access.
    let ret = unsafe { libc::syscall(libc::SYS_bpf, 0, std::ptr::null::<u8>(), 0) };
    !(ret < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOSYS))
}

pub fn require_bpffs() -> Result<()> {
    let mounted = nix::sys::statfs::statfs(BPFFS)
        .map(|s| s.filesystem_type().0 == BPF_FS_MAGIC)
        .unwrap_or(false);
    if !mounted {
        // `ip netns exec` gives its command a fresh /sys for the namespace, without bpffs: the
        // pins are there, out of sight.
        if let Some(named) = crate::netns::NetNs::current()
            .ok()
            .and_then(|n| n.ip_netns_exec())
        {
            bail!(
                "bpffs is not mounted at {BPFFS} here; under `ip netns exec`, which mounts a \
                 fresh /sys, fwlog cannot see its pins: run it with `nsenter --net={} fwlog …` \
                 instead",
                named.display()
            );
        }
        bail!("bpffs is not mounted at {BPFFS}: mount it with `mount -t bpf bpf {BPFFS}`");
    }
    Ok(())
}

pub fn require_iptables() -> Result<()> {
    for command in IPTABLES_COMMANDS {
        if find_in_path(command).is_none() {
            bail!(
                "{command} not found in PATH: install iptables (Debian/Ubuntu: `apt install \
                 iptables`; Fedora: `dnf install iptables-nft`; Arch: `pacman -S iptables-nft`)"
            );
        }
    }
    require_xt_bpf()
}

/// Matches the kernel has registered with x_tables (both iptables back ends use them).
const XT_MATCHES: &str = "/proc/net/ip_tables_matches";

/// The iptables `bpf` match, through which every logging rule runs fwlog's programs, loaded
/// if it is a module not loaded yet. When the kernel cannot be asked (no x_tables yet, no
/// modprobe), iptables-restore says so later, before any rule is in place.
fn require_xt_bpf() -> Result<()> {
    let registered = || {
        std::fs::read_to_string(XT_MATCHES)
            .map(|matches| matches.lines().any(|name| name.trim() == "bpf"))
    };
    if matches!(registered(), Ok(true)) {
        return Ok(());
    }
    let _ = std::process::Command::new("modprobe")
        .args(["-q", "xt_bpf"])
        .status();
    if matches!(registered(), Ok(false)) {
        bail!(
            "this kernel has no iptables bpf match (xt_bpf, CONFIG_NETFILTER_XT_MATCH_BPF), \
             through which fwlog's rules log: `--no-rules --events flow` still records flows"
        );
    }
    Ok(())
}

fn find_in_path(command: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(command))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}
