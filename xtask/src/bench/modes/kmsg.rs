//! The `log` mode's consumer: a thread of the bench reading /dev/kmsg as a syslog daemon does,
//! counting and parsing the `-j LOG` lines, and counting the records printk overwrote before
//! they were read (sequence-number gaps).

use std::{
    fs::{self, File, OpenOptions},
    io::{ErrorKind, Read as _, Seek as _, SeekFrom},
    net::Ipv4Addr,
    os::{fd::AsRawFd as _, unix::fs::OpenOptionsExt as _},
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc, Arc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};

const KMSG: &str = "/dev/kmsg";
/// `-j LOG` in a namespace other than the first logs nothing unless this is 1
/// (net/netfilter/nf_log_syslog.c `nf_log_allowed`).
const LOG_ALL_NETNS: &str = "/proc/sys/net/netfilter/nf_log_all_netns";
/// While the bench has nf_log_all_netns raised: `PID PREVIOUS`, so that the next bench puts the
/// value back if this one was killed (/run is emptied at boot, as the sysctl is reset).
const SAVED: &str = "/run/fwlog-bench.nf_log_all_netns";
/// Longest /dev/kmsg record (kernel/printk/printk.c `CONSOLE_EXT_LOG_MAX`).
const RECORD_MAX: usize = 8192;
/// After being asked to stop, the reader reads what is left for at most this long.
const STOP_DRAIN: Duration = Duration::from_secs(2);

/// nf_log_all_netns set to 1 while held, set back to its previous value on drop.
pub struct LogAllNetns {
    previous: String,
}

impl LogAllNetns {
    pub fn enable() -> Result<Self> {
        let previous = fs::read_to_string(LOG_ALL_NETNS).with_context(|| {
            format!("reading {LOG_ALL_NETNS}: does this kernel have nf_log_syslog?")
        })?;
        let previous = previous.trim().to_owned();
        fs::write(SAVED, format!("{} {previous}\n", std::process::id()))
            .with_context(|| format!("writing {SAVED}"))?;
        // From here on, dropping the guard restores (and removes SAVED).
        let guard = LogAllNetns { previous };
        fs::write(LOG_ALL_NETNS, "1").with_context(|| format!("writing 1 to {LOG_ALL_NETNS}"))?;
        Ok(guard)
    }

    /// Puts back the value a killed bench left raised; returns it if it did.
    pub fn restore_after_crash() -> Result<Option<String>> {
        let Ok(saved) = fs::read_to_string(SAVED) else {
            return Ok(None);
        };
        let Some((pid, previous)) = parse_saved(&saved) else {
            let _ = fs::remove_file(SAVED);
            return Ok(None);
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            // That bench still runs (or the pid was reused): leave the setting to it.
            return Ok(None);
        }
        fs::write(LOG_ALL_NETNS, previous)
            .with_context(|| format!("restoring {LOG_ALL_NETNS} to {previous}"))?;
        fs::remove_file(SAVED).with_context(|| format!("removing {SAVED}"))?;
        Ok(Some(previous.to_owned()))
    }
}

/// `PID VALUE` → (PID, VALUE), VALUE a number.
fn parse_saved(saved: &str) -> Option<(u32, &str)> {
    let (pid, value) = saved.trim().split_once(' ')?;
    value.parse::<u32>().ok()?;
    Some((pid.parse().ok()?, value))
}

impl Drop for LogAllNetns {
    fn drop(&mut self) {
        match fs::write(LOG_ALL_NETNS, &self.previous) {
            Ok(()) => {
                let _ = fs::remove_file(SAVED);
            }
            Err(error) => eprintln!(
                "warning: could not restore {LOG_ALL_NETNS} to {}: {error}; \
                 run `sysctl net.netfilter.nf_log_all_netns={}`",
                self.previous, self.previous
            ),
        }
    }
}

/// Whether the `log` mode can run here.
pub fn check_available() -> Result<()> {
    File::open(KMSG).with_context(|| format!("cannot read {KMSG}"))?;
    fs::metadata(LOG_ALL_NETNS).with_context(|| {
        format!("{LOG_ALL_NETNS} is missing: -j LOG cannot log from a network namespace here")
    })?;
    Ok(())
}

/// What the reader saw, for the report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KmsgTotals {
    /// Records carrying the log prefix.
    pub events: u64,
    /// Of those, the ones whose SRC/DST/PROTO/SPT/DPT could not be read.
    pub unparsed: u64,
    /// Records overwritten in the printk buffer before the reader got to them (any prefix).
    pub overwritten: u64,
}

