//! `fwlog watch --metrics`: the endpoint passes `promtool check metrics`, and a real Prometheus
//! server, started in fwlog's namespace (both on that namespace's loopback), scrapes it and
//! answers a query with the count of lines fwlog wrote.

use std::{
    io::Write as _,
    net::SocketAddr,
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::{bail, ensure, Context as _, Result};
use fwlog_tests::{
    addr,
    daemon::{http_get, url_encode, wait_for, Daemon, TempDir},
    netns::HOST_V4,
    traffic::udp_send,
    Fwlog, TestNet,
};
use serde_json::Value;

const METRICS: &str = "127.0.0.1:9477";
const PROMETHEUS: &str = "127.0.0.1:9090";
/// Datagrams the peer sends to a closed port: each is a new flow the inbound policy drops.
const KNOCKS: usize = 5;

fn metrics_address() -> SocketAddr {
    METRICS.parse().expect("a literal address")
}

/// `promtool check metrics` on `text`: its complaints, empty when there are none.
fn promtool_check(text: &str) -> Result<String> {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context(
            "running promtool (Debian's prometheus package; `cargo xtask setup` installs it)",
        )?;
    child
        .stdin
        .take()
        .context("promtool's stdin")?
        .write_all(text.as_bytes())?;
    let output = child.wait_with_output()?;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if !output.status.success() {
        bail!("promtool check metrics failed ({}): {said}", output.status);
    }
    Ok(said.trim().to_string())
}

/// The value of the one series `query` selects, from Prometheus's HTTP API.
fn query_value(net: &TestNet, query: &str) -> Result<Option<f64>> {
    let path = format!("/api/v1/query?query={}", url_encode(query));
    let (status, body) = http_get(&net.host, PROMETHEUS.parse()?, &path)?;
    ensure!(status == 200, "Prometheus answered {status}: {body}");
    let answer: Value = serde_json::from_str(&body).context("Prometheus's JSON")?;
    ensure!(answer["status"] == "success", "query failed: {body}");
    let result = answer["data"]["result"].as_array().context("no result")?;
    match result.as_slice() {
        [] => Ok(None),
        [series] => Ok(series["value"][1]
            .as_str()
            .and_then(|value| value.parse().ok())),
        _ => bail!("{query} selects several series: {body}"),
    }
}

#[test]
fn prometheus_scrapes_the_counts_of_the_lines_written() -> Result<()> {
    let net = TestNet::new()?;
    let dir = TempDir::new("prometheus")?;
    let mut fwlog = Fwlog::watch(
        &net.host,
        &[&net.host_if, "--metrics", METRICS, "--ring-size", "16M"],
    )?;
    ensure!(
        fwlog
            .stderr_text()
            .contains(&format!("metrics at http://{METRICS}/metrics")),
        "fwlog did not say where its metrics are: {}",
        fwlog.stderr_text()
    );

    for _ in 0..KNOCKS {
        udp_send(&net.peer, addr(HOST_V4, 9999), b"knock")?;
    }
    let mut drops = 0;
    while drops < KNOCKS {
        fwlog.expect_event("an inbound UDP drop", |e| {
            e["event_type"] == "verdict"
                && e["action"] == "drop"
                && e["direction"] == "inbound"
                && e["proto"] == "udp"
        })?;
        drops += 1;
    }

    // The text itself: valid for promtool, counting what was written.
    let (status, text) = wait_for(
        "fwlog's /metrics counting the drops",
        Duration::from_secs(5),
        || {
            http_get(&net.host, metrics_address(), "/metrics")
                .ok()
                .filter(|(_, text)| text.contains(&format!("proto=\"udp\"}} {KNOCKS}\n")))
        },
    )?;
    ensure!(status == 200, "/metrics answered {status}");
    let complaints = promtool_check(&text)?;
    ensure!(complaints.is_empty(), "promtool: {complaints}");
    println!("promtool check metrics: passed, nothing to say\n/metrics:\n{text}");
    for series in [
        "fwlog_build_info{version=",
        "fwlog_lost_events_total{where=\"ring\"} 0",
        "fwlog_ring_size_bytes 16777216",
        "fwlog_chain_packets_total{family=\"ipv4\",chain=\"LOG_AND_DROP\"}",
        "fwlog_flow_table_max_entries 65536",
    ] {
        ensure!(text.contains(series), "no {series} in:\n{text}");
    }
    let (status, _) = http_get(&net.host, metrics_address(), "/nothing")?;
    ensure!(status == 404, "/nothing answered {status}");

    // A real Prometheus in the same namespace, scraping every second.
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: fwlog\n    static_configs:\n      \
             - targets: ['{METRICS}']\n"
        ),
    )?;
    let storage = dir.path().join("data");
    let mut prometheus = Daemon::start(
        &net.host,
        "prometheus",
        &[
            &format!("--config.file={}", config.display()),
            &format!("--storage.tsdb.path={}", storage.display()),
            &format!("--web.listen-address={PROMETHEUS}"),
        ],
        &dir.path().join("prometheus.log"),
    )?;
    let query = "fwlog_events_total{event_type=\"verdict\",action=\"drop\",direction=\"inbound\",proto=\"udp\"}";
    let value = wait_for(
        "Prometheus scraping fwlog's drop counter",
        Duration::from_secs(30),
        || {
            if !prometheus.running() {
                return Some(Err(anyhow::anyhow!(
                    "prometheus exited: {}",
                    prometheus.output()
                )));
            }
            match query_value(&net, query) {
                Ok(Some(value)) => Some(Ok(value)),
                _ => None,
            }
        },
    )
    .with_context(|| format!("prometheus said: {}", prometheus.output()))??;
    ensure!(
        value == KNOCKS as f64,
        "Prometheus has {value} for {query}, fwlog wrote {KNOCKS} such lines"
    );
    println!("Prometheus: {query} = {value} (fwlog wrote {KNOCKS} such lines)");
    let up = query_value(&net, "up{job=\"fwlog\"}")?;
    ensure!(up == Some(1.0), "up{{job=\"fwlog\"}} is {up:?}");
    prometheus.stop()?;
    fwlog.stop(nix::sys::signal::Signal::SIGINT)?;
    Ok(())
}

