//! Test: everything README promises, in three parts: the host suite (formatting, lints, unit
//! and kernel tests against a freshly built fwlog on the running kernel), the package tests
//! (`cargo xtask deb --test`) and the kernel matrix (qemu guests on Debian's kernels).

use std::{ffi::OsString, fmt, time::Instant};

use anyhow::{bail, Context as _, Result};
use clap::{Args, ValueEnum};
use nix::unistd::geteuid;

use crate::{build, cmd, deb, kernel_matrix, load::LoadSampler, setup};

#[derive(Args)]
pub struct Options {
    /// Only the host suite: formatting, lints, unit and kernel tests on the running kernel.
    #[arg(long, conflicts_with_all = ["skip", "kernels"])]
    host_only: bool,
    /// Leave parts out: host, package, matrix (comma-separated or repeated).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        value_name = "PART",
        conflicts_with = "kernels"
    )]
    skip: Vec<Part>,
    /// Extra arguments for the host suite's `cargo test`, after `--` (e.g. a test name, or
    /// `-- --nocapture`): only the host suite runs then. With --kernel, arguments for each test
    /// binary in the guests (a test name, `--exact`, `--skip NAME`) instead of the kernel set.
    #[arg(last = true)]
    cargo_test_args: Vec<OsString>,
    #[command(
        flatten,
        next_help_heading = "Kernel matrix (qemu guests on Debian's kernels)"
    )]
    matrix: kernel_matrix::MatrixOptions,
}

/// A part of `cargo xtask test`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Part {
    /// Formatting, lints, unit and kernel tests on the running kernel.
    Host,
    /// The package tests (`cargo xtask deb --test`).
    Package,
    /// The kernel set in qemu guests: 6.1 with nft and legacy, 6.12 with nft.
    Matrix,
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Part::Host => "host suite",
            Part::Package => "package tests",
            Part::Matrix => "kernel matrix",
        })
    }
}

impl Options {
    /// The parts to run, in order.
    fn parts(&self) -> Vec<Part> {
        if !self.matrix.kernels.is_empty() {
            vec![Part::Matrix]
        } else if self.host_only || !self.cargo_test_args.is_empty() {
            vec![Part::Host]
        } else {
            [Part::Host, Part::Package, Part::Matrix]
                .into_iter()
                .filter(|part| !self.skip.contains(part))
                .collect()
        }
    }
}

/// `cargo xtask test`: every part runs even when an earlier one failed (CI shows every
/// failure at once); the closing lines give each part's time and the machine's load meanwhile.
pub fn run(options: Options) -> Result<()> {
    let parts = options.parts();
    let load = LoadSampler::start();
    let started = Instant::now();
    let mut outcomes = Vec::new();
    for part in &parts {
        let mark = load.mark();
        let part_started = Instant::now();
        println!("\n=== {part} ===");
        let outcome = match part {
            Part::Host => host(&options.cargo_test_args),
            Part::Package => deb::build_and_test(),
            Part::Matrix => kernel_matrix::run(&options.matrix, &options.cargo_test_args),
        };
        let secs = part_started.elapsed().as_secs_f64();
        let mean_load = load.mean_since(mark);
        if let Err(error) = &outcome {
            println!("\n{part} FAILED: {error:#}");
        }
        outcomes.push((*part, secs, mean_load, outcome));
    }

    println!();
    let mut failed = Vec::new();
    for (part, secs, mean_load, outcome) in &outcomes {
        let load = mean_load.map_or_else(|| "?".to_owned(), |load| format!("{load:.1}"));
        let result = match outcome {
            Ok(()) => "passed".to_owned(),
            Err(error) => {
                failed.push(part.to_string());
                format!("FAILED: {error}")
            }
        };
        println!("time: {part}: {secs:.0} s (mean load {load}), {result}");
    }
    println!(
        "time: {:.0} s in all (mean load {})",
        started.elapsed().as_secs_f64(),
        load.mean_since(0)
            .map_or_else(|| "?".to_owned(), |load| format!("{load:.1}"))
    );
    if !failed.is_empty() {
        bail!("failed: {} (see above)", failed.join(", "));
    }
    println!(
        "tests passed: {}",
        parts
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}

/// The host suite; stops at its first failing step.
fn host(cargo_test_args: &[OsString]) -> Result<()> {
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
    // The package tests need the package and a Debian root: the package part runs them.
    test.args(["test", "--workspace", "--exclude", "fwlog-ebpf"])
        .args(["--exclude", "fwlog-package-tests"])
        .args(cargo_test_args)
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
    )
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

    use super::Part;
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

    fn parts(args: &[&str]) -> Option<Vec<Part>> {
        let cli = Cli::try_parse_from(["xtask", "test"].iter().chain(args)).ok()?;
        match cli.task {
            Task::Test(options) => Some(options.parts()),
            _ => None,
        }
    }

    #[test]
    fn the_plain_command_runs_every_part_and_flags_narrow_it() {
        use Part::{Host, Matrix, Package};
        assert_eq!(parts(&[]), Some(vec![Host, Package, Matrix]));
        assert_eq!(parts(&["--host-only"]), Some(vec![Host]));
        assert_eq!(parts(&["--", "ipv6_flow"]), Some(vec![Host]));
        assert_eq!(parts(&["--skip", "package,matrix"]), Some(vec![Host]));
        assert_eq!(parts(&["--skip", "host"]), Some(vec![Package, Matrix]));
        assert_eq!(
            parts(&["--kernel", "6.1", "--all-tests"]),
            Some(vec![Matrix])
        );
        assert_eq!(parts(&["--host-only", "--kernel", "6.1"]), None);
        assert_eq!(parts(&["--skip", "host", "--kernel", "6.1"]), None);
    }
}
