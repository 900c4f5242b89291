//! fwlog: iptables' LOG_AND_* firewall with eBPF logging, as JSON lines.

mod args;
mod cmd;
mod collector;
mod config;
mod cpu_rings;
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
mod log_line;
mod metrics;
mod netns;
mod output;
mod pin_dir;
mod preflight;
mod printable;
mod record;
mod rtnl;
mod session;
mod settings;
mod ssh_guard;
mod summary;
mod systemd;
mod tc_attach;
mod unread;
mod values;

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = args::Cli::parse();
    match cmd::run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("fwlog: {}", error_line(&error));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, as `{:#}` joins them, less any cause that says nothing (an empty
/// message would leave "…: " with no reason at the end of the line).
fn error_line(error: &anyhow::Error) -> String {
    let causes: Vec<String> = error
        .chain()
        .map(|cause| cause.to_string().trim().to_string())
        .filter(|text| !text.is_empty())
        .collect();
    if causes.is_empty() {
        "failed, and no step said why (please report this)".to_string()
    } else {
        causes.join(": ")
    }
}

#[cfg(test)]
mod tests {
    use super::error_line;

    #[test]
    fn a_cause_that_says_nothing_leaves_no_empty_reason() {
        let silent = std::io::Error::other("");
        let error = anyhow::Error::new(silent).context("running iptables-restore");
        assert_eq!(error_line(&error), "running iptables-restore");
        let error = anyhow::anyhow!("exit status 1").context("removing the rules");
        assert_eq!(error_line(&error), "removing the rules: exit status 1");
        assert_eq!(
            error_line(&anyhow::anyhow!("")),
            "failed, and no step said why (please report this)"
        );
    }
}
