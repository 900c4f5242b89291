//! `syslog = true`: every line also goes to the system log, one datagram per line on /dev/log.
//!
//! The datagram is RFC 3164's local form, as glibc's `syslog()` writes it minus the
//! timestamp (journald and rsyslog stamp the time of arrival):
//! `<30>fwlog[PID]: [FW-D]: {"timestamp":…,"action":"drop",…}`.
//! Priority 30 is facility daemon (3) × 8 + severity info (6): fwlog is a daemon reporting
//! routine traffic, not the kernel (whose log the article's `-j LOG` lines go to), and a
//! drop is expected behaviour, not a warning. The `[PREFIX-A]:`/`[PREFIX-D]:`/`[PREFIX-R]:`
//! tag comes from the line's `"action"`, so `grep '\[FW-D\]'` habits from the article's
//! kernel log keep working; a line without one (stats, other formats) gets `[PREFIX]:`.

use std::{
    io,
    os::unix::net::UnixDatagram,
    path::{Path, PathBuf},
};

use super::{LineSink, Written};

/// The local syslog socket (journald's /run/systemd/journal/dev-log, or rsyslog's).
pub const DEV_LOG: &str = "/dev/log";
/// `<PRI>`: facility daemon, severity info.
pub const PRIORITY: u8 = 3 * 8 + 6;
/// Longest datagram sent; rsyslog's default maximum message size is 8 KiB.
pub const MAX_DATAGRAM: usize = 8192;
/// Ends a line cut to fit [`MAX_DATAGRAM`].
pub const TRUNCATION_MARKER: &[u8] = b"...[truncated]";

/// A connection to the local syslog daemon that sends one datagram per line.
#[derive(Debug)]
pub struct SyslogSink {
    socket: UnixDatagram,
    socket_path: PathBuf,
    /// `<30>fwlog[PID]: `
    header: Vec<u8>,
    prefix: String,
    /// Reused for every datagram.
    datagram: Vec<u8>,
}

impl SyslogSink {
    /// Connects to /dev/log; `prefix` makes the `[PREFIX-A]:` tags.
    pub fn connect(prefix: &str) -> io::Result<Self> {
        Self::connect_to(Path::new(DEV_LOG), prefix)
    }

    /// Connects to the syslog socket at `socket_path`.
    pub fn connect_to(socket_path: &Path, prefix: &str) -> io::Result<Self> {
        let socket = connect_socket(socket_path)?;
        Ok(SyslogSink {
            socket,
            socket_path: socket_path.to_path_buf(),
            header: format!("<{PRIORITY}>fwlog[{}]: ", std::process::id()).into_bytes(),
            prefix: prefix.to_string(),
            datagram: Vec::with_capacity(MAX_DATAGRAM),
        })
    }

    /// Sends each line of `batch` (lines end in '\n'; empty lines are skipped) as one
    /// datagram. Blocks while the syslog daemon's queue is full, as `syslog()` does.
    pub fn send_lines(&mut self, batch: &[u8]) -> io::Result<()> {
        for line in batch.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() {
                continue;
            }
            self.build_datagram(line);
            self.send_datagram()?;
        }
        Ok(())
    }

    fn build_datagram(&mut self, line: &[u8]) {
        self.datagram.clear();
        self.datagram.extend_from_slice(&self.header);
        self.datagram.push(b'[');
        self.datagram.extend_from_slice(self.prefix.as_bytes());
        if let Some(letter) = action_letter(line) {
            self.datagram.push(b'-');
            self.datagram.push(letter);
        }
        self.datagram.extend_from_slice(b"]: ");
        let room = MAX_DATAGRAM.saturating_sub(self.datagram.len());
        if line.len() <= room {
            self.datagram.extend_from_slice(line);
        } else {
            let mut cut = room.saturating_sub(TRUNCATION_MARKER.len());
            // Back up to the start of a UTF-8 character (continuation bytes are 10xxxxxx).
            while cut > 0 && line.get(cut).is_some_and(|&b| b & 0xC0 == 0x80) {
                cut -= 1;
            }
            self.datagram.extend_from_slice(&line[..cut]);
            self.datagram.extend_from_slice(TRUNCATION_MARKER);
        }
    }

    /// Sends the built datagram; if the daemon restarted (its old socket is gone), connects
    /// again once and resends.
    fn send_datagram(&mut self) -> io::Result<()> {
        match self.socket.send(&self.datagram) {
            Ok(_) => Ok(()),
            Err(error)
                if matches!(
                    error.kind(),
                    io::ErrorKind::ConnectionRefused
                        | io::ErrorKind::NotConnected
                        | io::ErrorKind::NotFound
                ) =>
            {
                self.socket = connect_socket(&self.socket_path)?;
                self.socket.send(&self.datagram).map(drop)
            }
            Err(error) => Err(error),
        }
    }
}

