//! The Debian root the package tests install into and boot: mmdebstrap from this machine's own
//! Debian sources, made once and kept as a tarball under /var/cache (about 200 MB; building it
//! costs a few minutes, mostly downloads), so CI pays for it only on a new machine.

use std::{
    fs,
    path::{Path, PathBuf},
    time::Instant,
};

use anyhow::{bail, Context as _, Result};
use nix::fcntl::{Flock, FlockArg};

use crate::cmd;

/// The suite of this project's CI machines (Debian 12).
const SUITE: &str = "bookworm";
/// What the tests need inside: systemd as PID 1, what the package depends on (iptables, procps
/// for the unit's /bin/kill) and recommends (logrotate), `man` for systemd-analyze verify to
/// find the unit's Documentation= pages, and `ip`.
const PACKAGES: [&str; 6] = [
    "systemd-sysv",
    "iptables",
    "procps",
    "logrotate",
    "man-db",
    "iproute2",
];
const CACHE_DIR: &str = "/var/cache/fwlog-tests";
/// This machine's apt sources, deb822 first: mmdebstrap reads either kind.
const HOST_SOURCES: [&str; 2] = [
    "/etc/apt/sources.list.d/debian.sources",
    "/etc/apt/sources.list",
];

/// The tarball of the root, built first if the cache has none for this suite and package list.
pub fn cached() -> Result<PathBuf> {
    fs::create_dir_all(CACHE_DIR).with_context(|| format!("creating {CACHE_DIR}"))?;
    // Named by what goes in, so a change to the list builds a new one.
    let tarball =
        Path::new(CACHE_DIR).join(format!("debian-{SUITE}-minbase-{}.tar", PACKAGES.join(",")));
    // Two runs at once build it once.
    let lock_path = tarball.with_extension("lock");
    let lock_file = fs::File::create(&lock_path)
        .with_context(|| format!("creating {}", lock_path.display()))?;
    let _lock = Flock::lock(lock_file, FlockArg::LockExclusive)
        .map_err(|(_, errno)| errno)
        .with_context(|| format!("locking {}", lock_path.display()))?;
    if tarball.is_file() {
        println!("Debian test root: {} (cached)", tarball.display());
        return Ok(tarball);
    }
    let sources = HOST_SOURCES
        .into_iter()
        .map(Path::new)
        .find(|path| path.is_file())
        .with_context(|| {
            format!(
                "no apt sources on this machine ({}): the package tests build their Debian root \
                 from them",
                HOST_SOURCES.join(", ")
            )
        })?;
    let partial = tarball.with_extension("tar.partial");
    let mut mmdebstrap = cmd::tool("mmdebstrap");
    mmdebstrap
        .args(["--variant=minbase", "--format=tar", "--quiet"])
        .arg(format!("--include={}", PACKAGES.join(",")))
        .arg(SUITE)
        .arg(&partial)
        .arg(sources);
    println!(
        "building the Debian test root once (a few minutes): {}",
        cmd::describe(&mmdebstrap)
    );
    let started = Instant::now();
    if let Err(error) = cmd::run(&mut mmdebstrap) {
        let _ = fs::remove_file(&partial);
        bail!("{error:#}; is mmdebstrap installed (apt-get install mmdebstrap)?");
    }
    fs::rename(&partial, &tarball)
        .with_context(|| format!("moving {} into place", partial.display()))?;
    remove_other_roots(&tarball);
    println!(
        "built {} in {} s",
        tarball.display(),
        started.elapsed().as_secs()
    );
    Ok(tarball)
}

/// Roots built for an older package list, and their locks: nothing uses them any more.
fn remove_other_roots(kept: &Path) {
    let kept_lock = kept.with_extension("lock");
    for entry in fs::read_dir(CACHE_DIR).into_iter().flatten().flatten() {
        let path = entry.path();
        let is_root = path
            .file_name()
            .and_then(|name| name.to_str())
            .is_some_and(|name| {
                name.starts_with("debian-") && (name.ends_with(".tar") || name.ends_with(".lock"))
            });
        if is_root && path != kept && path != kept_lock {
            match fs::remove_file(&path) {
                Ok(()) => println!("removed the outdated {}", path.display()),
                Err(error) => println!("note: could not remove {}: {error}", path.display()),
            }
        }
    }
}
