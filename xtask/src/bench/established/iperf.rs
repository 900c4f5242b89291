//! Bulk TCP: iperf3's server in the peer namespace, its client in the host's, reversed (`-R`)
//! so that the data comes in to the host, through fwlog's tc ingress program and conntrack, as
//! a download does. The host opens the connections, so the inbound-drop policy lets them be.
//!
//! Client and server run on one CPU (`--affinity`): the whole path, sending, veth, the host's
//! receive softirq (which runs in the sender's context) and the reading, is then that CPU's
//! work, and its cost is what bounds the rate. Left to the scheduler, the two land on the same
//! CPU or not from one run to the next, and the rate moves by 3× with it (2.9–16 Gbit/s in five
//! runs of one setup here). On a shared machine the rate still moves with what else runs
//! there, so the bench also counts the CPU time the two processes used (the receive softirq
//! included: it runs in their context, and tick-based accounting charges it to them), which
//! moves far less: bytes per CPU-second.

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use nix::sys::signal::Signal;
use serde_json::Value;

use crate::bench::{
    modes::child::{stop_with_parent, ChildGuard},
    netns::{NetNsGuard, PEER_ADDR},
};

/// iperf3's usual port.
pub const PORT: u16 = 5201;
/// How long the server gets to listen.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(10);
/// Seconds at the start of a test left out of its figures: TCP's slow start.
const OMIT_SECS: u64 = 1;

/// User + system CPU seconds of the bench's waited-for children so far (`RUSAGE_CHILDREN`):
/// around a test, the iperf3 client and server, which are both its children.
pub fn children_cpu_secs() -> f64 {
    // SAFETY: rusage is plain old data; getrusage fills it and only fails for a bad `who`.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage);
        usage
    };
    let secs = |time: libc::timeval| time.tv_sec as f64 + time.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// `iperf3 --server --one-off` in the peer namespace, stopped on drop.
pub struct Server {
    child: ChildGuard,
}

