//! One module per subcommand.

pub mod completions;
pub mod config;
pub mod install;
pub mod man;
pub mod rules;
mod setup;
pub mod status;
mod stream;
pub mod summary;
pub mod uninstall;
pub mod watch;

use anyhow::Result;

use crate::{
    args::{Command, ConfigCommand},
    firewall::plan::RuleOptions,
    netns::NetNs,
    settings::RuleSettings,
};

pub fn run(command: Command) -> Result<()> {
    match command {
        Command::Watch(args) => watch::run(args),
        Command::Rules(args) => rules::run(args),
        Command::Uninstall(args) => uninstall::run(args),
        Command::Install(args) => install::run(args),
        Command::Status(args) => status::run(args),
        Command::Summary(args) => summary::run(args),
        Command::Completions(args) => completions::run(args),
        Command::Man(args) => man::run(args),
        Command::Config {
            command: ConfigCommand::Check { config },
        } => config::check(config.as_deref()),
    }
}

/// The rule options for resolved interfaces in this namespace.
fn rule_options(settings: &RuleSettings, interfaces: Vec<String>, netns: NetNs) -> RuleOptions {
    RuleOptions {
        interfaces,
        pin_dir: netns.pin_dir(),
        kernel_log_prefix: settings.kernel_log.then(|| settings.prefix.clone()),
        inbound: settings.inbound.action(),
        outbound: settings.outbound.action(),
        allow_in: settings.allow_in.clone(),
    }
}