/// The reader thread and what it shares with the bench.
pub struct KmsgReader {
    events: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<KmsgTotals>>>,
    proc_dir: PathBuf,
}

impl KmsgReader {
    /// Opens /dev/kmsg at its end (only records from now on) and starts reading on a thread.
    pub fn start(prefix: &'static str) -> Result<Self> {
        let mut kmsg = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(KMSG)
            .with_context(|| format!("opening {KMSG}"))?;
        kmsg.seek(SeekFrom::End(0))
            .with_context(|| format!("seeking to the end of {KMSG}"))?;
        let events = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (tid_tx, tid_rx) = mpsc::channel();
        let thread = {
            let events = Arc::clone(&events);
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("kmsg reader".into())
                .spawn(move || {
                    let _ = tid_tx.send(nix::unistd::gettid().as_raw());
                    read_records(kmsg, prefix, &events, &stop)
                })
                .context("starting the /dev/kmsg reader thread")?
        };
        let tid = tid_rx
            .recv_timeout(Duration::from_secs(5))
            .context("the /dev/kmsg reader thread did not start")?;
        Ok(KmsgReader {
            events,
            stop,
            thread: Some(thread),
            proc_dir: PathBuf::from(format!("/proc/self/task/{tid}")),
        })
    }

    pub fn events(&self) -> u64 {
        self.events.load(Ordering::Relaxed)
    }

    /// The reader thread's /proc directory, for its CPU time and sleeps.
    pub fn proc_dir(&self) -> &Path {
        &self.proc_dir
    }

    /// Reads what is left, stops the thread, returns its totals.
    pub fn stop(&mut self) -> Result<KmsgTotals> {
        self.stop.store(true, Ordering::Relaxed);
        let thread = self
            .thread
            .take()
            .context("the kmsg reader was already stopped")?;
        match thread.join() {
            Ok(totals) => totals,
            Err(_) => bail!("the /dev/kmsg reader thread panicked"),
        }
    }
}

impl Drop for KmsgReader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn read_records(
    mut kmsg: File,
    prefix: &str,
    events: &AtomicU64,
    stop: &AtomicBool,
) -> Result<KmsgTotals> {
    let mut totals = KmsgTotals::default();
    let mut record = vec![0u8; RECORD_MAX];
    let mut next_seq: Option<u64> = None;
    let mut stop_seen: Option<Instant> = None;
    loop {
        if stop_seen.is_none() && stop.load(Ordering::Relaxed) {
            stop_seen = Some(Instant::now());
        }
        if stop_seen.is_some_and(|since| since.elapsed() > STOP_DRAIN) {
            return Ok(totals);
        }
        // /dev/kmsg returns exactly one record per read (kernel/printk/printk.c `devkmsg_read`).
        let read = match kmsg.read(&mut record) {
            Ok(read) => read,
            Err(error) if error.kind() == ErrorKind::WouldBlock => {
                if stop_seen.is_some() {
                    return Ok(totals);
                }
                wait_readable(&kmsg, 50);
                continue;
            }
            // EPIPE: the next record was overwritten; the next read resumes at the oldest one
            // left, and the sequence numbers tell how many were lost.
            Err(error) if error.raw_os_error() == Some(libc::EPIPE) => continue,
            Err(error) if error.kind() == ErrorKind::Interrupted => continue,
            Err(error) => return Err(error).with_context(|| format!("reading {KMSG}")),
        };
        let Some(parsed) = parse_record(&record[..read]) else {
            continue;
        };
        if let Some(expected) = next_seq {
            totals.overwritten += parsed.seq.saturating_sub(expected);
        }
        next_seq = Some(parsed.seq + 1);
        if parsed.message.contains(prefix) {
            totals.events += 1;
            if parse_log_line(parsed.message).is_none() {
                totals.unparsed += 1;
            }
            events.store(totals.events, Ordering::Relaxed);
        }
    }
}

/// poll(2) for input, at most `timeout_ms`; errors and timeouts just return.
fn wait_readable(kmsg: &File, timeout_ms: i32) {
    let mut poll = libc::pollfd {
        fd: kmsg.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd that outlives the call, and a count of 1.
    unsafe { libc::poll(&mut poll, 1, timeout_ms) };
}

/// A /dev/kmsg record: `PRI,SEQ,USEC,FLAGS[,...];MESSAGE\n` then ` KEY=VALUE` lines.
#[derive(Debug, PartialEq, Eq)]
pub struct KmsgRecord<'a> {
    pub seq: u64,
    pub message: &'a str,
}

