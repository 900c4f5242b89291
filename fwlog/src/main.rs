//! fwlog: iptables' LOG_AND_* firewall with eBPF logging, as JSON lines.

mod args;
mod cmd;
mod collector;
mod config;
#[cfg(test)]
mod ebpf_object_names;
mod endpoints;
mod enrich;
mod filter;
mod firewall;
mod host;
mod installation;
mod interfaces;
mod interrupt;
mod kernel_features;
mod loader;
mod metrics;
mod netns;
mod output;
mod pin_dir;
mod preflight;
mod record;
mod rtnl;
mod session;
mod settings;
mod ssh_guard;
mod summary;
mod systemd;
mod tc_attach;
mod values;

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = args::Cli::parse();
    match cmd::run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("fwlog: {error:#}");
            ExitCode::FAILURE
        }
    }
}
