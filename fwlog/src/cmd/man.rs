//! `fwlog man [--out DIR]`: the man page, from the same clap definition as `--help`.

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
                .render(&mut page)
                .context("rendering the man page")?;
            io::stdout()
                .lock()
                .write_all(&page)
                .context("writing the man page to stdout")
        }
    }
}

/// fwlog.1 and fwlog-SUBCOMMAND.1 for each subcommand, in `dir` (created if missing).
fn write_pages(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    clap_mangen::generate_to(Cli::command(), dir)
        .with_context(|| format!("writing man pages into {}", dir.display()))?;
    eprintln!(
        "fwlog: man pages written to {} (try `man -l {}/fwlog.1`)",
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
        for page in ["fwlog.1", "fwlog-watch.1", "fwlog-summary.1", "fwlog-man.1"] {
            let text = std::fs::read_to_string(dir.join(page)).expect(page);
            assert!(text.starts_with(".ie"), "{page} is not roff");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
