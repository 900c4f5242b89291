//! Build: compile fwlog, whose build script compiles the eBPF programs with nightly and bpf-linker.

use std::path::PathBuf;

use anyhow::{ensure, Context as _, Result};
use clap::Args;

use crate::{cmd, setup};

#[derive(Args)]
pub struct Options {
    /// Build with the release profile.
    #[arg(long)]
    pub release: bool,
}

/// `cargo xtask build`.
pub fn run(options: Options) -> Result<()> {
    setup::prepare(setup::Report::ChangesOnly)?;
    let fwlog = build_fwlog(options.release)?;
    println!("built {}", fwlog.display());
    Ok(())
}

/// Builds the fwlog binary and returns its absolute path.
pub fn build_fwlog(release: bool) -> Result<PathBuf> {
    let mut build = cmd::cargo();
    build.args(["build", "--package", "fwlog"]);
    if release {
        build.arg("--release");
    }
    cmd::run(&mut build).context(
        "building fwlog failed; fix the errors above (run `cargo xtask setup` if bpf-linker or nightly is missing)",
    )?;
    let fwlog = fwlog_binary(release)?;
    ensure!(
        fwlog.is_file(),
        "cargo built fwlog but {} does not exist; is a custom target (build.target) configured?",
        fwlog.display()
    );
    Ok(fwlog)
}

/// `<target dir>/<profile>/fwlog`, as an absolute path (the tests and sudo run it from elsewhere).
pub fn fwlog_binary(release: bool) -> Result<PathBuf> {
    let profile = if release { "release" } else { "debug" };
    Ok(target_dir()?.join(profile).join("fwlog"))
}

/// The workspace's target directory as cargo resolves it (CARGO_TARGET_DIR, config, or ./target).
pub fn target_dir() -> Result<PathBuf> {
    let mut metadata = cmd::cargo();
    metadata.args(["metadata", "--format-version", "1", "--no-deps"]);
    let metadata =
        cmd::output(&mut metadata).context("cannot ask cargo for the target directory")?;
    let metadata: serde_json::Value = serde_json::from_str(&metadata)
        .context("`cargo metadata` printed something that is not JSON")?;
    let target_dir = metadata["target_directory"]
        .as_str()
        .context("`cargo metadata` has no target_directory")?;
    Ok(PathBuf::from(target_dir))
}
