//! `--output FILE --rotate-size N --rotate-keep K`: an append-only log file rotated by size.
//!
//! Hand-written rather than the file-rotate crate: its byte limit (`ContentLimit::Bytes`)
//! splits a write across two files, its `BytesSurpassed` rotates only after the file has
//! grown past the limit, and it cannot reopen a path that logrotate moved away. Here the
//! rotation happens between two `write` calls, before the one that would cross the limit;
//! the collector hands it whole lines, so no line is ever split across files, and a write
//! a full disk cuts is taken back to its last whole line. Do not put a `BufWriter` in
//! front: it would cut writes at its own boundaries.

use super::{whole_lines, LineSink, Written};
use std::{
    fs::{self, DirBuilder, File, OpenOptions},
    io::{self, Write},
    os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _},
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
};

/// New log files: the owner reads and writes, the group (adm, say) reads.
const FILE_MODE: u32 = 0o640;
/// Directories created for the log file.
const DIR_MODE: u32 = 0o750;

/// An append-only file that moves itself to `FILE.1` before it would grow past `max_bytes`.
#[derive(Debug)]
pub struct RotatingFile {
    path: PathBuf,
    /// `None`: never rotate (an external logrotate moves the file, SIGHUP reopens it).
    max_bytes: Option<u64>,
    /// Rotated files kept: `FILE.1` (newest) … `FILE.keep`.
    keep: u32,
    file: File,
    /// Bytes in `file`, counted from its size at open.
    len: u64,
    /// Set by a SIGHUP handler: the next write reopens the path first.
    reopen_requested: Arc<AtomicBool>,
}

impl RotatingFile {
    /// Appends whole lines; returns how many bytes are in the file. A write cut by a full
    /// disk is taken back to the end of its last whole line (when nobody else appended).
    fn append(&mut self, bytes: &[u8]) -> (usize, io::Result<()>) {
        let mut done = 0;
        while done < bytes.len() {
            match self.file.write(&bytes[done..]) {
                Ok(0) => return self.cut(bytes, done, io::ErrorKind::WriteZero.into()),
                Ok(n) => done += n,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return self.cut(bytes, done, error),
            }
        }
        self.len += done as u64;
        (done, Ok(()))
    }

    fn cut(&mut self, bytes: &[u8], done: usize, error: io::Error) -> (usize, io::Result<()>) {
        let whole = whole_lines(&bytes[..done]);
        let expected = self.len + done as u64;
        let kept = match self.file.metadata() {
            Ok(metadata) if metadata.len() == expected && whole < done => {
                match self.file.set_len(self.len + whole as u64) {
                    Ok(()) => whole,
                    Err(_) => done,
                }
            }
            Ok(metadata) => {
                self.len = metadata.len().saturating_sub(done as u64);
                done
            }
            Err(_) => done,
        };
        self.len += kept as u64;
        (kept, Err(error))
    }

    /// Opens `path` for appending, creating it (mode 0640) and its parent directories (0750).
    pub fn open(path: impl Into<PathBuf>, max_bytes: Option<u64>, keep: u32) -> io::Result<Self> {
        let path = path.into();
        let (file, len) = open_append(&path)?;
        Ok(RotatingFile {
            path,
            max_bytes,
            keep,
            file,
            len,
            reopen_requested: Arc::new(AtomicBool::new(false)),
        })
    }

    /// The path lines are written to.
    #[cfg(test)]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens the path again, for SIGHUP after an external `mv FILE FILE.old`: from now on
    /// lines go to a new FILE, and the moved file keeps what it had.
    pub fn reopen(&mut self) -> io::Result<()> {
        self.file.flush()?;
        let (file, len) = open_append(&self.path)?;
        self.file = file;
        self.len = len;
        Ok(())
    }

