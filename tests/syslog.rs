//! `--syslog` against a real rsyslogd: both run in a mount namespace of the test's own whose
//! /dev is a private tmpfs, so the rsyslogd's imuxsock socket is the /dev/log fwlog writes to
//! (never the machine's system log). Every line fwlog writes arrives once, whole, as daemon.info
//! from fwlog[PID] with its `[FW-X]:` tag, and a hostile process name (a quote, a newline, an
//! escape sequence) arrives escaped inside the JSON, never as raw control characters.

use std::{
    fs,
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use fwlog_tests::{
    addr,
    daemon::TempDir,
    fwlog_bin,
    netns::{HOST_V4, PEER_V4},
    patient,
    traffic::{udp_bind, udp_send},
    Fwlog, NetNsGuard, TestNet,
};
use nix::sys::signal::Signal;
use serde_json::Value;

/// What the process that sends the outbound datagram calls itself (15 bytes, the kernel's
/// limit for a task's comm): a quote, a newline and a terminal escape.
const HOSTILE_COMM: &[u8] = b"ev\"il\n\x1b[31mx";
const KNOCKS: u16 = 40;

/// The holder of a mount namespace whose /dev is a tmpfs with null, zero, random and urandom
/// bound in from the real /dev, and nothing else: /dev/log there is whoever binds it.
struct PrivateDev {
    holder: Child,
}

impl PrivateDev {
    fn new(dir: &Path) -> Result<Self> {
        let old = dir.join("olddev");
        fs::create_dir_all(&old)?;
        let script = format!(
            "set -e; mount --rbind /dev {old}; mount -t tmpfs -o mode=755 fwlog-test-dev /dev; \
             for n in null zero full random urandom; do touch /dev/$n; \
             mount --bind {old}/$n /dev/$n; done; umount -l {old}; \
             for m in /run/netns/*; do umount -l \"$m\" 2>/dev/null || true; done; \
             echo ready; exec sleep 600",
            old = old.display()
        );
        let mut holder = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting unshare --mount (util-linux)")?;
        let stdout = holder.stdout.take().context("no stdout")?;
        let (ready_tx, ready) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = ready_tx.send(line);
        });
        let private = PrivateDev { holder };
        match ready.recv_timeout(patient(Duration::from_secs(10))) {
            Ok(line) if line.trim() == "ready" => Ok(private),
            other => bail!("the private /dev did not come up: {other:?}"),
        }
    }

    fn mount_ns(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/mnt", self.holder.id()))
    }

    /// `program` in the private mount namespace and the network namespace `netns`.
    fn command(&self, netns: &NetNsGuard, program: &str) -> Command {
        let mut command = Command::new("nsenter");
        command
            .arg(format!("--mount={}", self.mount_ns().display()))
            .arg(format!("--net={}", netns.path().display()))
            .arg(program);
        command
    }

    /// Whether /dev/log exists in the private namespace (through the holder's root).
    fn has_dev_log(&self) -> bool {
        Path::new(&format!("/proc/{}/root/dev/log", self.holder.id())).exists()
    }
}

