//! Where `summary` reads from: files or stdin, gzip-compressed or not, line by line into one
//! reused buffer (never a whole file in memory).

use std::{
    fs::File,
    io::{self, BufRead, BufReader, Read},
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result};
use flate2::read::MultiGzDecoder;

/// Longer lines are skipped (counted) rather than buffered: fwlog's lines are < 1 KiB.
pub const MAX_LINE_BYTES: usize = 1 << 20;

const READ_BUFFER_BYTES: usize = 256 << 10;
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// One input named on the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    Stdin,
    File(PathBuf),
}

impl Input {
    pub fn from_arg(path: &Path) -> Self {
        if path.as_os_str() == "-" {
            Input::Stdin
        } else {
            Input::File(path.to_path_buf())
        }
    }

    /// How the summary and error messages name it.
    pub fn name(&self) -> String {
        match self {
            Input::Stdin => "-".to_string(),
            Input::File(path) => path.display().to_string(),
        }
    }

    /// A buffered reader of the input's text, decompressed when it starts like gzip.
    pub fn open(&self) -> Result<Box<dyn BufRead>> {
        match self {
            Input::Stdin => decompressed(io::stdin().lock()).context("reading stdin"),
            Input::File(path) => {
                let file =
                    File::open(path).with_context(|| format!("opening {}", path.display()))?;
                decompressed(file).with_context(|| format!("reading {}", path.display()))
            }
        }
    }
}

/// `raw`, through a gzip decoder (all members, as logrotate and `cat a.gz b.gz` make) if its
/// first bytes are gzip's magic number.
pub fn decompressed(raw: impl Read + 'static) -> io::Result<Box<dyn BufRead>> {
    let mut buffered = BufReader::with_capacity(READ_BUFFER_BYTES, raw);
    if buffered.fill_buf()?.starts_with(&GZIP_MAGIC) {
        let decoder = MultiGzDecoder::new(buffered);
        Ok(Box::new(BufReader::with_capacity(
            READ_BUFFER_BYTES,
            decoder,
        )))
    } else {
        Ok(Box::new(buffered))
    }
}

/// Calls `visit` with each line without its newline, or `None` for a line longer than
/// [`MAX_LINE_BYTES`] (skipped up to its newline).
pub fn for_each_line(
    reader: &mut dyn BufRead,
    mut visit: impl FnMut(Option<&[u8]>),
) -> io::Result<()> {
    let mut line = Vec::with_capacity(4096);
    loop {
        line.clear();
        let limit = MAX_LINE_BYTES as u64 + 1;
        if (&mut *reader).take(limit).read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        if line.last() == Some(&b'\n') {
            line.pop();
            visit(Some(&line));
        } else if line.len() > MAX_LINE_BYTES {
            reader.skip_until(b'\n')?;
            visit(None);
        } else {
            // The last line, without a newline.
            visit(Some(&line));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Cursor, Write as _};

    use flate2::{write::GzEncoder, Compression};

    use super::*;

    fn lines_of(bytes: Vec<u8>) -> Vec<Option<String>> {
        let mut reader = decompressed(Cursor::new(bytes)).expect("in memory");
        let mut lines = Vec::new();
        for_each_line(&mut *reader, |line| {
            lines.push(line.map(|l| String::from_utf8_lossy(l).into_owned()))
        })
        .expect("in memory");
        lines
    }

    fn gzip(text: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
        encoder.write_all(text).expect("in memory");
        encoder.finish().expect("in memory")
    }

    #[test]
    fn plain_lines_with_and_without_a_final_newline() {
        let expected = vec![Some("a".to_string()), Some(String::new()), Some("b".into())];
        assert_eq!(lines_of(b"a\n\nb".to_vec()), expected);
        assert_eq!(lines_of(b"a\n\nb\n".to_vec()), expected);
        assert!(lines_of(Vec::new()).is_empty());
    }

    #[test]
    fn concatenated_gzip_members_are_all_read() {
        let mut bytes = gzip(b"one\ntwo\n");
        bytes.extend(gzip(b"three\n"));
        assert_eq!(
            lines_of(bytes),
            vec![Some("one".into()), Some("two".into()), Some("three".into())]
        );
    }

    #[test]
    fn overlong_lines_are_skipped_whole() {
        let mut bytes = b"first\n".to_vec();
        bytes.extend(std::iter::repeat_n(b'x', MAX_LINE_BYTES * 2 + 3));
        bytes.extend(b"\nlast\n");
        assert_eq!(
            lines_of(bytes),
            vec![Some("first".into()), None, Some("last".into())]
        );
    }
}