impl Server {
    /// Starts the server and waits until it listens.
    pub fn start(peer: &NetNsGuard) -> Result<Self> {
        let mut command = peer.command("iperf3");
        command
            .args(["--server", "--one-off", "--bind"])
            .arg(PEER_ADDR.to_string())
            .args(["--port", &PORT.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        stop_with_parent(&mut command, Signal::SIGTERM);
        let child = command
            .spawn()
            .context("could not start iperf3 (install it with `cargo xtask setup`)")?;
        let mut server = Server {
            child: ChildGuard::new(child, "iperf3 server", Signal::SIGTERM),
        };
        let deadline = Instant::now() + LISTEN_TIMEOUT;
        let listening = format!("{PEER_ADDR}:{PORT}");
        loop {
            let sockets = peer.output("ss", &["-Hltn"])?;
            if sockets.contains(&listening) {
                return Ok(server);
            }
            if let Some(status) = server.child.exited()? {
                bail!("the iperf3 server exited at start ({status})");
            }
            if Instant::now() > deadline {
                bail!("the iperf3 server did not listen on {listening} within {LISTEN_TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits (bounded) for the one-off server to end after its test.
    pub fn stop(mut self) -> Result<()> {
        self.child.stop().map(drop)
    }
}

/// What the client reported for one test.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BulkResult {
    /// Received by the host, per second, slow start left out.
    pub bits_per_second: f64,
    pub bytes_received: u64,
    pub seconds: f64,
    /// Received by the host over the whole test, slow start included (what the CPU time of
    /// the whole test is divided by).
    pub bytes_total: u64,
    /// Retransmitted segments, as the sending side counted them.
    pub retransmits: Option<u64>,
    /// iperf3's own CPU use, in percent of one CPU: the client's (host) and the server's (peer).
    pub host_cpu_percent: Option<f64>,
    pub remote_cpu_percent: Option<f64>,
}

/// Runs the client in `host` for `secs` seconds (plus the omitted start).
pub fn run_client(host: &NetNsGuard, secs: u64) -> Result<BulkResult> {
    // The last CPU: the bench's own threads and the collector tend to start on the first.
    let cpu = std::thread::available_parallelism().map_or(1, usize::from) - 1;
    let mut command: Command = host.command("iperf3");
    command
        .args(["--client"])
        .arg(PEER_ADDR.to_string())
        .args(["--port", &PORT.to_string(), "--reverse", "--json"])
        .args([
            "--time",
            &secs.to_string(),
            "--omit",
            &OMIT_SECS.to_string(),
        ])
        .args(["--affinity", &format!("{cpu},{cpu}")])
        .stdin(Stdio::null());
    let output = command
        .output()
        .context("could not run the iperf3 client")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let result = parse_result(&stdout);
    if !output.status.success() {
        let reason = serde_json::from_str::<Value>(&stdout)
            .ok()
            .and_then(|json| json["error"].as_str().map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&output.stderr).trim().to_owned());
        bail!("the iperf3 client failed ({}): {reason}", output.status);
    }
    result
}

/// The figures of `iperf3 --json` output.
pub fn parse_result(json: &str) -> Result<BulkResult> {
    let value: Value = serde_json::from_str(json).context("iperf3's output is not JSON")?;
    if let Some(error) = value["error"].as_str() {
        bail!("iperf3: {error}");
    }
    let end = &value["end"];
    let received = &end["sum_received"];
    let (Some(bits_per_second), Some(bytes_received), Some(seconds)) = (
        received["bits_per_second"].as_f64(),
        received["bytes"].as_u64(),
        received["seconds"].as_f64(),
    ) else {
        bail!("iperf3's output has no end.sum_received with bits_per_second, bytes and seconds");
    };
    let cpu = &end["cpu_utilization_percent"];
    let bytes_total = value["intervals"]
        .as_array()
        .map(|intervals| {
            intervals
                .iter()
                .filter_map(|interval| interval["sum"]["bytes"].as_u64())
                .sum()
        })
        .unwrap_or(bytes_received);
    Ok(BulkResult {
        bits_per_second,
        bytes_received,
        seconds,
        bytes_total,
        retransmits: end["sum_sent"]["retransmits"].as_u64(),
        host_cpu_percent: cpu["host_total"].as_f64(),
        remote_cpu_percent: cpu["remote_total"].as_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // The parts read of a real `iperf3 3.12 --reverse --json` run over loopback.
    const OUTPUT: &str = r#"{"start": {"version": "iperf 3.12"}, "intervals": [{"sum": {"bytes": 100, "omitted": true}}, {"sum": {"bytes": 786432000, "omitted": false}}], "end": {"sum_sent": {"start": 0, "end": 1.006936, "seconds": 1.006936, "bytes": 791674880, "bits_per_second": 6289773173.270198, "retransmits": 18, "sender": false}, "sum_received": {"start": 0, "end": 1.006887, "seconds": 1.006887, "bytes": 786432000, "bits_per_second": 6248423110.041146, "sender": false}, "cpu_utilization_percent": {"host_total": 22.72015918526232, "host_user": 0.9722828739500115, "host_system": 21.74787631131231, "remote_total": 9.095206270487774, "remote_user": 0.9567995328713023, "remote_system": 8.13820812847628}}}"#;

    #[test]
    fn figures_from_iperf3_json() {
        let result = parse_result(OUTPUT).expect("a whole result");
        assert_eq!(result.bytes_received, 786_432_000);
        assert_eq!(result.bytes_total, 786_432_100);
        assert!((result.bits_per_second - 6.248e9).abs() < 1e6);
        assert_eq!(result.retransmits, Some(18));
        assert!(result.host_cpu_percent.is_some_and(|cpu| cpu > 22.0));
    }

    #[test]
    fn iperf3_errors_are_reported() {
        let error = parse_result(r#"{"start":{},"intervals":[],"end":{},"error":"unable to connect to server: Connection refused"}"#)
            .expect_err("an error result");
        assert!(format!("{error:#}").contains("Connection refused"));
        assert!(parse_result(r#"{"end":{}}"#).is_err());
        assert!(parse_result("not json").is_err());
    }
}