    /// A flag for a signal handler that cannot reach this writer (the collector owns it):
    /// storing `true` makes the next write [`reopen`](Self::reopen) the path first.
    pub fn reopen_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.reopen_requested)
    }

    /// Moves FILE.(K-1) → FILE.K … FILE → FILE.1 (FILE.K's old content is dropped), then
    /// opens a new FILE. With K = 0 the old FILE is simply removed.
    fn rotate(&mut self) -> io::Result<()> {
        self.file.flush()?;
        if self.keep == 0 {
            remove_if_present(&self.path)?;
        } else {
            // rename() replaces its target, so FILE.K goes when FILE.(K-1) takes its name.
            for n in (1..self.keep).rev() {
                rename_if_present(&self.numbered(n), &self.numbered(n + 1))?;
            }
            rename_if_present(&self.path, &self.numbered(1))?;
        }
        let (file, len) = open_append(&self.path)?;
        self.file = file;
        self.len = len;
        Ok(())
    }

    /// `FILE.n`.
    fn numbered(&self, n: u32) -> PathBuf {
        let mut name = self.path.clone().into_os_string();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }
}

impl LineSink for RotatingFile {
    /// Writes `lines` into one file: the current one, or a fresh one if they would take the
    /// current one past the limit; a batch is split at line ends so that no file passes the
    /// limit, and a single line longer than the limit goes whole into a fresh file.
    fn write_lines(&mut self, lines: &[u8]) -> Written {
        let mut done = 0;
        let error = self.write_from(lines, &mut done).err();
        Written { bytes: done, error }
    }

    fn name(&self) -> String {
        format!("the output file {}", self.path.display())
    }
}

impl RotatingFile {
    /// [`LineSink::write_lines`], counting in `done` the bytes that are in a file.
    fn write_from(&mut self, lines: &[u8], done: &mut usize) -> io::Result<()> {
        if self.reopen_requested.swap(false, Ordering::Relaxed) {
            self.reopen()?;
        }
        while *done < lines.len() {
            let rest = &lines[*done..];
            let room = self
                .max_bytes
                .map_or(u64::MAX, |max| max.saturating_sub(self.len));
            let end = if rest.len() as u64 <= room {
                rest.len()
            } else {
                match rest[..room as usize].iter().rposition(|&b| b == b'\n') {
                    Some(end) => end + 1,
                    None if self.len > 0 => {
                        self.rotate()?;
                        continue;
                    }
                    None => rest
                        .iter()
                        .position(|&b| b == b'\n')
                        .map_or(rest.len(), |e| e + 1),
                }
            };
            let (written, result) = self.append(&rest[..end]);
            *done += written;
            result?;
            if *done < lines.len() {
                self.rotate()?;
            }
        }
        Ok(())
    }
}

/// For tests and callers that want all or an error.
impl Write for RotatingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.write_lines(buf);
        match written.error {
            Some(error) if written.bytes == 0 => Err(error),
            _ => Ok(written.bytes),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

fn open_append(path: &Path) -> io::Result<(File, u64)> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(parent)
            .map_err(|e| with_path(e, "cannot create directory", parent))?;
    }
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(FILE_MODE)
        .open(path)
        .map_err(|e| with_path(e, "cannot open", path))?;
    let len = file.metadata()?.len();
    Ok((file, len))
}

fn rename_if_present(from: &Path, to: &Path) -> io::Result<()> {
    match fs::rename(from, to) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(with_path(e, "cannot rotate", from)),
        _ => Ok(()),
    }
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(with_path(e, "cannot remove", path)),
        _ => Ok(()),
    }
}

/// An io::Error that names the file, keeping its kind.
fn with_path(error: io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(error.kind(), format!("{what} {}: {error}", path.display()))
}

#[cfg(test)]
mod tests {
    use std::{os::unix::fs::PermissionsExt as _, sync::atomic::AtomicU32};

