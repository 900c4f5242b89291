//! The consumers the bench runs as child processes (fwlog, ulogd): a guard that stops them on
//! drop, and a reader that counts the lines they have written to their output file so far.

use std::{
    fs::File,
    io::{ErrorKind, Read as _},
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use nix::{
    sys::signal::{kill, Signal},
    unistd::Pid,
};

/// How long a child gets to exit after a polite signal before it is killed.
const EXIT_GRACE: Duration = Duration::from_secs(15);

/// A running child; stopped with `stop_signal` (then SIGKILL) when dropped.
pub struct ChildGuard {
    child: Option<Child>,
    name: &'static str,
    stop_signal: Signal,
}

/// How a child ended when asked to stop.
pub struct Stopped {
    pub status: ExitStatus,
    /// It ignored `stop_signal` for [`EXIT_GRACE`] and was killed.
    pub killed: bool,
}

/// Makes `command`'s process get `signal` when the bench dies, even by SIGKILL, so that no
/// consumer outlives it (fwlog then removes its rules itself).
pub fn stop_with_parent(command: &mut Command, signal: Signal) {
    let signal = signal as libc::c_ulong;
    // SAFETY: the closure runs between fork and exec and only makes one async-signal-safe
    // system call. The signal is sent when the spawning thread exits: the bench's main thread,
    // which outlives every consumer.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, signal) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
}

impl ChildGuard {
    pub fn new(child: Child, name: &'static str, stop_signal: Signal) -> Self {
        ChildGuard {
            child: Some(child),
            name,
            stop_signal,
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `/proc/PID`, for its CPU time and sleeps.
    pub fn proc_dir(&self) -> Option<PathBuf> {
        self.pid().map(|pid| PathBuf::from(format!("/proc/{pid}")))
    }

    /// `Some(status)` if the child has exited (it is then reaped and forgotten).
    pub fn exited(&mut self) -> Result<Option<ExitStatus>> {
        let Some(child) = self.child.as_mut() else {
            return Ok(None);
        };
        let status = child
            .try_wait()
            .with_context(|| format!("checking on {}", self.name))?;
        if status.is_some() {
            self.child = None;
        }
        Ok(status)
    }

    /// Sends the stop signal, waits (bounded), kills if it must. `None` if it was already gone.
    pub fn stop(&mut self) -> Result<Option<Stopped>> {
        let Some(mut child) = self.child.take() else {
            return Ok(None);
        };
        let pid = Pid::from_raw(i32::try_from(child.id()).context("pid out of range")?);
        if let Some(status) = child.try_wait().context("checking on a child")? {
            return Ok(Some(Stopped {
                status,
                killed: false,
            }));
        }
        // ESRCH: it exited between try_wait and kill; wait below reaps it.
        let _ = kill(pid, self.stop_signal);
        let deadline = Instant::now() + EXIT_GRACE;
        while Instant::now() < deadline {
            if let Some(status) = child
                .try_wait()
                .with_context(|| format!("waiting for {}", self.name))?
            {
                return Ok(Some(Stopped {
                    status,
                    killed: false,
                }));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let status = child
            .wait()
            .with_context(|| format!("waiting for the killed {}", self.name))?;
        Ok(Some(Stopped {
            status,
            killed: true,
        }))
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        match self.stop() {
            Ok(Some(Stopped { killed: true, .. })) => eprintln!(
                "warning: {} ignored {} for {EXIT_GRACE:?} and was killed",
                self.name, self.stop_signal
            ),
            Ok(_) => {}
            Err(error) => eprintln!("warning: stopping {}: {error:#}", self.name),
        }
    }
}

/// Counts the complete lines appended to a file (all, or those containing a marker), reading
/// only what is new at each call.
pub struct OutputTail {
    file: File,
    path: PathBuf,
    marker: Option<&'static str>,
    count: u64,
    /// Read, but not yet a complete line.
    pending: Vec<u8>,
    chunk: Vec<u8>,
    /// The file's length when last looked at, and when it was last seen to grow.
    seen_len: u64,
    grown_at: Option<Instant>,
}

/// At most this much is read per call, so that a caller polling after a flood notices when the
/// file stops growing instead of spending a second reading a gigabyte first.
const READ_PER_CALL: usize = 32 << 20;

impl OutputTail {
    pub fn open(path: &Path, marker: Option<&'static str>) -> Result<Self> {
        let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        Ok(OutputTail {
            file,
            path: path.to_owned(),
            marker,
            count: 0,
            pending: Vec::new(),
            chunk: vec![0; 1 << 20],
            seen_len: 0,
            grown_at: None,
        })
    }

    /// Matching lines read so far: up to [`READ_PER_CALL`] more bytes each call.
    pub fn lines(&mut self) -> Result<u64> {
        let len = self
            .file
            .metadata()
            .with_context(|| format!("reading the size of {}", self.path.display()))?
            .len();
        if len > self.seen_len {
            self.seen_len = len;
            self.grown_at = Some(Instant::now());
        }
        let mut read_now = 0;
        while read_now < READ_PER_CALL {
            match self.file.read(&mut self.chunk) {
                Ok(0) => break,
                Ok(read) => {
                    read_now += read;
                    self.pending.extend_from_slice(&self.chunk[..read]);
                    let marker = self.marker.map(str::as_bytes);
                    let (count, complete) = count_lines(&self.pending, marker);
                    self.count += count;
                    self.pending.drain(..complete);
                }
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(error) => {
                    return Err(error).with_context(|| format!("reading {}", self.path.display()))
                }
            }
        }
        Ok(self.count)
    }

    /// When the file was last seen longer than the time before (it is looked at on each call
    /// to [`OutputTail::lines`]): when the consumer last wrote, to within one poll.
    pub fn grown_at(&self) -> Option<Instant> {
        self.grown_at
    }
}

/// Complete lines in `buffer` (those containing `marker`, if given) and the length of the
/// complete part.
pub fn count_lines(buffer: &[u8], marker: Option<&[u8]>) -> (u64, usize) {
    let Some(last_newline) = buffer.iter().rposition(|&byte| byte == b'\n') else {
        return (0, 0);
    };
    let count = buffer[..last_newline]
        .split(|&byte| byte == b'\n')
        .filter(|line| {
            marker.is_none_or(|marker| line.windows(marker.len()).any(|window| window == marker))
        })
        .count();
    (count as u64, last_newline + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_complete_lines_count() {
        assert_eq!(count_lines(b"", None), (0, 0));
        assert_eq!(count_lines(b"partial", None), (0, 0));
        assert_eq!(count_lines(b"{}\n{}\n{", None), (2, 6));
        assert_eq!(count_lines(b"\n\n", None), (2, 2));
        let output =
            b"{\"event_type\":\"verdict\"}\n{\"event_type\":\"flow\"}\n{\"event_type\":\"verd";
        assert_eq!(
            count_lines(output, Some(b"\"event_type\":\"verdict\"")),
            (1, 47)
        );
    }
}
