//! `fwlog man [--out DIR]`: the man page, from the same clap definition as `--help`, in
//! section 8 (system administration: fwlog is installed in /usr/sbin and needs root).

use std::{
    io::{self, Write as _},
    path::Path,
};

use anyhow::{Context as _, Result};
use clap::CommandFactory as _;

use crate::args::{Cli, ManArgs};

pub fn run(args: ManArgs) -> Result<()> {
    match args.out {
        Some(dir) => write_pages(&dir),
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(Cli::command())
                .section(SECTION)
                .render(&mut page)
                .context("rendering the man page")?;
            io::stdout()
                .lock()
                .write_all(&page)
                .context("writing the man page to stdout")
        }
    }
}

const SECTION: &str = "8";

/// fwlog.8 and fwlog-SUBCOMMAND.8 for each subcommand, in `dir` (created if missing).
fn write_pages(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    // clap_mangen::generate_to, with our section: it has no way to set one.
    fn generate(command: clap::Command, dir: &Path) -> Result<()> {
        for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
            generate(sub.clone(), dir)?;
        }
        clap_mangen::Man::new(command)
            .section(SECTION)
            .generate_to(dir)
            .with_context(|| format!("writing man pages into {}", dir.display()))?;
        Ok(())
    }
    let mut command = Cli::command().disable_help_subcommand(true);
    command.build();
    generate(command, dir)?;
    eprintln!(
        "fwlog: man pages written to {} (try `man -l {}/fwlog.{SECTION}`)",
        dir.display(),
        dir.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_page_per_command() {
        let dir = std::env::temp_dir().join(format!("fwlog-man-test-{}", std::process::id()));
        write_pages(&dir).expect("writable temp dir");
        for page in ["fwlog.8", "fwlog-watch.8", "fwlog-summary.8", "fwlog-man.8"] {
            let text = std::fs::read_to_string(dir.join(page)).expect(page);
            assert!(text.starts_with(".ie"), "{page} is not roff");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
