//! apt-get and dpkg for the matrix's packages (qemu, busybox, kernel images): root only, on Debian.

use std::{
    path::Path,
    process::Command,
    sync::atomic::{AtomicBool, Ordering},
};

use anyhow::{bail, Context as _, Result};
use nix::unistd::geteuid;

use crate::cmd;

/// `apt-get update` runs at most once per xtask run.
static UPDATED: AtomicBool = AtomicBool::new(false);

/// Whether dpkg has `package` installed (not only configured-files or half-installed).
pub fn is_installed(package: &str) -> bool {
    cmd::output(cmd::tool("dpkg-query").args(["-W", "-f=${Status}", package]))
        .is_ok_and(|status| status.trim() == "install ok installed")
}

/// Refreshes apt's package lists, once.
pub fn update() -> Result<()> {
    if UPDATED.load(Ordering::Relaxed) {
        return Ok(());
    }
    require_root_on_debian("refresh apt's package lists (apt-get update)")?;
    let mut update = Command::new("apt-get");
    update.arg("update");
    println!("refreshing apt's package lists: {}", cmd::describe(&update));
    cmd::run(&mut update)
        .context("apt-get update failed; check the apt sources and the network, then rerun")?;
    UPDATED.store(true, Ordering::Relaxed);
    Ok(())
}

/// `apt-get install -y --no-install-recommends PACKAGES` with extra environment variables.
pub fn install(packages: &[&str], env: &[(&str, &str)]) -> Result<()> {
    let names = packages.join(" ");
    require_root_on_debian(&format!("install {names}"))?;
    update()?;
    let mut install = Command::new("apt-get");
    install
        .args(["install", "-y", "--no-install-recommends"])
        .args(packages)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .envs(env.iter().copied());
    let assignments: String = env
        .iter()
        .map(|(name, value)| format!("{name}={value} "))
        .collect();
    println!(
        "installing {names}: {assignments}{}",
        cmd::describe(&install)
    );
    cmd::run(&mut install)
        .with_context(|| format!("installing {names} failed; see apt-get's errors above"))
}

/// Installs whichever of `packages` dpkg does not have.
pub fn install_missing(packages: &[&str]) -> Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|package| !is_installed(package))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    install(&missing, &[])
}

fn require_root_on_debian(what: &str) -> Result<()> {
    if !Path::new("/etc/debian_version").exists() {
        bail!("the kernel matrix boots Debian's kernels and needs Debian's apt to {what}");
    }
    if !geteuid().is_root() {
        bail!("the kernel matrix needs root to {what}: rerun with sudo -E");
    }
    Ok(())
}
