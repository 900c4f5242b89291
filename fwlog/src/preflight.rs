//! Checks run before anything is installed, each failing with one line that says what to do.

use std::path::Path;

use anyhow::{bail, Context as _, Result};

use crate::netns::BPFFS;

/// BPF ring buffers (and `bpf_ktime_get_boot_ns`) arrived in Linux 5.8.
pub const MIN_KERNEL: (u32, u32) = (5, 8);
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

/// The kernel must be recent enough and have the bpf() system call.
pub fn require_kernel() -> Result<()> {
    let release = nix::sys::utsname::uname()
        .context("uname")?
        .release()
        .to_string_lossy()
        .into_owned();
    let version = parse_kernel_version(&release)
        .with_context(|| format!("cannot read the kernel version from {release:?}"))?;
    if version < MIN_KERNEL {
        bail!(
            "kernel {release} is too old: fwlog needs Linux {}.{} or newer (BPF ring buffer)",
            MIN_KERNEL.0,
            MIN_KERNEL.1
        );
    }
    if !bpf_syscall_available() {
        bail!(
            "this kernel has no BPF support (the bpf() system call is missing or blocked): \
             fwlog needs a kernel built with CONFIG_BPF_SYSCALL"
        );
    }
    Ok(())
}

/// "6.18.44-fc" → (6, 18).
pub fn parse_kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_versions() {
        assert_eq!(parse_kernel_version("6.18.44-fc-v769"), Some((6, 18)));
        assert_eq!(parse_kernel_version("5.8.0"), Some((5, 8)));
        assert_eq!(parse_kernel_version("4.19"), Some((4, 19)));
        assert_eq!(parse_kernel_version("garbage"), None);
        assert!(parse_kernel_version("5.4.0-150-generic").expect("parses") < MIN_KERNEL);
    }
}
