//! One module per subcommand.

pub mod completions;
pub mod config;
pub mod install;
pub mod man;
pub mod rules;
pub mod status;
pub mod summary;
pub mod uninstall;
pub mod watch;

use anyhow::Result;

use crate::args::{Command, ConfigCommand};

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