impl LineSink for SyslogSink {
    /// One datagram per line; stops at the first line the daemon would not take (each
    /// datagram is whole, so nothing is ever cut).
    fn write_lines(&mut self, lines: &[u8]) -> Written {
        let mut done = 0;
        for line in lines.split_inclusive(|&b| b == b'\n') {
            if let Err(error) = self.send_lines(line) {
                return Written {
                    bytes: done,
                    error: Some(error),
                };
            }
            done += line.len();
        }
        Written::all(done)
    }

    fn name(&self) -> String {
        "the system log".to_string()
    }
}

fn connect_socket(path: &Path) -> io::Result<UnixDatagram> {
    let socket = UnixDatagram::unbound()?;
    socket.connect(path).map_err(|error| {
        let hint = match error.kind() {
            io::ErrorKind::NotFound => {
                "no syslog socket there: is systemd-journald or rsyslog running?"
            }
            io::ErrorKind::ConnectionRefused => {
                "nothing listens on it: is the syslog daemon running?"
            }
            io::ErrorKind::PermissionDenied => "permission denied",
            _ => "cannot connect",
        };
        io::Error::new(
            error.kind(),
            format!("syslog socket {}: {hint} ({error})", path.display()),
        )
    })?;
    Ok(socket)
}

/// `A`, `D` or `R` from the line's first `"action":"…"`, as in the article's prefixes.
/// The pattern cannot match inside a JSON string value, where quotes are escaped.
fn action_letter(line: &[u8]) -> Option<u8> {
    const KEY: &[u8] = b"\"action\":\"";
    let start = line.windows(KEY.len()).position(|window| window == KEY)? + KEY.len();
    let rest = &line[start..];
    let value = &rest[..rest.iter().position(|&b| b == b'"')?];
    match value {
        b"accept" => Some(b'A'),
        b"drop" => Some(b'D'),
        b"reject" => Some(b'R'),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::atomic::{AtomicU32, Ordering},
        time::Duration,
    };

    use super::*;

    /// A syslog daemon stand-in: a datagram socket bound to a unique temp path.
    struct FakeDevLog {
        path: PathBuf,
        socket: UnixDatagram,
    }

    impl FakeDevLog {
        fn bind() -> FakeDevLog {
            static NEXT: AtomicU32 = AtomicU32::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let path =
                std::env::temp_dir().join(format!("fwlog-devlog-{}-{n}", std::process::id()));
            let _ = std::fs::remove_file(&path);
            let socket = UnixDatagram::bind(&path).expect("bind the fake /dev/log");
            socket
                .set_read_timeout(Some(Duration::from_secs(5)))
                .expect("set a read timeout");
            FakeDevLog { path, socket }
        }

        fn receive(&self) -> String {
            let mut buf = vec![0; 2 * MAX_DATAGRAM];
            let len = self.socket.recv(&mut buf).expect("a datagram");
            String::from_utf8(buf[..len].to_vec()).expect("UTF-8")
        }

        fn is_empty(&self) -> bool {
            self.socket.set_nonblocking(true).expect("nonblocking");
            let mut buf = [0; 16];
            let empty = self.socket.recv(&mut buf).is_err();
            self.socket.set_nonblocking(false).expect("blocking");
            empty
        }
    }

    impl Drop for FakeDevLog {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.path);
        }
    }

    const ACCEPT: &str = r#"{"timestamp":"2026-11-25T07:09:10.123456Z","event_type":"verdict","action":"accept","direction":"outbound","proto":"tcp","dest_port":443}"#;
    const DROP: &str = r#"{"timestamp":"2026-11-25T07:09:11.000001Z","event_type":"verdict","in_iface":"we\"action\":\"reject","action":"drop","proto":"tcp","dest_port":22}"#;
    const STATS: &str =
        r#"{"timestamp":"2026-11-25T07:10:00Z","event_type":"stats","events":12,"lost":0}"#;

    #[test]
    fn one_datagram_per_line_tagged_by_action() {
        let devlog = FakeDevLog::bind();
        let mut sink = SyslogSink::connect_to(&devlog.path, "FW").expect("connect");
        sink.send_lines(format!("{ACCEPT}\n{DROP}\n").as_bytes())
            .expect("send");
        let pid = std::process::id();
        assert_eq!(
            devlog.receive(),
            format!("<30>fwlog[{pid}]: [FW-A]: {ACCEPT}")
        );
        assert_eq!(
            devlog.receive(),
            format!("<30>fwlog[{pid}]: [FW-D]: {DROP}")
        );
        assert!(devlog.is_empty());
    }

    #[test]
    fn a_line_without_action_gets_the_bare_prefix() {
        let devlog = FakeDevLog::bind();
        let mut sink = SyslogSink::connect_to(&devlog.path, "OY").expect("connect");
        sink.send_lines(format!("\n{STATS}\r\n\n").as_bytes())
            .expect("send");
        let pid = std::process::id();
        assert_eq!(devlog.receive(), format!("<30>fwlog[{pid}]: [OY]: {STATS}"));
        assert!(devlog.is_empty());
    }

    #[test]
    fn a_long_line_is_cut_with_a_marker() {
        let devlog = FakeDevLog::bind();
        let mut sink = SyslogSink::connect_to(&devlog.path, "FW").expect("connect");
        let long = format!(
            r#"{{"action":"reject","name":"{}"}}"#,
            "é".repeat(MAX_DATAGRAM)
        );
        sink.send_lines(long.as_bytes()).expect("send");
        let datagram = devlog.receive();
        assert!(datagram.len() <= MAX_DATAGRAM, "{}", datagram.len());
        assert!(datagram.len() > MAX_DATAGRAM - 4 - TRUNCATION_MARKER.len());
        assert!(datagram.contains(r#"]: [FW-R]: {"action":"reject","name":"éé"#));
        assert!(datagram.ends_with("é...[truncated]"));
    }

    #[test]
    fn a_missing_socket_is_a_clear_error() {
        let path = std::env::temp_dir().join(format!("fwlog-no-devlog-{}", std::process::id()));
        let error = SyslogSink::connect_to(&path, "FW").expect_err("no socket there");
        assert_eq!(error.kind(), io::ErrorKind::NotFound);
        assert!(
            error
                .to_string()
                .contains("is systemd-journald or rsyslog running?"),
            "{error}"
        );
        assert!(
            error.to_string().contains(&path.display().to_string()),
            "{error}"
        );
    }

    #[test]
    fn connect_uses_dev_log() {
        // Only connects (sends nothing to the real system log); a machine may have no daemon.
        match SyslogSink::connect("FW") {
            Ok(sink) => assert_eq!(sink.socket_path, Path::new(DEV_LOG)),
            Err(error) => assert!(error.to_string().contains(DEV_LOG), "{error}"),
        }
    }

    #[test]
    fn reconnects_after_the_daemon_restarts() {
        let devlog = FakeDevLog::bind();
        let mut sink = SyslogSink::connect_to(&devlog.path, "FW").expect("connect");
        let path = devlog.path.clone();
        drop(devlog);
        let restarted = FakeDevLog {
            socket: UnixDatagram::bind(&path).expect("bind again"),
            path,
        };
        sink.send_lines(format!("{ACCEPT}\n").as_bytes())
            .expect("send");
        assert!(restarted.receive().ends_with(ACCEPT));
    }

    #[test]
    fn action_letters() {
        assert_eq!(action_letter(br#"{"action":"drop"}"#), Some(b'D'));
        assert_eq!(action_letter(br#"{"action":"network_flow"}"#), None);
        assert_eq!(action_letter(br#"{"action":"#), None);
        assert_eq!(action_letter(b"plain text line"), None);
    }
}