pub fn parse_record(record: &[u8]) -> Option<KmsgRecord<'_>> {
    let text = std::str::from_utf8(record).ok()?;
    let (header, rest) = text.split_once(';')?;
    let seq = header.split(',').nth(1)?.parse().ok()?;
    let message = rest.split('\n').next().unwrap_or(rest);
    Some(KmsgRecord { seq, message })
}

/// What a log consumer needs from a `-j LOG` line.
#[derive(Debug, PartialEq, Eq)]
pub struct LogLine<'a> {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub proto: &'a str,
    pub src_port: Option<u16>,
    pub dst_port: Option<u16>,
}

/// `[OY-D]:IN=eth0 OUT= MAC=... SRC=10.0.0.1 DST=10.0.0.2 LEN=60 ... PROTO=TCP SPT=1 DPT=2 ...`
/// (net/netfilter/nf_log_syslog.c `dump_ipv4_packet`). LEN appears twice (IP, then UDP): the
/// fields wanted here appear once.
pub fn parse_log_line(message: &str) -> Option<LogLine<'_>> {
    let (mut src, mut dst, mut proto, mut src_port, mut dst_port) = (None, None, None, None, None);
    for field in message.split(' ') {
        let Some((key, value)) = field.split_once('=') else {
            continue;
        };
        match key {
            "SRC" => src = value.parse().ok(),
            "DST" => dst = value.parse().ok(),
            "PROTO" => proto = Some(value),
            "SPT" => src_port = value.parse().ok(),
            "DPT" => dst_port = value.parse().ok(),
            _ => {}
        }
    }
    Some(LogLine {
        src: src?,
        dst: dst?,
        proto: proto?,
        src_port,
        dst_port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const UDP_RECORD: &[u8] = b"7,91234,1234567890,-;[OY-D]:IN=fwbh42 OUT= MAC=02:fb:00:00:00:01:02:fb:00:00:00:02:08:00 SRC=10.201.1.1 DST=10.201.0.1 LEN=46 TOS=0x00 PREC=0x00 TTL=64 ID=0 DF PROTO=UDP SPT=1024 DPT=7777 LEN=26 \n";

    #[test]
    fn saved_setting_is_pid_and_value() {
        assert_eq!(parse_saved("1234 0\n"), Some((1234, "0")));
        assert_eq!(parse_saved("1234"), None);
        assert_eq!(parse_saved("x 0"), None);
        assert_eq!(parse_saved("1 rm -rf"), None);
    }

    #[test]
    fn records_split_into_sequence_and_message() {
        let record = parse_record(UDP_RECORD).expect("a record");
        assert_eq!(record.seq, 91_234);
        assert!(record.message.starts_with("[OY-D]:IN=fwbh42 "));
        assert!(!record.message.contains('\n'));
        let with_dict = b"6,7,8,c;hello\n SUBSYSTEM=net\n DEVICE=n2\n";
        assert_eq!(
            parse_record(with_dict),
            Some(KmsgRecord {
                seq: 7,
                message: "hello"
            })
        );
        assert_eq!(parse_record(b"no header"), None);
    }

    #[test]
    fn log_lines_give_the_flow() {
        let record = parse_record(UDP_RECORD).expect("a record");
        assert_eq!(
            parse_log_line(record.message),
            Some(LogLine {
                src: Ipv4Addr::new(10, 201, 1, 1),
                dst: Ipv4Addr::new(10, 201, 0, 1),
                proto: "UDP",
                src_port: Some(1024),
                dst_port: Some(7777),
            })
        );
        let syn = "[OY-D]:IN=fwbh42 OUT= MAC=02 SRC=10.201.3.4 DST=10.201.0.1 LEN=44 TOS=0x00 PREC=0x00 TTL=64 ID=5 DF PROTO=TCP SPT=1025 DPT=7777 WINDOW=64240 RES=0x00 SYN URGP=0 ";
        let line = parse_log_line(syn).expect("a TCP line");
        assert_eq!((line.proto, line.src_port), ("TCP", Some(1025)));
        let icmp = "[OY-D]:IN=x OUT= SRC=10.0.0.1 DST=10.0.0.2 LEN=84 PROTO=ICMP TYPE=8 CODE=0 ID=1 SEQ=1 ";
        assert_eq!(parse_log_line(icmp).map(|line| line.dst_port), Some(None));
        assert_eq!(parse_log_line("[OY-D]:IN=x OUT= truncated"), None);
    }
}
