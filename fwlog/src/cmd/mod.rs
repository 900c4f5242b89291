//! One module per subcommand.

pub mod completions;
pub mod man;
pub mod rules;
pub mod summary;
pub mod uninstall;
pub mod watch;

use anyhow::Result;

use crate::{
    args::{Command, RuleArgs},
    firewall::plan::RuleOptions,
    netns::NetNs,
};

pub fn run(command: Command) -> Result<()> {
    match command {
        Command::Watch(args) => watch::run(args),
        Command::Rules(args) => rules::run(args),
        Command::Uninstall => uninstall::run(),
        Command::Summary(args) => summary::run(args),
        Command::Completions(args) => completions::run(args),
        Command::Man(args) => man::run(args),
    }
}

/// The rule options for resolved interfaces in this namespace.
fn rule_options(args: &RuleArgs, interfaces: Vec<String>, netns: NetNs) -> RuleOptions {
    RuleOptions {
        interfaces,
        pin_dir: netns.pin_dir(),
        kernel_log_prefix: args.kernel_log.then(|| args.prefix.clone()),
        inbound: args.inbound.action(),
        outbound: args.outbound.action(),
        allow_in: args.allow_in.clone(),
    }
}
