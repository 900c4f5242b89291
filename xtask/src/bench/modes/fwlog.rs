//! The `fwlog` mode's consumer: `fwlog watch <host veth>` (release build) in the host namespace,
//! its JSON lines going to a file, its summary line read from stderr.

use std::{
    fs::File,
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::Stdio,
    sync::{mpsc, Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use nix::sys::signal::Signal;

use super::child::{stop_with_parent, ChildGuard, OutputTail};
use crate::{bench::netns::NetNsGuard, cmd};

/// What marks a verdict line (fwlog writes fixed field names, no spaces).
const VERDICT_MARKER: &str = "\"event_type\":\"verdict\"";

/// How long fwlog gets to load its programs, install its rules and say it is watching.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// What fwlog's output file and summary say about one run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FwlogTotals {
    /// `"event_type":"verdict"` lines.
    pub verdicts: u64,
    /// Sum of the `"event_type":"lost"` lines' counts: events the ring buffer had no room for.
    pub lost: u64,
    /// Lines that are neither.
    pub other: u64,
    /// `fwlog: N events, M lost, K malformed packets`, if it printed one.
    pub summary: Option<String>,
    /// fwlog ignored SIGINT and was killed (then `fwlog uninstall` cleaned up).
    pub killed: bool,
}

pub struct FwlogConsumer {
    child: ChildGuard,
    binary: PathBuf,
    host_path: PathBuf,
    tail: OutputTail,
    stderr: Arc<Mutex<Vec<String>>>,
    pub output: PathBuf,
}

impl FwlogConsumer {
    /// Starts `fwlog watch` and waits until it says it is watching.
    pub fn start(
        binary: &Path,
        host: &NetNsGuard,
        host_if: &str,
        ring_size: &str,
        extra_args: &[String],
        out_dir: &Path,
        run_name: &str,
    ) -> Result<Self> {
        let output = out_dir.join(format!("{run_name}.fwlog.jsonl"));
        let stdout =
            File::create(&output).with_context(|| format!("creating {}", output.display()))?;
        let mut command = host.command(binary);
        command.args(["watch", host_if, "--ring-size", ring_size]);
        if has_grace_option(binary) {
            // The bench's namespace has no connections for conntrack to learn first: the
            // policy applies from the start, as the other modes' rules do.
            command.args(["--grace", "0"]);
        }
        command
            .args(extra_args)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(Stdio::piped());
        stop_with_parent(&mut command, Signal::SIGTERM);
        let mut child = command
            .spawn()
            .with_context(|| format!("could not start `{}`", cmd::describe(&command)))?;
        let stderr = child.stderr.take().context("fwlog has no stderr pipe")?;
        let mut consumer = FwlogConsumer {
            child: ChildGuard::new(child, "fwlog", Signal::SIGINT),
            binary: binary.to_owned(),
            host_path: host.path(),
            tail: OutputTail::open(&output, Some(VERDICT_MARKER))?,
            stderr: Arc::new(Mutex::new(Vec::new())),
            output,
        };
        let (ready_tx, ready) = mpsc::channel();
        let lines = Arc::clone(&consumer.stderr);
        std::thread::Builder::new()
            .name("fwlog stderr".into())
            .spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if line.starts_with("fwlog: watching") {
                        let _ = ready_tx.send(());
                    }
                    if let Ok(mut lines) = lines.lock() {
                        lines.push(line);
                    }
                }
            })
            .context("starting the fwlog stderr reader")?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if ready.recv_timeout(Duration::from_millis(100)).is_ok() {
                return Ok(consumer);
            }
            if let Some(status) = consumer.child.exited()? {
                bail!(
                    "fwlog watch exited at start ({status}): {}",
                    consumer.stderr_text()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "fwlog watch did not say it was watching within {START_TIMEOUT:?}: {}",
                    consumer.stderr_text()
                );
            }
        }
    }

    /// Verdict lines written so far.
    pub fn events(&mut self) -> Result<u64> {
        self.tail.lines()
    }

    /// When fwlog last wrote to its output, as far as [`FwlogConsumer::events`] saw.
    pub fn last_output(&self) -> Option<Instant> {
        self.tail.grown_at()
    }

    pub fn proc_dir(&self) -> Option<PathBuf> {
        self.child.proc_dir()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.pid()
    }

    /// Ctrl-C for fwlog: it removes its rules, drains its ring buffer and prints its summary.
    pub fn stop(&mut self) -> Result<FwlogTotals> {
        let stopped = self.child.stop()?;
        let killed = stopped.as_ref().is_some_and(|stopped| stopped.killed);
        if killed {
            self.uninstall();
        }
        // The stderr thread ends with fwlog's stderr; give it a moment for the last line.
        std::thread::sleep(Duration::from_millis(100));
        let file = File::open(&self.output)
            .with_context(|| format!("opening {}", self.output.display()))?;
        let mut totals = tally(BufReader::new(file))
            .with_context(|| format!("reading {}", self.output.display()))?;
        totals.killed = killed;
        totals.summary = self
            .stderr
            .lock()
            .ok()
            .and_then(|lines| lines.iter().rev().find(|line| is_summary(line)).cloned());
        if let Some(Some(code)) = stopped.map(|stopped| stopped.status.code()) {
            if code != 0 && !killed {
                bail!(
                    "fwlog exited with status {code} after SIGINT: {}",
                    self.stderr_text()
                );
            }
        }
        Ok(totals)
    }

    /// `fwlog uninstall` in the host namespace: what a killed fwlog left (rules, pins).
    fn uninstall(&self) {
        let mut command = std::process::Command::new("nsenter");
        command
            .arg(format!("--net={}", self.host_path.display()))
            .arg(&self.binary)
            .arg("uninstall");
        if let Err(error) = cmd::output(&mut command) {
            eprintln!("warning: {error:#}");
        }
    }

    pub fn stderr_text(&self) -> String {
        self.stderr
            .lock()
            .map(|lines| lines.join("\n"))
            .unwrap_or_default()
    }
}

