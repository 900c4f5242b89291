//! Deb: build `fwlog_VERSION_amd64.deb` with cargo-deb (release fwlog, unit, conffile,
//! logrotate, man pages, completions), and with `--test` run the package tests against it.

mod assets;
mod debian_root;

use std::{
    path::{Path, PathBuf},
    time::Instant,
};

use anyhow::{bail, ensure, Context as _, Result};
use clap::Args;
use nix::unistd::geteuid;

use crate::{build, cmd, setup};

/// The cargo-deb release this packaging is written for (its rust-version is 1.85).
const CARGO_DEB_VERSION: &str = "3.8.0";

#[derive(Args)]
pub struct Options {
    /// Then run the package tests (lintian, a throwaway Debian root, a booted systemd);
    /// they need root, lintian, mmdebstrap and systemd-nspawn.
    #[arg(long)]
    test: bool,
    /// Extra arguments for the package tests' `cargo test`, after `--`.
    #[arg(last = true)]
    cargo_test_args: Vec<String>,
}

/// `cargo xtask deb [--test]`.
pub fn run(options: Options) -> Result<()> {
    let started = Instant::now();
    setup::prepare(setup::Report::ChangesOnly)?;
    let deb = build_deb()?;
    println!(
        "built {} in {} s",
        deb.display(),
        started.elapsed().as_secs()
    );
    if options.test {
        test_deb(&deb, &options.cargo_test_args)?;
        println!(
            "package built and tested in {} s",
            started.elapsed().as_secs()
        );
    }
    Ok(())
}

/// `cargo xtask deb --test`, for `cargo xtask test`.
pub fn build_and_test() -> Result<()> {
    run(Options {
        test: true,
        cargo_test_args: Vec::new(),
    })
}

/// Builds the package and returns its path.
pub fn build_deb() -> Result<PathBuf> {
    cargo_deb()?;
    let fwlog = build::build_fwlog(true)?;
    let conffile = cmd::workspace_root().join("packaging/fwlog.toml");
    // The conffile ships commented defaults: fwlog itself must accept it.
    cmd::output(
        cmd::tool(&fwlog.to_string_lossy())
            .args(["config", "check", "--config"])
            .arg(&conffile),
    )
    .with_context(|| format!("{} is not a valid configuration", conffile.display()))?;
    let assets_dir = build::target_dir()?.join("release/deb-assets");
    assets::generate(&fwlog, &assets_dir)?;

    let out_dir = build::target_dir()?.join("debian");
    let mut deb = cmd::cargo();
    deb.args(["deb", "--package", "fwlog", "--no-build", "--output"])
        .arg(&out_dir);
    let printed = cmd::output(&mut deb).context(
        "cargo deb failed; its message is above (the [package.metadata.deb] table is in fwlog/Cargo.toml)",
    )?;
    let deb = printed
        .lines()
        .map(str::trim)
        .rfind(|line| line.ends_with(".deb"))
        .map(PathBuf::from)
        .with_context(|| format!("cargo deb printed no .deb path: {printed}"))?;
    let expected = format!("fwlog_{}_amd64.deb", env!("CARGO_PKG_VERSION"));
    ensure!(
        deb.file_name()
            .is_some_and(|name| name == expected.as_str()),
        "cargo deb wrote {}, not {expected}",
        deb.display()
    );
    Ok(deb)
}

/// The package tests (`packaging/tests`), given the package and a cached Debian root.
fn test_deb(deb: &Path, cargo_test_args: &[String]) -> Result<()> {
    if !geteuid().is_root() {
        bail!(
            "the package tests boot a container and change iptables inside it: run \
             `sudo -E cargo xtask deb --test`"
        );
    }
    let root = debian_root::cached()?;
    let fwlog = build::fwlog_binary(true)?;
    let mut test = cmd::cargo();
    test.args([
        "test",
        "--package",
        "fwlog-package-tests",
        "--no-fail-fast",
        "--",
    ])
    .args(["--test-threads", "1"])
    .args(cargo_test_args)
    .env("FWLOG_DEB", deb)
    .env("FWLOG_DEBIAN_ROOT", &root)
    .env("FWLOG_BIN", &fwlog)
    .env("RUST_BACKTRACE", "1");
    cmd::run(&mut test).context(
        "package tests failed: see above; rerun one with `cargo xtask deb --test -- <test name>`",
    )
}

/// cargo-deb at [`CARGO_DEB_VERSION`], installed with `cargo install` when missing.
fn cargo_deb() -> Result<()> {
    let installed = cmd::output(cmd::cargo().args(["deb", "--version"])).unwrap_or_default();
    if installed
        .split_whitespace()
        .any(|word| word == CARGO_DEB_VERSION)
    {
        return Ok(());
    }
    let mut install = cmd::tool("cargo");
    install.args([
        "install",
        "cargo-deb",
        "--version",
        CARGO_DEB_VERSION,
        "--locked",
        "--force",
    ]);
    println!(
        "installing cargo-deb {CARGO_DEB_VERSION} (found: `{}`), a few minutes: {}",
        installed.trim(),
        cmd::describe(&install)
    );
    cmd::run(&mut install).context("installing cargo-deb failed; see cargo's errors above")
}
