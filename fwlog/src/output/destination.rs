//! The sinks the settings ask for (stdout or a rotating file, and the system log beside
//! either), each behind its own [`Spool`], so that one failing sink neither stops the others
//! nor gets a line twice.

use std::{
    path::Path,
    sync::{atomic::AtomicBool, Arc},
    time::Instant,
};

use anyhow::{Context as _, Result};

use super::{
    sink::{rotating_file::RotatingFile, stdout::FdSink, syslog::SyslogSink, LineSink},
    spool::{Batch, Spool},
};

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

/// Every sink, and stdout's descriptor when it is one of them (to poll for a closed pipe).
pub struct Outputs {
    spools: Vec<Spool>,
    stdout: Option<Arc<FdSink>>,
}

/// The collector's sinks, and the flag that makes a rotating file reopen itself (SIGHUP sets it).
pub type Opened = (Outputs, Option<Arc<AtomicBool>>);

/// Opens stdout or the file, and the system log too when asked.
pub fn open(destination: &Destination) -> Result<Opened> {
    let mut sinks: Vec<Box<dyn LineSink>> = Vec::new();
    let mut stdout = None;
    let mut reopen = None;
    match destination.file {
        Some(path) => {
            let file = RotatingFile::open(path, destination.rotate_size, destination.rotate_keep)
                .with_context(|| format!("opening the output file {}", path.display()))?;
            reopen = Some(file.reopen_flag());
            sinks.push(Box::new(file));
        }
        None => {
            let sink = Arc::new(FdSink::stdout().context("opening standard output")?);
            stdout = Some(Arc::clone(&sink));
            sinks.push(Box::new(sink));
        }
    }
    if let Some(prefix) = destination.syslog_prefix {
        sinks.push(Box::new(SyslogSink::connect(prefix).context("--syslog")?));
    }
    Ok((Outputs::new(sinks, stdout), reopen))
}

impl Outputs {
    pub fn new(sinks: Vec<Box<dyn LineSink>>, stdout: Option<Arc<FdSink>>) -> Self {
        Outputs {
            spools: sinks.into_iter().map(Spool::new).collect(),
            stdout,
        }
    }

    /// Hands `batch` to every sink's spool (each writes if it may), and empties it.
    /// `lost_line` formats a `lost` line (`where: output`) of a count.
    pub fn push(&mut self, batch: &mut Batch, mut lost_line: impl FnMut(&mut Vec<u8>, u64)) {
        let now = Instant::now();
        for spool in &mut self.spools {
            spool.push(batch, now, &mut lost_line);
        }
        batch.clear();
    }

    /// Whether stdout's reader went away (a closed pipe): the stream should end. Asks the
    /// kernel (poll, no wait), so it is seen while no line is written.
    pub fn closed(&self) -> bool {
        self.stdout.as_ref().is_some_and(|s| s.check_closed())
            || self.spools.iter().any(Spool::closed)
    }

    /// Whether every sink has taken every line (none waits, no loss is still to be said).
    pub fn all_written(&self) -> bool {
        self.spools.iter().all(Spool::all_written)
    }

    /// Events some sink never got, counted once per sink that missed them.
    pub fn lost(&self) -> u64 {
        self.spools.iter().map(Spool::lost).sum()
    }

    /// At exit: a last write to each sink; what is still pending counts as lost.
    pub fn finish(&mut self) {
        let now = Instant::now();
        for spool in &mut self.spools {
            spool.finish(now);
        }
    }
}
