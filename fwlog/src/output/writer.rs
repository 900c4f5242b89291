//! The line format `--format` chose (json, text or ecs), behind one enum, so the collector
//! calls the same five methods whichever it is.

use std::ffi::OsStr;

use super::format::{ecs::EcsWriter, json::JsonWriter, text::TextWriter, EventWriter};
use crate::{
    host::HostIdentity,
    record::{FlowRecord, LossSite, StatsRecord, VerdictRecord},
    values::{ColourChoice, OutputFormat},
};

/// The writer `--format` chose; a plain enum, so the collector's hot path has no dynamic call.
pub enum FormatWriter {
    Json(JsonWriter),
    Text(TextWriter),
    Ecs(EcsWriter),
}

impl FormatWriter {
    /// Every line names `host`; `colour` only affects `text` (see [`colour_wanted`]).
    pub fn new(format: OutputFormat, colour: bool, host: &HostIdentity) -> Self {
        match format {
            OutputFormat::Json => FormatWriter::Json(JsonWriter::new(host)),
            OutputFormat::Text => FormatWriter::Text(TextWriter::new(colour, host)),
            OutputFormat::Ecs => FormatWriter::Ecs(EcsWriter::new(host)),
        }
    }
}

/// The same call on whichever writer it is (a `match`, not a virtual call).
macro_rules! on_each_writer {
    ($writer_enum:expr, $writer:ident => $call:expr) => {
        match $writer_enum {
            FormatWriter::Json($writer) => $call,
            FormatWriter::Text($writer) => $call,
            FormatWriter::Ecs($writer) => $call,
        }
    };
}

impl EventWriter for FormatWriter {
    fn verdict(&mut self, out: &mut Vec<u8>, record: &VerdictRecord) {
        on_each_writer!(self, writer => EventWriter::verdict(writer, out, record));
    }

    fn flow(&mut self, out: &mut Vec<u8>, record: &FlowRecord) {
        on_each_writer!(self, writer => EventWriter::flow(writer, out, record));
    }

    fn lost(&mut self, out: &mut Vec<u8>, unix_ns: i128, site: LossSite, count: u64) {
        on_each_writer!(self, writer => EventWriter::lost(writer, out, unix_ns, site, count));
    }

    fn flows_evicted(&mut self, out: &mut Vec<u8>, unix_ns: i128, count: u64) {
        on_each_writer!(self, writer => EventWriter::flows_evicted(writer, out, unix_ns, count));
    }

    fn stats(&mut self, out: &mut Vec<u8>, unix_ns: i128, stats: &StatsRecord) {
        on_each_writer!(self, writer => EventWriter::stats(writer, out, unix_ns, stats));
    }
}

/// Whether `--color` means colour: `auto` colours a terminal unless `NO_COLOR` is set to
/// anything but the empty string (<https://no-color.org>); `always`/`never` override both.
///
/// The caller passes `std::io::stdout().is_terminal()` and `std::env::var_os("NO_COLOR")`.
pub fn colour_wanted(
    choice: ColourChoice,
    stdout_is_terminal: bool,
    no_color: Option<&OsStr>,
) -> bool {
    match choice {
        ColourChoice::Always => true,
        ColourChoice::Never => false,
        ColourChoice::Auto => stdout_is_terminal && no_color.is_none_or(OsStr::is_empty),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_follows_the_flag_then_the_terminal_and_no_color() {
        let set = Some(OsStr::new("1"));
        let empty = Some(OsStr::new(""));
        assert!(colour_wanted(ColourChoice::Auto, true, None));
        assert!(colour_wanted(ColourChoice::Auto, true, empty));
        assert!(!colour_wanted(ColourChoice::Auto, true, set));
        assert!(!colour_wanted(ColourChoice::Auto, false, None));
        assert!(colour_wanted(ColourChoice::Always, false, set));
        assert!(!colour_wanted(ColourChoice::Never, true, None));
    }

    #[test]
    fn every_format_writes_through_the_trait() {
        for format in [OutputFormat::Json, OutputFormat::Text, OutputFormat::Ecs] {
            let host = HostIdentity::fixed("edge-1", None);
            let mut writer = FormatWriter::new(format, false, &host);
            let mut out = Vec::new();
            writer.lost(&mut out, 1_000_000_000, LossSite::Ring, 12);
            let line = String::from_utf8(out).expect("UTF-8");
            assert!(
                line.ends_with('\n') && line.contains("12"),
                "{format:?}: {line}"
            );
        }
    }
}
