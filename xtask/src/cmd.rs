//! Spawning the programs xtask drives: cargo with ~/.cargo/bin on PATH, and checked exit statuses.

use std::{
    path::Path,
    process::{Command, Stdio},
};

use anyhow::{bail, Context as _, Result};

use crate::setup;

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
    command.env("PATH", setup::cargo_env_path());
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