#[test]
fn a_taken_metrics_port_is_a_one_line_error() -> Result<()> {
    let net = TestNet::new()?;
    let _holder = net
        .host
        .enter(|| std::net::TcpListener::bind(METRICS))?
        .context("holding the port")?;
    let output = fwlog_tests::fwlog::fwlog_command(&net.host)
        .args(["watch", &net.host_if, "--metrics", METRICS])
        .stdin(Stdio::null())
        .output()?;
    ensure!(!output.status.success(), "fwlog started on a taken port");
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(
        stderr.contains(&format!("--metrics {METRICS}: cannot listen there")),
        "{stderr}"
    );
    ensure!(
        net.host
            .saved_rules()?
            .lines()
            .all(|l| !l.contains("fwlog")),
        "rules left behind:\n{}",
        net.host.saved_rules()?
    );
    Ok(())
}

#[test]
fn a_collector_held_up_by_its_output_still_answers_and_shows_the_ring_filling() -> Result<()> {
    let net = TestNet::new()?;
    // stdout is a pipe nobody reads: after 64 KiB of lines the collector blocks in write().
    let mut child = fwlog_tests::fwlog::fwlog_command(&net.host)
        .args([
            "watch",
            &net.host_if,
            "--metrics",
            METRICS,
            "--format",
            "json",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("starting fwlog watch")?;
    let _unread = child.stdout.take();
    let guard = KillOnDrop(child, net.host.path());
    wait_for("fwlog's /metrics", Duration::from_secs(20), || {
        http_get(&net.host, metrics_address(), "/metrics").ok()
    })?;
    // A few thousand drop lines, about 300 bytes each: far more than the pipe holds.
    let peer = addr(HOST_V4, 9999);
    net.peer.enter(move || -> std::io::Result<()> {
        for _ in 0..3000 {
            let socket = std::net::UdpSocket::bind("0.0.0.0:0")?;
            socket.send_to(b"knock", peer)?;
        }
        Ok(())
    })??;
    let used = wait_for(
        "ring_used_bytes rising while the collector is blocked",
        Duration::from_secs(10),
        || {
            let (_, text) = http_get(&net.host, metrics_address(), "/metrics").ok()?;
            let used: f64 = text
                .lines()
                .find_map(|l| l.strip_prefix("fwlog_ring_used_bytes "))?
                .parse()
                .ok()?;
            (used > 0.0).then_some(used)
        },
    )?;
    println!("ring_used_bytes while the output is blocked: {used}");
    drop(guard);
    Ok(())
}

/// Kills fwlog and removes what it installed.
struct KillOnDrop(std::process::Child, std::path::PathBuf);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let _ = Command::new("nsenter")
            .arg(format!("--net={}", self.1.display()))
            .arg(fwlog_tests::fwlog_bin())
            .arg("uninstall")
            .output();
    }
}
