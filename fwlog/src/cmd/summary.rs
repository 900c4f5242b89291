//! `fwlog summary [FILE...]`: who knocked, who we called, which processes and ports, per hour.

use std::{
    io::{self, Write as _},
    path::Path,
};

use anyhow::{bail, Context as _, Result};

use crate::{
    args::SummaryArgs,
    settings,
    summary::{
        input::Input,
        render::render_text,
        report::Report,
        tally::{Limits, Tally},
        tally_lines, Selection,
    },
};

/// Where `fwlog summary` looks without a FILE.
pub const DEFAULT_LOG: &str = "/var/log/fwlog/fwlog.jsonl";

pub fn run(args: SummaryArgs) -> Result<()> {
    let inputs = inputs(&args.files)?;
    let now = jiff::Timestamp::now();
    let since = args
        .since
        .as_ref()
        .map(|b| b.resolve(now))
        .transpose()
        .context("--since")?;
    let until = args
        .until
        .as_ref()
        .map(|b| b.resolve(now))
        .transpose()
        .context("--until")?;
    if let (Some(since), Some(until)) = (since, until) {
        if since >= until {
            bail!("--since must be before --until");
        }
    }
    let selection = Selection {
        since,
        until,
        filter: settings::filter(&args.filter),
    };

    let mut tally = Tally::new(Limits::default());
    for input in &inputs {
        let mut reader = input.open()?;
        tally_lines(&mut *reader, &mut tally, &selection)
            .with_context(|| format!("reading {}", input.name()))?;
    }
    let names = inputs.iter().map(Input::name).collect();
    let report = Report::new(&tally, names, (since, until), args.top);

    let mut stdout = io::stdout().lock();
    let written = if args.json {
        serde_json::to_writer(&mut stdout, &report)
            .map_err(io::Error::from)
            .and_then(|()| writeln!(stdout))
    } else {
        stdout.write_all(render_text(&report).as_bytes())
    };
    match written.and_then(|()| stdout.flush()) {
        // `fwlog summary | head` is not an error.
        Err(error) if error.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        result => result.context("writing the summary to stdout"),
    }
}

/// The inputs named, or the default log (said on stderr) when none is.
fn inputs(files: &[std::path::PathBuf]) -> Result<Vec<Input>> {
    if !files.is_empty() {
        return Ok(files.iter().map(|path| Input::from_arg(path)).collect());
    }
    let default = Path::new(DEFAULT_LOG);
    if !default.exists() {
        bail!(
            "no FILE given and {DEFAULT_LOG} does not exist: name the files `fwlog watch` wrote \
             (e.g. `fwlog watch > fw.jsonl`, then `fwlog summary fw.jsonl`), or `-` for stdin"
        );
    }
    eprintln!("fwlog: no FILE given, reading {DEFAULT_LOG}");
    Ok(vec![Input::File(default.to_path_buf())])
}
