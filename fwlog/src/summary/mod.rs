//! `fwlog summary`: fwlog's JSON lines read back and counted (input → `log_line` → tally → report →
//! text tables or one JSON object), in bounded memory.

pub mod hosts;
pub mod input;
pub mod render;
pub mod report;
pub mod tally;
pub mod time;

use std::io::{self, BufRead};

use self::{input::Input, report::FileReport, tally::Tally, time::parse_timestamp_micros};
use crate::{filter::Filter, log_line::LogLine};

/// Which lines count: `--since` (inclusive) and `--until` (exclusive), in microseconds since
/// the Unix epoch, and the event filters.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub filter: Filter,
}

impl Selection {
    fn in_time_range(&self, at: i64) -> bool {
        self.since.is_none_or(|since| at >= since) && self.until.is_none_or(|until| at < until)
    }
}

/// Counts each input into `tally`, one after the other: an input that cannot be opened or
/// read to its end (a corrupt `.gz`, a vanished file) is reported with the lines it gave, and
/// the others are counted all the same.
pub fn tally_inputs(inputs: &[Input], tally: &mut Tally, selection: &Selection) -> Vec<FileReport> {
    inputs
        .iter()
        .map(|input| tally_input(input.name(), || input.open(), tally, selection))
        .collect()
}

/// [`tally_inputs`] for one input, opened by `open`.
pub fn tally_input(
    name: String,
    open: impl FnOnce() -> anyhow::Result<Box<dyn BufRead>>,
    tally: &mut Tally,
    selection: &Selection,
) -> FileReport {
    let before = tally.lines;
    let error = match open() {
        Ok(mut reader) => tally_lines(&mut *reader, tally, selection)
            .err()
            .map(|error| error.to_string()),
        Err(error) => Some(format!("{error:#}")),
    };
    FileReport {
        name,
        lines: tally.lines.read - before.read,
        skipped: tally.lines.skipped - before.skipped,
        error,
    }
}

/// Counts every line of `reader` into `tally`.
pub fn tally_lines(
    reader: &mut dyn BufRead,
    tally: &mut Tally,
    selection: &Selection,
) -> io::Result<()> {
    input::for_each_line(reader, |bytes| {
        let Some(bytes) = bytes else {
            tally.lines.read += 1;
            tally.lines.skipped += 1;
            return;
        };
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        tally.lines.read += 1;
        let parsed = LogLine::parse(bytes);
        let at = parsed
            .as_ref()
            .and_then(|line| line.timestamp.as_deref())
            .and_then(parse_timestamp_micros);
        let (Some(line), Some(at)) = (parsed, at) else {
            tally.lines.skipped += 1;
            return;
        };
        if !selection.in_time_range(at) {
            tally.lines.outside_time_range += 1;
            return;
        }
        tally.add(&line, at, &selection.filter);
    })
}

#[cfg(test)]
mod bench;
#[cfg(test)]
mod tests;
