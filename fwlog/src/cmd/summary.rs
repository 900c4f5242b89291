//! `fwlog summary [FILE...]`: who knocked, who we called, which processes and ports, per hour.
//! An input that cannot be read to its end is named in the report and on stderr, the others
//! are counted all the same, and the exit status is 1.

use std::{
    io::{self, Write as _},
    path::Path,
};

use anyhow::{bail, Context as _, Result};

use crate::{
    args::SummaryArgs,
    printable, settings,
    summary::{
        input::Input,
        render::render_text,
        report::Report,
        tally::{Limits, Tally},
        tally_inputs, Selection,
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
    let files = tally_inputs(&inputs, &mut tally, &selection);
    let bad: Vec<String> = files
        .iter()
        .filter_map(|file| {
            let error = file.error.as_ref()?;
            Some(format!(
                "{}: {} after {} lines",
                printable::escaped(&file.name),
                printable::escaped(error),
                file.lines
            ))
        })
        .collect();
    let report = Report::new(&tally, files, (since, until), args.top);

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
        Err(error) if error.kind() == io::ErrorKind::BrokenPipe => {}
        result => result.context("writing the summary to stdout")?,
    }
    // The report counts what could be read; the exit status says that some could not.
    if !bad.is_empty() {
        bail!(
            "{} of {} inputs could not be read to the end (the summary counts their lines \
             before that): {}",
            bad.len(),
            inputs.len(),
            bad.join("; ")
        );
    }
    Ok(())
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