impl Drop for PrivateDev {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// An rsyslogd of the test's own listening on the private /dev/log, writing each message as
/// `facility.severity|programname|procid|msg` to `out`; killed on drop.
struct Rsyslogd(Child);

impl Rsyslogd {
    fn start(dev: &PrivateDev, netns: &NetNsGuard, dir: &Path, out: &Path) -> Result<Self> {
        let work = dir.join("work");
        fs::create_dir_all(&work)?;
        let conf = dir.join("rsyslog.conf");
        fs::write(
            &conf,
            format!(
                "global(workDirectory=\"{work}\" maxMessageSize=\"16k\")\n\
                 module(load=\"imuxsock\" SysSock.Name=\"/dev/log\" SysSock.Unlink=\"on\" \
                 SysSock.RateLimit.Interval=\"0\")\n\
                 template(name=\"fields\" type=\"string\" \
                 string=\"%syslogfacility-text%.%syslogseverity-text%|%programname%|%procid%|%msg%\\n\")\n\
                 *.* action(type=\"omfile\" file=\"{out}\" template=\"fields\")\n",
                work = work.display(),
                out = out.display()
            ),
        )?;
        let child = dev
            .command(netns, "rsyslogd")
            .args(["-n", "-f"])
            .arg(&conf)
            .arg("-i")
            .arg(dir.join("rsyslogd.pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting rsyslogd (apt-get install rsyslog)")?;
        let mut rsyslogd = Rsyslogd(child);
        let deadline = Instant::now() + patient(Duration::from_secs(10));
        while !dev.has_dev_log() {
            if let Some(status) = rsyslogd.0.try_wait()? {
                bail!("rsyslogd exited ({status})");
            }
            if Instant::now() > deadline {
                bail!("rsyslogd made no /dev/log in the private mount namespace");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(rsyslogd)
    }
}

impl Drop for Rsyslogd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Sends one datagram from the host namespace, from a thread named [`HOSTILE_COMM`].
fn send_as_hostile_comm(net: &TestNet, to: std::net::SocketAddr) -> Result<()> {
    let file = fs::File::open(net.host.path()).context("opening the host namespace")?;
    std::thread::spawn(move || -> Result<()> {
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)?;
        let mut name = HOSTILE_COMM.to_vec();
        name.push(0);
        // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes from a buffer
        // that lives across the call.
        let set = unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr()) };
        anyhow::ensure!(set == 0, "prctl(PR_SET_NAME) failed");
        let socket = std::net::UdpSocket::bind(addr(HOST_V4, 0))?;
        socket.connect(to)?;
        socket.send(b"out")?;
        Ok(())
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the sending thread panicked"))?
}

/// The messages rsyslogd wrote, once there are `count` (or the wait is over).
fn wait_for_messages(out: &Path, count: usize, wait: Duration) -> Vec<String> {
    let deadline = Instant::now() + patient(wait);
    loop {
        let text = fs::read(out).unwrap_or_default();
        let lines: Vec<String> = String::from_utf8_lossy(&text)
            .lines()
            .map(str::to_string)
            .collect();
        if lines.len() >= count || Instant::now() > deadline {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn every_line_reaches_rsyslog_whole_and_escaped() -> Result<()> {
    let net = TestNet::new()?;
    let dir = TempDir::new("syslog")?;
    let dev = PrivateDev::new(dir.path())?;
    let out = dir.path().join("messages");
    let _rsyslogd = Rsyslogd::start(&dev, &net.host, dir.path(), &out)?;
    let _sink = udp_bind(&net.peer, addr(PEER_V4, 7800))?;

    let mut command = dev.command(&net.host, &fwlog_bin().to_string_lossy());
    command.env_remove("SSH_CONNECTION").args([
        "watch",
        "--syslog",
        "--format",
        "json",
        &net.host_if,
    ]);
    let mut fwlog = Fwlog::start(command, net.host.path(), Some(dev.mount_ns()))?;
    fwlog.wait_until_watching()?;
    let pid = fwlog.pid().context("fwlog's pid")?.as_raw();

    send_as_hostile_comm(&net, addr(PEER_V4, 7800))?;
    for port in 0..KNOCKS {
        udp_send(&net.peer, addr(HOST_V4, 21_000 + port), b"knock")?;
    }
    let hostile = fwlog.expect_event("the hostile process's datagram", |e| {
        e["dest_port"] == 7800 && e["direction"] == "outbound"
    })?;
    let comm = hostile["process"]["comm"].as_str().unwrap_or_default();
    assert_eq!(
        comm.as_bytes(),
        HOSTILE_COMM,
        "the process name, as the kernel has it: {hostile}"
    );
    assert!(
        fwlog.stop(Signal::SIGINT)?.success(),
        "{}",
        fwlog.stderr_text()
    );
    let mut written = vec![hostile];
    written.extend(fwlog.collect_events(Duration::from_millis(300)));
    let drops = written
        .iter()
        .filter(|e| e["action"] == "drop" && e["direction"] == "inbound")
        .count();
    assert_eq!(drops, usize::from(KNOCKS), "a drop line per knock");

    let messages = wait_for_messages(&out, written.len(), Duration::from_secs(10));
    let mut received = Vec::new();
    for message in &messages {
        let mut fields = message.splitn(4, '|');
        let (Some(priority), Some(program), Some(procid), Some(msg)) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            bail!("rsyslogd wrote an unexpected message: {message:?}");
        };
        if program != "fwlog" {
            continue;
        }
        assert_eq!(priority, "daemon.info", "{message}");
        assert_eq!(procid, pid.to_string(), "{message}");
        assert!(
            !msg.bytes().any(|b| b < 0x20) && !msg.contains("#033") && !msg.contains("#012"),
            "no control characters reached rsyslog: {message:?}"
        );
        let (tag, line) = msg
            .trim_start()
            .split_once("]: ")
            .with_context(|| format!("no [FW-X]: tag: {message:?}"))?;
        let line: Value = serde_json::from_str(line)
            .with_context(|| format!("a whole JSON line after the tag: {message:?}"))?;
        let expected_tag = match line["action"].as_str() {
            Some("accept") => "[FW-A",
            Some("drop") => "[FW-D",
            Some("reject") => "[FW-R",
            _ => "[FW",
        };
        assert_eq!(tag, expected_tag, "{message}");
        if line["dest_port"] == 7800 {
            println!("the hostile process's line as rsyslog got it: {message}");
        }
        received.push(line);
    }
    println!(
        "{} lines written, {} messages from fwlog[{pid}] in rsyslog ({drops} drops)",
        written.len(),
        received.len()
    );
    assert_eq!(
        received, written,
        "every line once, whole, in order (rsyslog wrote {messages:#?})"
    );
    Ok(())
}
