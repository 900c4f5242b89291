//! The sinks the settings ask for: stdout or a rotating file, and the system log beside either.

use std::{
    io::Write,
    path::Path,
    sync::{atomic::AtomicBool, Arc},
};

use anyhow::{Context as _, Result};

use super::sink::{rotating_file::RotatingFile, syslog::SyslogSink, tee::Tee};

/// Where the lines go.
pub struct Destination<'a> {
    /// Append to this file instead of stdout.
    pub file: Option<&'a Path>,
    /// Rotate the file before it would pass this many bytes.
    pub rotate_size: Option<u64>,
    /// Rotated files kept.
    pub rotate_keep: u32,
    /// Also send every line to the system log, with this prefix (`[FW-D]:`).
    pub syslog_prefix: Option<&'a str>,
}

/// The collector's sink, and the flag that makes a rotating file reopen itself (SIGHUP sets it).
pub type Opened = (Box<dyn Write>, Option<Arc<AtomicBool>>);

/// Opens stdout or the file, and the system log too when asked.
pub fn open(destination: &Destination) -> Result<Opened> {
    let (primary, reopen): (Box<dyn Write>, _) = match destination.file {
        Some(path) => {
            let file = RotatingFile::open(path, destination.rotate_size, destination.rotate_keep)
                .with_context(|| format!("opening the output file {}", path.display()))?;
            let reopen = file.reopen_flag();
            (Box::new(file), Some(reopen))
        }
        None => (Box::new(std::io::stdout()), None),
    };
    let Some(prefix) = destination.syslog_prefix else {
        return Ok((primary, reopen));
    };
    let syslog = SyslogSink::connect(prefix).context("--syslog")?;
    Ok((Box::new(Tee(primary, syslog)), reopen))
}
