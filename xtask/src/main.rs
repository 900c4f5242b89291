//! fwlog's developer tasks: the steps plain cargo cannot do (toolchains, system tools, root).

mod bench;
mod build;
mod cmd;
mod deb;
mod interrupt;
mod kernel_matrix;
mod load;
mod run;
mod setup;
mod test;
#[cfg(test)]
mod tidy;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "fwlog's developer tasks; run as `cargo xtask <TASK>`")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what building and testing need (nightly rust-src, bpf-linker, iptables & co, bpffs).
    Setup(kernel_matrix::SetupOptions),
    /// Build fwlog, eBPF programs included, and print the binary's path.
    Build(build::Options),
    /// Build fwlog and run it as root with the arguments after `--`.
    Run(run::Options),
    /// Every test: formatting, lints, unit and kernel tests on this kernel, the package tests, and the
    /// kernel matrix in qemu guests (--host-only, --skip or --kernel for a part).
    Test(test::Options),
    /// Flood new connections through fwlog, `-j LOG`, NFLOG + ulogd and no logging; compare losses and CPU
    /// (`--established`: what fwlog costs the traffic of open connections).
    Bench(bench::Options),
    /// Build the Debian package (fwlog_VERSION_amd64.deb); with `--test`, test it too.
    Deb(deb::Options),
    /// Inside a kernel-matrix guest: run the test binaries of the host's plan (`test --kernel` starts it).
    #[command(hide = true)]
    KernelGuest(kernel_matrix::guest::Options),
}

fn main() -> anyhow::Result<ExitCode> {
    match Cli::parse().task {
        Task::Setup(options) => {
            setup::run()?;
            kernel_matrix::setup(options)?;
        }
        Task::Build(options) => build::run(options)?,
        Task::Run(options) => return run::run(options),
        Task::Test(options) => test::run(options)?,
        Task::Bench(options) => bench::run(options)?,
        Task::Deb(options) => deb::run(options)?,
        Task::KernelGuest(options) => return kernel_matrix::guest::run(options),
    }
    Ok(ExitCode::SUCCESS)
}
