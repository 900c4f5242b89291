//! A failing output never opens the firewall: a full disk or stdout on /dev/full leaves the
//! rules enforcing, the lines wait and resume whole with a `lost` line (`where: output`) for
//! the events that did not fit, and the exit summary counts them; a closed stdout pipe
//! (`| head -1`) ends the session at once, and the rules go as after Ctrl-C.

use std::{
    fs::File,
    io::{BufRead as _, BufReader},
    net::{SocketAddr, UdpSocket},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{bail, ensure, Context as _, Result};
use fwlog_tests::{
    addr,
    fwlog::fwlog_command,
    netns::HOST_V4,
    traffic::{tcp_connect, tcp_listen},
    Fwlog, NetNsGuard, TestNet,
};
use nix::sys::signal::{kill, Signal};
use serde_json::Value;

/// How long a dropped peer waits for an answer that must not come.
const NO_ANSWER: Duration = Duration::from_millis(1500);

/// A tmpfs of its own, unmounted and removed on drop.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(size: &str) -> Result<Self> {
        let dir = std::env::temp_dir().join(format!("fwlog-osdisk-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "fwlog-osdisk"])
            .arg(&dir)
            .status()?;
        ensure!(
            status.success(),
            "mount a {size} tmpfs at {}",
            dir.display()
        );
        Ok(SmallDisk(dir))
    }

    /// Fills what is left with a file of zeros.
    fn fill(&self) -> Result<()> {
        let status = Command::new("dd")
            .args(["if=/dev/zero", "bs=1k", "status=none"])
            .arg(format!("of={}", self.0.join("filler").display()))
            .stderr(Stdio::null())
            .status()?;
        ensure!(
            !status.success(),
            "dd filled the disk (it ends with ENOSPC)"
        );
        Ok(())
    }

    /// Removes the filler and grows the disk: the spool holds more than 64 KiB.
    fn free(&self, size: &str) -> Result<()> {
        std::fs::remove_file(self.0.join("filler"))?;
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()?;
        ensure!(status.success(), "remount the tmpfs with {size}");
        Ok(())
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// Every line of FILE and FILE.1 … FILE.N, each a whole JSON line (the test fails on a cut one).
fn read_lines(file: &Path) -> Result<Vec<Value>> {
    let mut lines = Vec::new();
    for n in (0..1000).rev() {
        let path = if n == 0 {
            file.to_path_buf()
        } else {
            PathBuf::from(format!("{}.{n}", file.display()))
        };
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        ensure!(
            text.is_empty() || text.ends_with('\n'),
            "{} ends in half a line: {:?}",
            path.display(),
            &text[text.len().saturating_sub(80)..]
        );
        for line in text.lines() {
            lines.push(
                serde_json::from_str(line)
                    .with_context(|| format!("a whole JSON line in {}: {line}", path.display()))?,
            );
        }
    }
    Ok(lines)
}

/// `count` datagrams from the peer to `to`, each from a socket of its own (a new, dropped,
/// attempt each), paced so the ring buffer keeps up.
fn knock(peer: &NetNsGuard, to: SocketAddr, count: u32) -> Result<()> {
    peer.enter(move || -> std::io::Result<()> {
        for n in 0..count {
            let socket = UdpSocket::bind("0.0.0.0:0")?;
            socket.send_to(b"knock", to)?;
            if n % 100 == 99 {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        Ok(())
    })?
    .context("knocking")
}

/// The packets the kernel ran through fwlog's logging rules (the first rule of each
/// LOG_AND_* chain, both families): every one is an event or counted lost in the ring.
fn kernel_attempts(host: &NetNsGuard) -> Result<u64> {
    let mut total = 0;
    for (iptables, chain) in ["iptables", "ip6tables"].into_iter().flat_map(|iptables| {
        ["LOG_AND_ACCEPT", "LOG_AND_DROP", "LOG_AND_REJECT"].map(|chain| (iptables, chain))
    }) {
        let listing = host.output(iptables, &["-w", "-L", chain, "-v", "-x", "-n"])?;
        let first_rule = listing.lines().nth(2).context("a rule in the chain")?;
        total += first_rule
            .split_whitespace()
            .next()
            .context("a packet count")?
            .parse::<u64>()
            .with_context(|| format!("packets of {chain}: {listing}"))?;
    }
    Ok(total)
}

/// The exit summary's numbers: (events, lost in the ring, lost to the output).
fn summary(stderr: &str) -> Result<(u64, u64, u64)> {
    let line = stderr
        .lines()
        .find(|l| l.starts_with("fwlog: ") && l.contains(" events, "))
        .with_context(|| format!("a summary line in {stderr}"))?;
    let number = |after: &str| -> Option<u64> {
        let start = line.find(after)? + after.len();
        line[start..]
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    };
    let events = number("fwlog: ").context("events")?;
    let (ring, output) = match (number("lost ("), number(" in the ring, ")) {
        (Some(ring), Some(output)) => (ring, output),
        _ => (number("flows, ").context("lost")?, 0),
    };
    Ok((events, ring, output))
}

fn rules_installed(host: &NetNsGuard) -> Result<bool> {
    Ok(host.saved_rules()?.contains("LOG_AND_DROP"))
}

fn running(fwlog: &Fwlog) -> bool {
    fwlog.pid().is_some_and(|pid| kill(pid, None).is_ok())
}

#[test]
fn a_full_disk_keeps_the_peer_dropped_and_the_lines_resume_with_an_exact_lost_count() -> Result<()>
{
    let net = TestNet::new()?;
    let disk = SmallDisk::mount("64k")?;
    let file = disk.0.join("fwlog.jsonl");
    let path = file.to_string_lossy().into_owned();
    let _listener = tcp_listen(&net.host, addr(HOST_V4, 8080))?;
    let mut fwlog = Fwlog::watch(
        &net.host,
        &[
            "--output",
            &path,
            "--rotate-size",
            "16K",
            "--rotate-keep",
            "900",
            "--events",
            "verdict",
            &net.host_if,
        ],
    )?;
    knock(&net.peer, addr(HOST_V4, 7001), 20)?;
    std::thread::sleep(Duration::from_millis(500));
    disk.fill()?;

    // The spool holds 4 MiB (some 10 000 lines): 16 000 attempts overflow it.
    knock(&net.peer, addr(HOST_V4, 7002), 16_000)?;
    let started = Instant::now();
    assert!(
        !tcp_connect(&net.peer, addr(HOST_V4, 8080), NO_ANSWER)?,
        "the peer is still dropped while the disk is full"
    );
    ensure!(running(&fwlog), "fwlog still runs: {}", fwlog.stderr_text());
    ensure!(rules_installed(&net.host)?, "the rules are still there");
    let during = read_lines(&file)?;
    println!(
        "disk full: {} whole lines on disk, peer dropped for {:?}",
        during.len(),
        started.elapsed()
    );
    fwlog.wait_for_message(
        "fwlog: cannot write to the output file",
        Duration::from_secs(5),
    )?;

    disk.free("32m")?;
    fwlog.wait_for_message("fwlog: writing to the output file", Duration::from_secs(10))?;
    knock(&net.peer, addr(HOST_V4, 7003), 20)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !read_lines(&file)?
        .iter()
        .any(|l| l["dest_port"] == 7003 && l["event_type"] == "verdict")
    {
        ensure!(
            Instant::now() < deadline,
            "no line after the disk was freed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let attempts = kernel_attempts(&net.host)?;
    assert!(fwlog.stop(Signal::SIGINT)?.success());
    let stderr = fwlog.stderr_text();
    let (events, ring, output) = summary(&stderr)?;

    let lines = read_lines(&file)?;
    let bytes: usize = lines.iter().map(|l| l.to_string().len() + 1).sum();
    println!("file: {} lines, {bytes} bytes", lines.len());
    let verdicts = lines
        .iter()
        .filter(|l| l["event_type"] == "verdict")
        .count() as u64;
    let lost_lines: Vec<&Value> = lines
        .iter()
        .filter(|l| l["event_type"] == "lost" && l["where"] == "output")
        .collect();
    let lost_in_band: u64 = lost_lines.iter().filter_map(|l| l["count"].as_u64()).sum();
    let ring_in_band: u64 = lines
        .iter()
        .filter(|l| l["event_type"] == "lost" && l["where"] == "ring")
        .filter_map(|l| l["count"].as_u64())
        .sum();
    println!(
        "kernel: {attempts} attempts; summary: {events} events, {ring} lost in the ring, \
         {output} not written; file: {verdicts} verdicts, {} lost lines counting {lost_in_band}",
        lost_lines.len()
    );
    ensure!(output > 0, "the spool overflowed: {stderr}");
    assert_eq!(
        lost_in_band, output,
        "the lost lines count what the summary says"
    );
    assert_eq!(
        verdicts + lost_in_band,
        events,
        "every event read is a line or counted lost"
    );
    assert_eq!(
        events + ring,
        attempts,
        "every attempt the kernel saw is an event"
    );
    assert!(ring_in_band <= ring);
    // The lines of port 7003, sent after the disk was freed, all arrived after the lost line.
    let first_lost = lines
        .iter()
        .position(|l| l["event_type"] == "lost" && l["where"] == "output")
        .context("a lost line")?;
    assert!(lines[..first_lost].iter().all(|l| l["dest_port"] != 7003));
    assert_eq!(
        lines[first_lost..]
            .iter()
            .filter(|l| l["dest_port"] == 7003)
            .count(),
        20
    );
    assert!(!rules_installed(&net.host)?, "SIGINT removed the rules");
    Ok(())
}

/// `fwlog watch` with stdout on `stdout`, its stderr read line by line; returns when it says
/// it is watching.
fn start_with_stdout(
    net: &TestNet,
    args: &[&str],
    stdout: Stdio,
) -> Result<(std::process::Child, mpsc::Receiver<String>)> {
    let mut child = fwlog_command(&net.host)
        .arg("watch")
        .args(args)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()?;
    let stderr = child.stderr.take().context("stderr")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + fwlog_tests::patient(Duration::from_secs(20));
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.starts_with("fwlog: watching") => return Ok((child, rx)),
            Ok(_) => {}
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                bail!("fwlog did not start watching");
            }
        }
    }
}

/// Kills `child` and removes what it installed, when a test gives up on it.
struct Reaper<'a>(&'a mut std::process::Child, &'a NetNsGuard);

impl Drop for Reaper<'_> {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
            let _ = fwlog_command(self.1).arg("uninstall").output();
        }
    }
}

fn wait_exit(
    child: &mut std::process::Child,
    timeout: Duration,
) -> Result<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        ensure!(
            Instant::now() < deadline,
            "fwlog did not exit within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn stdout_on_dev_full_keeps_the_firewall_and_the_stats_summary_counts_every_event() -> Result<()> {
    let net = TestNet::new()?;
    let _listener = tcp_listen(&net.host, addr(HOST_V4, 8080))?;
    let full = File::options().write(true).open("/dev/full")?;
    let (mut child, stderr) = start_with_stdout(
        &net,
        &[
            "--format",
            "json",
            "--stats",
            "1",
            "--events",
            "verdict",
            &net.host_if,
        ],
        Stdio::from(full),
    )?;
    let reaper = Reaper(&mut child, &net.host);
    knock(&net.peer, addr(HOST_V4, 7004), 50)?;
    assert!(
        !tcp_connect(&net.peer, addr(HOST_V4, 8080), NO_ANSWER)?,
        "the peer is still dropped with stdout on /dev/full"
    );
    std::thread::sleep(Duration::from_millis(1200));
    ensure!(reaper.0.try_wait()?.is_none(), "fwlog still runs");
    ensure!(rules_installed(&net.host)?, "the rules are still there");
    let attempts = kernel_attempts(&net.host)?;
    kill(
        nix::unistd::Pid::from_raw(reaper.0.id() as i32),
        Signal::SIGINT,
    )?;
    let status = wait_exit(reaper.0, fwlog_tests::patient(Duration::from_secs(15)))?;
    std::thread::sleep(Duration::from_millis(100));
    let said: Vec<String> = stderr.try_iter().collect();
    let said = said.join("\n");
    println!("kernel: {attempts} attempts; fwlog said:\n{said}");
    assert!(status.success(), "a clean stop: {status}\n{said}");
    assert!(
        said.contains("fwlog: cannot write to standard output (No space left on device"),
        "{said}"
    );
    let (events, ring, output) = summary(&said)?;
    assert_eq!(events + ring, attempts, "{said}");
    assert!(events >= 51, "{said}");
    assert_eq!(output, events, "no event could be written: {said}");
    assert!(!rules_installed(&net.host)?, "SIGINT removed the rules");
    Ok(())
}

#[test]
fn a_closed_stdout_pipe_ends_the_session_at_once_and_removes_the_rules() -> Result<()> {
    let net = TestNet::new()?;
    let (mut child, stderr) = start_with_stdout(
        &net,
        &["--format", "json", "--events", "verdict", &net.host_if],
        Stdio::piped(),
    )?;
    let fwlog_out = child.stdout.take().context("stdout")?;
    let reaper = Reaper(&mut child, &net.host);
    let mut head = Command::new("head")
        .arg("-1")
        .stdin(Stdio::from(fwlog_out))
        .stdout(Stdio::piped())
        .spawn()?;
    knock(&net.peer, addr(HOST_V4, 7005), 1)?;
    let head_done = wait_exit(&mut head, Duration::from_secs(10))?;
    let head_exited = Instant::now();
    assert!(head_done.success());
    let line = std::io::read_to_string(head.stdout.take().context("head's stdout")?)?;
    assert!(line.contains("\"dest_port\":7005"), "{line}");
    // Nothing more happens on the wire: fwlog must see the closed pipe by itself.
    let status = wait_exit(reaper.0, fwlog_tests::patient(Duration::from_secs(5)))?;
    let took = head_exited.elapsed();
    std::thread::sleep(Duration::from_millis(100));
    let said: Vec<String> = stderr.try_iter().collect();
    let said = said.join("\n");
    println!("fwlog exited {took:?} after head, {status}:\n{said}");
    assert!(status.success(), "{said}");
    assert!(said.contains("standard output was closed"), "{said}");
    assert!(
        took < fwlog_tests::patient(Duration::from_secs(2)),
        "fwlog took {took:?} to see the closed pipe"
    );
    assert!(
        !rules_installed(&net.host)?,
        "the rules went as after Ctrl-C"
    );
    assert!(!net.host.pin_dir().exists(), "and the pins");
    Ok(())
}