impl Drop for FwlogConsumer {
    fn drop(&mut self) {
        if let Ok(Some(stopped)) = self.child.stop() {
            if stopped.killed {
                self.uninstall();
            }
        }
    }
}

/// Whether this fwlog has `watch --grace` (a binary from before it, given with `--fwlog-bin`,
/// would refuse the option).
fn has_grace_option(binary: &Path) -> bool {
    std::process::Command::new(binary)
        .args(["watch", "--help"])
        .output()
        .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).contains("--grace"))
}

fn is_summary(line: &str) -> bool {
    line.starts_with("fwlog: ") && line.contains(" events, ") && line.contains(" lost")
}

/// Counts verdict lines and adds up lost counts, without a JSON parser (fwlog writes one object
/// per line with fixed field names).
pub fn tally(reader: impl std::io::BufRead) -> Result<FwlogTotals> {
    let mut totals = FwlogTotals::default();
    for line in reader.lines() {
        let line = line?;
        if line.contains(VERDICT_MARKER) {
            totals.verdicts += 1;
        } else if let Some(count) = lost_count(&line) {
            totals.lost += count;
        } else {
            totals.other += 1;
        }
    }
    Ok(totals)
}

/// `{"timestamp":…,"event_type":"lost","count":N}` → N.
fn lost_count(line: &str) -> Option<u64> {
    if !line.contains("\"event_type\":\"lost\"") {
        return None;
    }
    let (_, after) = line.split_once("\"count\":")?;
    let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_and_losses_are_tallied() {
        let output = concat!(
            "{\"timestamp\":\"2026-01-01T00:00:00.000000000Z\",\"event_type\":\"verdict\",\"action\":\"drop\"}\n",
            "{\"timestamp\":\"2026-01-01T00:00:00.000000001Z\",\"event_type\":\"lost\",\"count\":1234}\n",
            "{\"timestamp\":\"2026-01-01T00:00:00.000000002Z\",\"event_type\":\"verdict\",\"action\":\"drop\"}\n",
            "{\"timestamp\":\"2026-01-01T00:00:00.000000003Z\",\"event_type\":\"lost\",\"count\":6}\n",
            "garbage\n",
        );
        let totals = tally(output.as_bytes()).expect("in-memory reads do not fail");
        assert_eq!((totals.verdicts, totals.lost, totals.other), (2, 1240, 1));
    }

    #[test]
    fn the_summary_line_is_recognised() {
        assert!(is_summary(
            "fwlog: 200000 events, 0 lost, 0 malformed packets"
        ));
        assert!(!is_summary(
            "fwlog: watching fwbh1 (inbound NEW/RELATED dropped)"
        ));
    }
}
