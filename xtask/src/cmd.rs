//! Spawning the programs xtask drives: cargo with ~/.cargo/bin on PATH, and checked exit statuses.

use std::{
    env,
    ffi::OsString,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{bail, Context as _, Result};

/// The workspace root: every cargo command runs there, wherever `cargo xtask` was started.
pub fn workspace_root() -> &'static Path {
    let xtask_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    xtask_dir.parent().unwrap_or(xtask_dir)
}

/// `cargo` in the workspace root, with bpf-linker's directory on PATH (fwlog's build script needs it).
pub fn cargo() -> Command {
    let mut cargo = tool("cargo");
    cargo.current_dir(workspace_root());
    cargo
}

/// A program looked up in PATH with ~/.cargo/bin in front, so rustup's proxies and bpf-linker win.
pub fn tool(program: &str) -> Command {
    let mut command = Command::new(program);
    command.env("PATH", cargo_env_path());
    command
}

/// The command line as a user would type it, for messages.
pub fn describe(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|part| part.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `command` with inherited stdio and fails unless it exits with status 0.
pub fn run(command: &mut Command) -> Result<()> {
    let status = command.status().with_context(|| cannot_start(command))?;
    if !status.success() {
        bail!("`{}` failed ({status})", describe(command));
    }
    Ok(())
}

/// Runs `command` and returns its stdout; on failure the error carries its stderr.
pub fn output(command: &mut Command) -> Result<String> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .with_context(|| cannot_start(command))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let stderr = stderr.trim();
        let separator = if stderr.is_empty() { "" } else { ": " };
        bail!(
            "`{}` failed ({}){separator}{stderr}",
            describe(command),
            output.status,
        );
    }
    String::from_utf8(output.stdout).with_context(|| {
        format!(
            "`{}` printed something that is not UTF-8",
            describe(command)
        )
    })
}

fn cannot_start(command: &Command) -> String {
    format!(
        "could not start `{}`: is {} installed and on PATH?",
        describe(command),
        command.get_program().to_string_lossy()
    )
}

/// Where cargo installs binaries: `$CARGO_HOME/bin`, else `$HOME/.cargo/bin`.
pub fn cargo_bin_dir() -> Option<PathBuf> {
    let non_empty = |value: OsString| (!value.is_empty()).then_some(value);
    env::var_os("CARGO_HOME")
        .and_then(non_empty)
        .map(PathBuf::from)
        .or_else(|| {
            env::var_os("HOME")
                .and_then(non_empty)
                .map(|home| Path::new(&home).join(".cargo"))
        })
        .map(|cargo_home| cargo_home.join("bin"))
}

/// PATH with cargo's bin directory in front, so rustup's proxies and a `cargo install`ed bpf-linker
/// are found even when the user's shell never sourced ~/.cargo/env. Set it on every cargo command.
pub fn cargo_env_path() -> OsString {
    let path = env::var_os("PATH").unwrap_or_default();
    let Some(cargo_bin) = cargo_bin_dir() else {
        return path;
    };
    let dirs = std::iter::once(cargo_bin)
        .chain(env::split_paths(&path).filter(|dir| !dir.as_os_str().is_empty()));
    // A directory with ':' in its name cannot go into PATH; keep the user's PATH as it is then.
    env::join_paths(dirs).unwrap_or(path)
}
