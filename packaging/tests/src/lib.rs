//! Fixtures for the package tests: a throwaway copy of a Debian root, commands run in it with
//! systemd-nspawn (its own mount and PID namespaces, a network namespace of the test's), and
//! the same root booted with systemd.
//!
//! Every container joins a network namespace the test made (never this machine's), binds a
//! bpffs instance of its own on /sys/fs/bpf and runs in a cgroup of its own; `Drop` removes
//! all of it.

pub mod booted;
pub mod root;

use std::{path::PathBuf, process::Output};

use anyhow::{bail, Result};

pub use booted::Booted;
pub use root::Root;

/// The package under test, from `cargo xtask deb --test`.
pub fn deb_path() -> PathBuf {
    env_path("FWLOG_DEB", "the .deb to test")
}

/// The Debian root's tarball, from `cargo xtask deb --test`.
pub fn debian_root_tarball() -> PathBuf {
    env_path("FWLOG_DEBIAN_ROOT", "the Debian root's tarball")
}

fn env_path(variable: &str, what: &str) -> PathBuf {
    let path = std::env::var_os(variable).map(PathBuf::from);
    match path {
        Some(path) if path.is_file() => path,
        _ => panic!(
            "{variable} names no file ({what}): run the package tests with `cargo xtask deb --test`"
        ),
    }
}

/// The text of a command's output, or an error that quotes it.
pub fn checked(what: &str, output: Output) -> Result<String> {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        bail!(
            "{what} failed ({}):\n{stdout}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(stdout)
}

/// fwlog's rules among `iptables-save` lines: its chains and anything naming fwlog.
pub fn fwlog_rules(saved: &str) -> Vec<&str> {
    saved
        .lines()
        .filter(|line| line.contains("LOG_AND_") || line.contains("fwlog"))
        .collect()
}
