//! Log files and configuration: rotation that never splits or loses a line, a backlog larger
//! than the spool written whole, SIGHUP reopening, and configuration errors that point at their
//! line.

use std::{path::PathBuf, time::Duration};

use anyhow::{Context as _, Result};
use fwlog_tests::{
    addr,
    fwlog::fwlog_command,
    netns::{HOST_V4, PEER_V4},
    patient,
    traffic::udp_bind,
    traffic::udp_send,
    Fwlog, TestNet,
};
use nix::sys::signal::{kill, Signal};
use serde_json::Value;

/// A directory of the test's own, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Result<Self> {
        let dir = std::env::temp_dir().join(format!("fwlog-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        Ok(TempDir(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Every line of FILE and its rotated copies FILE.1 … FILE.N, each parsed.
fn read_rotated(file: &std::path::Path) -> Result<(Vec<Value>, usize)> {
    let mut lines = Vec::new();
    let mut files = 0;
    for n in 0..100 {
        let path = if n == 0 {
            file.to_path_buf()
        } else {
            PathBuf::from(format!("{}.{n}", file.display()))
        };
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        files += 1;
        assert!(
            text.is_empty() || text.ends_with('\n'),
            "{} ends with a whole line",
            path.display()
        );
        for line in text.lines() {
            lines.push(
                serde_json::from_str(line)
                    .with_context(|| format!("a whole JSON line in {}: {line}", path.display()))?,
            );
        }
    }
    Ok((lines, files))
}

#[test]
fn rotation_under_a_flood_keeps_every_line_whole_and_the_count_exact() -> Result<()> {
    let net = TestNet::new()?;
    let dir = TempDir::new("rotation")?;
    let file = dir.0.join("fwlog.jsonl");
    let _sink = udp_bind(&net.peer, addr(PEER_V4, 7100))?;
    let path = file.to_string_lossy().into_owned();
    let mut fwlog = Fwlog::watch(
        &net.host,
        &[
            "--output",
            &path,
            "--rotate-size",
            "16K",
            "--rotate-keep",
            "90",
            "--events",
            "verdict",
            &net.host_if,
        ],
    )?;
    const SENT: usize = 2000;
    for _ in 0..SENT {
        udp_send(&net.host, addr(PEER_V4, 7100), b"x")?;
    }
    std::thread::sleep(Duration::from_millis(500));
    assert!(fwlog.stop(Signal::SIGINT)?.success());
    let (lines, files) = read_rotated(&file)?;
    assert!(
        files > 3,
        "a 16 KiB limit rotates this flood several times ({files} files)"
    );
    let verdicts = lines
        .iter()
        .filter(|e| e["event_type"] == "verdict" && e["dest_port"] == 7100)
        .count();
    let lost: u64 = lines
        .iter()
        .filter(|e| e["event_type"] == "lost")
        .filter_map(|e| e["count"].as_u64())
        .sum();
    assert_eq!(lost, 0);
    assert_eq!(verdicts, SENT, "every datagram's line, in one of the files");
    for n in 1..files {
        let size = std::fs::metadata(format!("{}.{n}", file.display()))?.len();
        assert!(size <= 16 * 1024, "rotated file {n} is {size} bytes");
    }
    Ok(())
}

/// The first port of the backlog test's flows: flow N goes to `BACKLOG_PORT + N`.
const BACKLOG_PORT: u16 = 20_000;

/// What the output's spool holds for a sink that does not take its lines (`MAX_PENDING` in
/// fwlog/src/output/spool.rs): the backlog must pass it, or the test proves nothing.
const SPOOL_BYTES: usize = 4 << 20;

#[test]
fn a_backlog_larger_than_the_spool_is_written_whole() -> Result<()> {
    // A stopped collector lets the ring fill; when it runs again it finds the whole backlog at
    // once. 40 000 verdict events take 40 000 x 136 bytes (128 of event, 8 of ring header)
    // = 5.2 MiB of the 16 MiB ring, so the kernel loses none; as lines (about 345 bytes each)
    // they are 13.8 MB, three times the 4 MiB spool. A collector that formats the whole
    // backlog into one batch, of which the spool keeps 4 MiB, writes some 12 000 lines and
    // counts the rest `lost` (the bug fixed in 4cf9dc7).
    const FLOWS: u16 = 40_000;
    let net = TestNet::new()?;
    let dir = TempDir::new("backlog")?;
    let file = dir.0.join("fwlog.jsonl");
    let path = file.to_string_lossy().into_owned();
    let mut fwlog = Fwlog::watch(
        &net.host,
        &["--output", &path, "--events", "verdict", &net.host_if],
    )?;
    let pid = fwlog.pid().context("running")?;
    kill(pid, Signal::SIGSTOP)?;
    // One socket, a new port each time: every datagram is a new inbound attempt, dropped.
    let sent = net.peer.enter(move || -> std::io::Result<()> {
        let socket = std::net::UdpSocket::bind("0.0.0.0:0")?;
        for n in 0..FLOWS {
            socket.send_to(b"backlog", addr(HOST_V4, BACKLOG_PORT + n))?;
            // A breath now and then, so the veth's backlog queue never overflows.
            if n % 500 == 499 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        Ok(())
    });
    // Whatever happened, the collector must run again (or Drop's kill would wait on it).
    kill(pid, Signal::SIGCONT)?;
    sent?.context("sending the backlog")?;
    // A last flow after the backlog: once its line is in the file, the backlog was read (a
    // collector that loses lines may lose this one too: then the checks below say what is
    // missing).
    udp_send(&net.peer, addr(HOST_V4, BACKLOG_PORT - 1), b"last")?;
    let deadline = std::time::Instant::now() + patient(Duration::from_secs(10));
    let last = format!("\"dest_port\":{}", BACKLOG_PORT - 1);
    while !std::fs::read_to_string(&file).is_ok_and(|lines| lines.contains(&last))
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(fwlog.stop(Signal::SIGINT)?.success());
    let text = std::fs::read_to_string(&file)?;
    let stderr = fwlog.stderr_text();
    println!("{} bytes of lines; fwlog said: {stderr}", text.len());
    // Every flow reached the firewall and the ring (a datagram lost before either would make
    // the checks below fail for another reason); the host's own IPv6 chatter may add a few.
    let events: u64 = stderr
        .lines()
        .find_map(|l| l.strip_prefix("fwlog: ")?.split_once(" events, "))
        .and_then(|(events, _)| events.parse().ok())
        .with_context(|| format!("a summary line: {stderr}"))?;
    assert!(events > u64::from(FLOWS), "events read: {stderr}");
    let mut seen = vec![0u32; usize::from(FLOWS)];
    let mut lost = Vec::new();
    for line in text.lines() {
        let line: Value =
            serde_json::from_str(line).with_context(|| format!("a whole JSON line: {line}"))?;
        match line["event_type"].as_str() {
            Some("verdict") => {
                let port = line["dest_port"].as_u64().context("a port")?;
                if let Some(flow) = port.checked_sub(u64::from(BACKLOG_PORT)) {
                    if let Some(count) = seen.get_mut(flow as usize) {
                        *count += 1;
                    }
                }
            }
            Some("lost") => lost.push(line),
            _ => {}
        }
    }
    assert!(
        lost.is_empty(),
        "nothing lost: {lost:?}; fwlog said: {stderr}"
    );
    let missing = seen.iter().filter(|&&count| count == 0).count();
    let repeated = seen.iter().filter(|&&count| count > 1).count();
    assert_eq!(
        (missing, repeated),
        (0, 0),
        "one verdict line per flow ({missing} flows without, {repeated} with more); \
         fwlog said: {stderr}"
    );
    assert!(
        text.len() > SPOOL_BYTES,
        "the backlog's lines ({} bytes) pass the spool's {SPOOL_BYTES}: the test's premise",
        text.len()
    );
    Ok(())
}

#[test]
fn sighup_reopens_the_output_file() -> Result<()> {
    let net = TestNet::new()?;
    let dir = TempDir::new("reopen")?;
    let file = dir.0.join("fwlog.jsonl");
    let moved = dir.0.join("fwlog.jsonl.old");
    let _sink = udp_bind(&net.peer, addr(PEER_V4, 7200))?;
    let path = file.to_string_lossy().into_owned();
    let mut fwlog = Fwlog::watch(
        &net.host,
        &["--output", &path, "--events", "verdict", &net.host_if],
    )?;
    udp_send(&net.host, addr(PEER_V4, 7200), b"before")?;
    // The first line must be in the file before it moves, however slow the machine.
    let deadline = std::time::Instant::now() + patient(Duration::from_secs(5));
    while !std::fs::read_to_string(&file).is_ok_and(|lines| lines.contains("\"dest_port\":7200")) {
        assert!(
            std::time::Instant::now() < deadline,
            "no line for port 7200 in {}",
            file.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::fs::rename(&file, &moved)?;
    kill(fwlog.pid().context("running")?, Signal::SIGHUP)?;
    // Nothing shows that fwlog took the signal: the reopen happens at its next write.
    std::thread::sleep(patient(Duration::from_millis(200)));
    udp_send(&net.host, addr(PEER_V4, 7201), b"after")?;
    std::thread::sleep(patient(Duration::from_millis(400)));
    assert!(
        fwlog.pid().is_some(),
        "SIGHUP with --output does not stop fwlog"
    );
    assert!(fwlog.stop(Signal::SIGINT)?.success());
    let old = std::fs::read_to_string(&moved)?;
    let new = std::fs::read_to_string(&file)?;
    assert!(
        old.contains("\"dest_port\":7200") && !old.contains("\"dest_port\":7201"),
        "{old}"
    );
    assert!(
        new.contains("\"dest_port\":7201") && !new.contains("\"dest_port\":7200"),
        "{new}"
    );
    Ok(())
}

#[test]
fn a_bad_config_file_names_its_line_and_installs_nothing() -> Result<()> {
    let net = TestNet::new()?;
    let dir = TempDir::new("config")?;
    let config = dir.0.join("fwlog.toml");
    std::fs::write(&config, "interfaces = [\"eth0\"]\n\ninbound = \"dorp\"\n")?;
    let config_arg = config.to_string_lossy().into_owned();
    let check = fwlog_command(&net.host)
        .args(["config", "check", "--config", &config_arg])
        .output()?;
    assert!(!check.status.success());
    let message = String::from_utf8(check.stderr)?;
    assert_eq!(
        message.trim(),
        format!("fwlog: {config_arg}:3:11: unknown variant \"dorp\", expected one of \"accept\", \"drop\", \"reject\"")
    );
    let before = net.host.saved_rules()?;
    let watch = fwlog_command(&net.host)
        .args(["watch", "--config", &config_arg, &net.host_if])
        .output()?;
    assert!(!watch.status.success());
    assert!(String::from_utf8(watch.stderr)?.contains(":3:11: unknown variant \"dorp\""));
    assert_eq!(net.host.saved_rules()?, before);

    // A good file: `config check` prints the configuration in effect.
    std::fs::write(&config, "inbound = \"reject\"\nallow_in = [\"22/tcp\"]\n")?;
    let check = fwlog_command(&net.host)
        .args(["config", "check", "--config", &config_arg])
        .output()?;
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let printed = String::from_utf8(check.stdout)?;
    assert!(printed.contains("inbound = \"reject\""), "{printed}");
    assert!(printed.contains("allow_in = [\"22/tcp\"]"), "{printed}");
    assert!(
        printed.contains("outbound = \"accept\""),
        "defaults filled in: {printed}"
    );

    // And `rules` follows it.
    let rules = fwlog_command(&net.host)
        .args(["rules", "--config", &config_arg, &net.host_if])
        .output()?;
    let rules = String::from_utf8(rules.stdout)?;
    assert!(rules.contains("--dport 22 --syn -m conntrack --ctstate NEW -m comment --comment fwlog -j LOG_AND_ACCEPT"), "{rules}");
    assert!(rules.contains("-j LOG_AND_REJECT\n"), "{rules}");
    Ok(())
}
