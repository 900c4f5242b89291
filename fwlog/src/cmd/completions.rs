//! `fwlog completions SHELL`: a completion script for bash, zsh, fish, elvish or PowerShell.

use std::io::{self, Write as _};

use anyhow::{Context as _, Result};
use clap::CommandFactory as _;

use crate::args::{Cli, CompletionsArgs};

pub fn run(args: CompletionsArgs) -> Result<()> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "fwlog", &mut script);
    io::stdout()
        .lock()
        .write_all(&script)
        .context("writing the completion script to stdout")
}

#[cfg(test)]
mod tests {
    use clap_complete::Shell;

    use super::*;

    #[test]
    fn scripts_know_the_subcommands_and_options() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "fwlog", &mut script);
            let script = String::from_utf8(script).expect("UTF-8");
            for word in ["summary", "watch", "completions", "since"] {
                assert!(script.contains(word), "{shell}: no {word}");
            }
        }
    }
}
