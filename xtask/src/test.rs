//! Test: formatting, lints, then unit and kernel tests against a freshly built fwlog.

use std::{ffi::OsString, time::Instant};

use anyhow::{Context as _, Result};
use clap::Args;
use nix::unistd::geteuid;

use crate::{build, cmd, kernel_matrix, setup};

#[derive(Args)]
pub struct Options {
    /// Extra arguments for `cargo test`, after `--` (e.g. a test name, or `-- --nocapture`); with
    /// --kernel, arguments for each test binary (a test name, `--exact`, `--skip NAME`).
    #[arg(last = true)]
    cargo_test_args: Vec<OsString>,
    #[command(
        flatten,
        next_help_heading = "Kernel matrix (qemu guests on Debian's kernels)"
    )]
    matrix: kernel_matrix::MatrixOptions,
}

/// `cargo xtask test`: stops at the first failing step.
pub fn run(options: Options) -> Result<()> {
    if !options.matrix.kernels.is_empty() {
        // With --kernel, what follows `--` goes to each test binary in the guests.
        return kernel_matrix::run(options.matrix, &options.cargo_test_args);
    }
    let started = Instant::now();
    setup::prepare(setup::Report::ChangesOnly)?;
    let fwlog = build::build_fwlog(false)?;

    let mut fmt = cmd::cargo();
    fmt.args(["fmt", "--all", "--", "--check"]);
    cmd::run(&mut fmt)
        .context("formatting differs: run `cargo fmt --all`, then rerun `cargo xtask test`")?;

    let mut clippy = cmd::cargo();
    clippy.args([
        "clippy",
        "--workspace",
        "--exclude",
        "fwlog-ebpf",
        "--all-targets",
    ]);
    clippy.args(["--", "-D", "warnings"]);
    cmd::run(&mut clippy)
        .context("clippy found problems: fix the warnings above, then rerun `cargo xtask test`")?;

    // The kernel side builds only for the BPF target, with nightly.
    let mut ebpf_clippy = cmd::cargo();
    ebpf_clippy
        .args([
            "+nightly",
            "clippy",
            "--package",
            "fwlog-ebpf",
            "--target",
            "bpfel-unknown-none",
            "-Z",
            "build-std=core",
            "--release",
            "--",
            "-D",
            "warnings",
        ])
        .env(
            "RUSTFLAGS",
            format!("--cfg=bpf_target_arch=\"{}\"", std::env::consts::ARCH),
        );
    cmd::run(&mut ebpf_clippy).context(
        "clippy found problems in fwlog-ebpf: fix the warnings above, then rerun `cargo xtask test`",
    )?;

    let mut test = cmd::cargo();
    // fwlog-tests is a workspace member, so this runs the kernel tests too; they exec FWLOG_BIN.
    // The package tests need the package and a Debian root: `cargo xtask deb --test` runs them.
    test.args(["test", "--workspace", "--exclude", "fwlog-ebpf"])
        .args(["--exclude", "fwlog-package-tests"])
        .args(&options.cargo_test_args)
        .env("FWLOG_BIN", &fwlog)
        .env("RUST_BACKTRACE", "1");
    if !geteuid().is_root() {
        // The kernel tests create network namespaces, load eBPF and change iptables rules.
        let runner = runner_variable()?;
        println!("not root: running the test binaries through `sudo -E` ({runner})");
        test.env(runner, "sudo -E");
    }
    cmd::run(&mut test).context(
        "tests failed: see the failures above; rerun one with `cargo xtask test -- <test name>`",
    )?;

    println!("tests passed in {} s", started.elapsed().as_secs());
    Ok(())
}

/// `CARGO_TARGET_<HOST TRIPLE>_RUNNER`, e.g. `CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER`.
fn runner_variable() -> Result<String> {
    let version = cmd::output(cmd::tool("rustc").arg("-vV"))
        .context("cannot ask rustc for the host target")?;
    let host = version
        .lines()
        .find_map(|line| line.strip_prefix("host: "))
        .context("no `host:` line in `rustc -vV`")?;
    Ok(format!(
        "CARGO_TARGET_{}_RUNNER",
        host.trim().to_uppercase().replace(['-', '.'], "_")
    ))
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use crate::{Cli, Task};

    #[test]
    fn everything_after_the_first_double_dash_goes_to_cargo_test() {
        let cli = Cli::try_parse_from(["xtask", "test", "--", "netns", "--", "--nocapture"]);
        let Ok(Cli {
            task: Task::Test(options),
        }) = cli
        else {
            panic!("`xtask test -- ...` did not parse as the test task");
        };
        assert_eq!(options.cargo_test_args, ["netns", "--", "--nocapture"]);
        assert!(options.matrix.kernels.is_empty());
    }

    #[test]
    fn kernel_selects_the_matrix_and_its_options_need_it() {
        let cli = Cli::try_parse_from([
            "xtask",
            "test",
            "--kernel",
            "6.1,6.12",
            "--backend",
            "both",
            "--",
            "flows",
        ]);
        let Ok(Cli {
            task: Task::Test(options),
        }) = cli
        else {
            panic!("`xtask test --kernel 6.1,6.12 --backend both` did not parse");
        };
        assert_eq!(options.matrix.kernels.len(), 2);
        assert_eq!(options.cargo_test_args, ["flows"]);
        assert!(Cli::try_parse_from(["xtask", "test", "--kernel", "all"]).is_ok());
        assert!(Cli::try_parse_from(["xtask", "test", "--kernel", "5.10"]).is_err());
        assert!(Cli::try_parse_from(["xtask", "test", "--backend", "legacy"]).is_err());
    }
}
