//! Standard output as a sink of whole lines, written with write(2) on its descriptor (not
//! through `std::io::stdout()`, whose buffer would keep a cut line and write it later).
//!
//! A write that stops half-way through a line (a full disk) takes the cut line back when
//! standard output is a regular file it appends to; a closed pipe or socket (`| head -1`
//! exited) is seen at once, by write's EPIPE or, while idle, by poll's POLLERR/POLLHUP.

use std::{
    io,
    os::fd::{AsFd as _, OwnedFd},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
};

use nix::{
    errno::Errno,
    poll::{PollFd, PollFlags, PollTimeout},
    sys::stat::{fstat, SFlag},
    unistd::{ftruncate, lseek, Whence},
};

use super::{whole_lines, LineSink, Written};

/// A descriptor lines are written to: standard output, or any other for tests.
#[derive(Debug)]
pub struct FdSink {
    fd: OwnedFd,
    /// Set once the reader is gone (EPIPE, POLLERR, POLLHUP).
    closed: AtomicBool,
}

impl FdSink {
    /// A duplicate of descriptor 1 (same open file, so same offset and flags).
    pub fn stdout() -> io::Result<Self> {
        Ok(Self::new(io::stdout().as_fd().try_clone_to_owned()?))
    }

    pub fn new(fd: OwnedFd) -> Self {
        FdSink {
            fd,
            closed: AtomicBool::new(false),
        }
    }

    /// Asks the kernel, without waiting, whether the reader went away: poll reports
    /// POLLERR on a pipe whose reader closed and POLLHUP on a hung-up socket or terminal.
    pub fn check_closed(&self) -> bool {
        if self.closed.load(Ordering::Relaxed) {
            return true;
        }
        let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::empty())];
        let gone = match nix::poll::poll(&mut fds, PollTimeout::ZERO) {
            Ok(_) => fds[0]
                .revents()
                .is_some_and(|r| r.intersects(PollFlags::POLLERR | PollFlags::POLLHUP)),
            Err(_) => false,
        };
        if gone {
            self.closed.store(true, Ordering::Relaxed);
        }
        gone
    }

    /// After a write that ended `cut` bytes into a line: if the descriptor is a regular file
    /// whose offset is its end (nobody wrote after us), shortens it by those bytes and
    /// returns true.
    fn take_back(&self, cut: usize) -> bool {
        let Ok(stat) = fstat(&self.fd) else {
            return false;
        };
        if SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG {
            return false;
        }
        let Ok(offset) = lseek(&self.fd, 0, Whence::SeekCur) else {
            return false;
        };
        let Some(start) = offset
            .checked_sub(cut as i64)
            .filter(|_| offset == stat.st_size)
        else {
            return false;
        };
        ftruncate(&self.fd, start).is_ok() && lseek(&self.fd, start, Whence::SeekSet).is_ok()
    }
}

/// Shared with the poll for a closed reader ([`FdSink::check_closed`]).
impl LineSink for Arc<FdSink> {
    fn write_lines(&mut self, lines: &[u8]) -> Written {
        FdSink::write_lines(self, lines)
    }

    fn name(&self) -> String {
        "standard output".to_string()
    }

    fn closed(&self) -> bool {
        FdSink::closed(self)
    }
}

impl FdSink {
    /// Writes `lines` from their start, as far as the descriptor takes them.
    pub fn write_lines(&self, lines: &[u8]) -> Written {
        let mut done = 0;
        while done < lines.len() {
            match nix::unistd::write(&self.fd, &lines[done..]) {
                Ok(0) => return self.stopped(lines, done, Errno::EIO),
                Ok(n) => done += n,
                Err(Errno::EINTR) => {}
                Err(errno) => return self.stopped(lines, done, errno),
            }
        }
        Written::all(done)
    }

    /// Whether the reader is known to be gone.
    pub fn closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    fn stopped(&self, lines: &[u8], done: usize, errno: Errno) -> Written {
        if matches!(errno, Errno::EPIPE | Errno::ECONNRESET) {
            self.closed.store(true, Ordering::Relaxed);
        }
        let whole = whole_lines(&lines[..done]);
        let bytes = if whole < done && self.take_back(done - whole) {
            whole
        } else {
            done
        };
        Written {
            bytes,
            error: Some(io::Error::from(errno)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{
        fs::{File, OpenOptions},
        io::Read as _,
    };

    use super::*;

    #[test]
    fn dev_full_takes_nothing_and_says_why() {
        let full = OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .expect("/dev/full");
        let sink = FdSink::new(full.into());
        let written = sink.write_lines(b"one\ntwo\n");
        assert_eq!(written.bytes, 0);
        assert_eq!(
            written.error.map(|e| e.raw_os_error()),
            Some(Some(libc::ENOSPC))
        );
        assert!(!sink.closed() && !sink.check_closed());
    }

    #[test]
    fn a_closed_pipe_is_seen_by_poll_and_by_write() {
        let (reader, writer) = nix::unistd::pipe().expect("pipe");
        let sink = FdSink::new(writer);
        assert!(!sink.check_closed());
        assert_eq!(sink.write_lines(b"line\n").bytes, 5);
        drop(reader);
        assert!(sink.check_closed());
        let (reader, writer) = nix::unistd::pipe().expect("pipe");
        let sink = FdSink::new(writer);
        drop(reader);
        let written = sink.write_lines(b"line\n");
        assert_eq!(written.bytes, 0);
        assert!(written.error.is_some() && sink.closed());
    }

    #[test]
    fn a_regular_file_gets_whole_lines() {
        let path = std::env::temp_dir().join(format!("fwlog-fdsink-{}", std::process::id()));
        let file = File::create(&path).expect("create");
        let sink = FdSink::new(file.into());
        assert_eq!(sink.write_lines(b"a\nbb\n").bytes, 5);
        // The last 3 bytes taken back, as after a write cut there; the next line follows "a\n".
        assert!(sink.take_back(3));
        assert_eq!(sink.write_lines(b"c\n").bytes, 2);
        let mut text = String::new();
        File::open(&path)
            .expect("open")
            .read_to_string(&mut text)
            .expect("read");
        assert_eq!(text, "a\nc\n");
        let _ = std::fs::remove_file(&path);
    }
}