    use super::*;

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> TempDir {
            static NEXT: AtomicU32 = AtomicU32::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let path =
                std::env::temp_dir().join(format!("fwlog-rotating-{}-{n}", std::process::id()));
            let _ = fs::remove_dir_all(&path);
            fs::create_dir_all(&path).expect("create the test directory");
            TempDir(path)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn line(n: usize) -> String {
        format!("{{\"n\":{n},\"pad\":\"{}\"}}\n", "x".repeat(n % 7))
    }

    fn read(path: &Path) -> String {
        fs::read_to_string(path).unwrap_or_default()
    }

    fn sorted_names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .expect("list the test directory")
            .map(|entry| {
                entry
                    .expect("entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        names.sort();
        names
    }

    #[test]
    fn rotation_keeps_exactly_k_old_files_of_whole_lines() {
        let dir = TempDir::new();
        let path = dir.0.join("log/fwlog.jsonl");
        let mut out = RotatingFile::open(&path, Some(100), 3).expect("open");
        for n in 0..200 {
            out.write_all(line(n).as_bytes()).expect("write");
        }
        out.flush().expect("flush");
        assert_eq!(
            sorted_names(&dir.0.join("log")),
            [
                "fwlog.jsonl",
                "fwlog.jsonl.1",
                "fwlog.jsonl.2",
                "fwlog.jsonl.3"
            ]
        );
        // Newest last: FILE.3, FILE.2, FILE.1, FILE continue each other.
        let mut expected_next = None;
        for name in [
            "fwlog.jsonl.3",
            "fwlog.jsonl.2",
            "fwlog.jsonl.1",
            "fwlog.jsonl",
        ] {
            let content = read(&dir.0.join("log").join(name));
            assert!(content.len() <= 100, "{name} holds {} bytes", content.len());
            assert!(content.ends_with('\n'), "{name} ends in a cut line");
            for text in content.lines() {
                let n: usize = text[5..text.find(',').expect("a comma")]
                    .parse()
                    .expect("a line number");
                assert_eq!(format!("{text}\n"), line(n), "{name} holds a cut line");
                if let Some(next) = expected_next {
                    assert_eq!(n, next, "a line is missing before {name}");
                }
                expected_next = Some(n + 1);
            }
        }
        assert_eq!(expected_next, Some(200));
    }

    #[test]
    fn nothing_is_lost_when_keep_is_large_enough() {
        let dir = TempDir::new();
        let path = dir.0.join("fwlog.jsonl");
        let mut out = RotatingFile::open(&path, Some(256), 1000).expect("open");
        let mut batch = String::new();
        for n in 0..500 {
            batch += &line(n);
            if n % 3 == 2 {
                out.write_all(batch.as_bytes()).expect("write");
                batch.clear();
            }
        }
        out.write_all(batch.as_bytes()).expect("write");
        let names = sorted_names(&dir.0);
        assert!(names.len() > 10, "it rotated: {names:?}");
        let lines: usize = names
            .iter()
            .map(|name| read(&dir.0.join(name)).lines().count())
            .sum();
        assert_eq!(lines, 500);
    }

    #[test]
    fn a_write_larger_than_the_limit_goes_whole_into_a_fresh_file() {
        let dir = TempDir::new();
        let path = dir.0.join("fwlog.jsonl");
        let mut out = RotatingFile::open(&path, Some(50), 5).expect("open");
        out.write_all(b"small line\n").expect("write");
        let big = format!("{}\n", "y".repeat(120));
        out.write_all(big.as_bytes()).expect("write");
        assert_eq!(read(&path), big);
        assert_eq!(read(&dir.0.join("fwlog.jsonl.1")), "small line\n");
        out.write_all(b"after\n").expect("write");
        assert_eq!(read(&path), "after\n");
        assert_eq!(read(&dir.0.join("fwlog.jsonl.1")), big);
        assert_eq!(read(&dir.0.join("fwlog.jsonl.2")), "small line\n");
    }

    #[test]
    fn a_batch_of_lines_is_split_at_line_ends_to_respect_the_limit() {
        let dir = TempDir::new();
        let path = dir.0.join("fwlog.jsonl");
        let mut out = RotatingFile::open(&path, Some(25), 9).expect("open");
        // One write of four 10-byte lines: 20 fit in a 25-byte file, then 20 in the next.
        out.write_all(b"line 0001\nline 0002\nline 0003\nline 0004\n")
            .expect("write");
        assert_eq!(read(&dir.0.join("fwlog.jsonl.1")), "line 0001\nline 0002\n");
        assert_eq!(read(&path), "line 0003\nline 0004\n");
    }

    #[test]
    fn appends_to_an_existing_file_and_counts_it() {
        let dir = TempDir::new();
        let path = dir.0.join("fwlog.jsonl");
        fs::write(&path, "old line 1\nold line 2\n").expect("seed");
        let mut out = RotatingFile::open(&path, Some(30), 2).expect("open");
        out.write_all(b"new line 1\n").expect("write");
        assert_eq!(
            read(&dir.0.join("fwlog.jsonl.1")),
            "old line 1\nold line 2\n"
        );
        assert_eq!(read(&path), "new line 1\n");
    }

    #[test]
    fn keep_zero_and_no_limit() {
        let dir = TempDir::new();
        let path = dir.0.join("fwlog.jsonl");
        let mut out = RotatingFile::open(&path, Some(12), 0).expect("open");
        out.write_all(b"first line\n").expect("write");
        out.write_all(b"second line\n").expect("write");
        assert_eq!(sorted_names(&dir.0), ["fwlog.jsonl"]);
        assert_eq!(read(&path), "second line\n");

        let mut unlimited = RotatingFile::open(dir.0.join("all"), None, 3).expect("open");
        for n in 0..100 {
            unlimited.write_all(line(n).as_bytes()).expect("write");
        }
        assert_eq!(read(&dir.0.join("all")).lines().count(), 100);
        assert!(!dir.0.join("all.1").exists());
    }

    #[test]
    fn reopen_after_an_external_rename_starts_a_new_file() {
        let dir = TempDir::new();
        let path = dir.0.join("fwlog.jsonl");
        let mut out = RotatingFile::open(&path, None, 0).expect("open");
        assert_eq!(out.path(), path);
        out.write_all(b"before mv\n").expect("write");
        let moved = dir.0.join("fwlog.jsonl.old");
        fs::rename(&path, &moved).expect("mv");
        out.write_all(b"between mv and SIGHUP\n").expect("write");
        out.reopen().expect("reopen");
        out.write_all(b"after SIGHUP\n").expect("write");
        assert_eq!(read(&moved), "before mv\nbetween mv and SIGHUP\n");
        assert_eq!(read(&path), "after SIGHUP\n");
    }

    #[test]
    fn the_reopen_flag_reopens_at_the_next_write() {
        let dir = TempDir::new();
        let path = dir.0.join("fwlog.jsonl");
        let mut out = RotatingFile::open(&path, Some(1 << 20), 1).expect("open");
        let flag = out.reopen_flag();
        out.write_all(b"line 1\n").expect("write");
        let moved = dir.0.join("by-logrotate");
        fs::rename(&path, &moved).expect("mv");
        flag.store(true, Ordering::Relaxed);
        out.write_all(b"line 2\n").expect("write");
        out.write_all(b"line 3\n").expect("write");
        assert_eq!(read(&moved), "line 1\n");
        assert_eq!(read(&path), "line 2\nline 3\n");
        assert!(!flag.load(Ordering::Relaxed));
    }

    #[test]
    fn new_files_are_not_world_readable() {
        let dir = TempDir::new();
        let path = dir.0.join("sub/fwlog.jsonl");
        RotatingFile::open(&path, None, 0).expect("open");
        let mode = fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode & !FILE_MODE, 0, "mode {mode:o}");
        assert_eq!(mode & 0o600, 0o600, "mode {mode:o}");
    }
}
