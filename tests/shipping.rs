//! Shipping the lines with rsyslog: contrib/rsyslog/fwlog-ship.conf (imfile on fwlog's output
//! file, omrelp) in fwlog's namespace and fwlog-collect.conf (imrelp, a file per host) in the
//! peer's, each an rsyslogd of the test's own (own config, work and spool directories; never
//! the system's). The collector is SIGKILLed and started again mid-stream; every line arrives
//! once, byte for byte.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use fwlog_tests::{
    addr,
    netns::{HOST_V4, PEER_V4},
    traffic::udp_bind,
    Fwlog, NetNsGuard, TestNet,
};
use nix::sys::signal::Signal;

const SHIP_CONF: &str = include_str!("../contrib/rsyslog/fwlog-ship.conf");
const COLLECT_CONF: &str = include_str!("../contrib/rsyslog/fwlog-collect.conf");
const RELP_PORT: &str = "2514";
/// New inbound attempts the peer makes while the collector dies and comes back.
const ATTEMPTS: u16 = 1000;
const ATTEMPT_INTERVAL: Duration = Duration::from_millis(4);

#[test]
fn every_line_reaches_the_collector_once_across_its_crash() -> Result<()> {
    let net = TestNet::new()?;
    let dir = TempDir::new()?;
    let log = dir.0.join("fwlog.jsonl");
    let hosts = dir.0.join("hosts");

    let mut fwlog = Fwlog::watch(
        &net.host,
        &[&net.host_if, "--output", &log.to_string_lossy()],
    )?;
    let collect_conf = dir.config(
        "collect",
        &COLLECT_CONF.replace("/var/log/fwlog-hosts", &hosts.to_string_lossy()),
    )?;
    let mut collector = Rsyslogd::start(&net.peer, &collect_conf, &dir.0, "collect")?;
    let ship_conf = dir.config(
        "ship",
        &SHIP_CONF
            .replace("logs.example.org", PEER_V4)
            .replace("/var/log/fwlog/fwlog.jsonl", &log.to_string_lossy())
            .replace("action.resumeInterval=\"5\"", "action.resumeInterval=\"1\""),
    )?;
    let _shipper = Rsyslogd::start(&net.host, &ship_conf, &dir.0, "ship")?;

    // The peer knocks on a new port every few milliseconds (one drop line each) while the
    // collector is killed and, a while later, started again.
    let knocker = udp_bind(&net.peer, addr("0.0.0.0", 0))?;
    let stream = ATTEMPT_INTERVAL * u32::from(ATTEMPTS);
    let (at_kill, at_restart) = std::thread::scope(|scope| -> Result<(usize, usize)> {
        let knocks = scope.spawn(|| -> Result<()> {
            for port in 20_000..20_000 + ATTEMPTS {
                knocker.send_to(b"knock", addr(HOST_V4, port))?;
                std::thread::sleep(ATTEMPT_INTERVAL);
            }
            Ok(())
        });
        std::thread::sleep(stream / 4);
        collector.kill()?;
        let at_kill = line_count(&log);
        std::thread::sleep(stream / 4);
        let at_restart = line_count(&log);
        collector = Rsyslogd::start(&net.peer, &collect_conf, &dir.0, "collect")?;
        knocks.join().expect("the knocking thread")?;
        Ok((at_kill, at_restart))
    })?;
    fwlog.stop(Signal::SIGINT)?;
    assert!(
        0 < at_kill && at_kill < at_restart,
        "lines must be written before the kill ({at_kill}) and while the collector is down ({at_restart})"
    );

    let written = fs::read(&log)?;
    let written_lines = written.split_inclusive(|&b| b == b'\n').count();
    assert!(
        written_lines >= usize::from(ATTEMPTS),
        "fwlog wrote {written_lines} lines"
    );
    let received = wait_for_collector(&hosts, &written, Duration::from_secs(30))?;
    let received_lines: Vec<&[u8]> = received.split_inclusive(|&b| b == b'\n').collect();
    let mut sorted_written: Vec<&[u8]> = written.split_inclusive(|&b| b == b'\n').collect();
    let mut sorted_received = received_lines.clone();
    sorted_written.sort_unstable();
    sorted_received.sort_unstable();
    let duplicates = sorted_received.windows(2).filter(|w| w[0] == w[1]).count();
    assert_eq!(duplicates, 0, "lines received twice");
    assert!(
        sorted_received == sorted_written,
        "the collector holds {} lines, fwlog wrote {written_lines}",
        received_lines.len()
    );
    println!(
        "{written_lines} lines shipped, collector killed after {at_kill} and back after \
         {at_restart}: every line once, byte for byte, in {} order",
        if received == written {
            "the same"
        } else {
            "another"
        }
    );
    drop(collector);
    Ok(())
}

/// What the collector wrote for this host, once it holds as many bytes as fwlog wrote.
fn wait_for_collector(hosts: &Path, written: &[u8], wait: Duration) -> Result<Vec<u8>> {
    let deadline = Instant::now() + wait;
    loop {
        let files: Vec<PathBuf> = fs::read_dir(hosts)
            .into_iter()
            .flatten()
            .flatten()
            .map(|entry| entry.path())
            .collect();
        if files.len() > 1 {
            bail!("one host, one file: {files:?}");
        }
        let received = files.first().map(fs::read).transpose()?.unwrap_or_default();
        if received.len() >= written.len() || Instant::now() > deadline {
            return Ok(received);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn line_count(path: &Path) -> usize {
    fs::read(path).map_or(0, |text| text.iter().filter(|&&b| b == b'\n').count())
}

/// An rsyslogd of the test's own in `netns`, killed on drop.
struct Rsyslogd {
    child: Option<Child>,
    what: &'static str,
}

impl Rsyslogd {
    /// Starts `rsyslogd -n -f CONF`; for the collector, waits until it listens.
    fn start(netns: &NetNsGuard, conf: &Path, dir: &Path, what: &'static str) -> Result<Self> {
        let child = netns
            .command("rsyslogd")
            .args(["-n", "-f"])
            .arg(conf)
            .arg("-i")
            .arg(dir.join(format!("{what}.pid")))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting rsyslogd (apt-get install rsyslog rsyslog-relp)")?;
        let mut rsyslogd = Rsyslogd {
            child: Some(child),
            what,
        };
        if what == "collect" {
            let deadline = Instant::now() + Duration::from_secs(10);
            while !netns
                .output("ss", &["-Hltn", &format!("sport = :{RELP_PORT}")])?
                .contains(RELP_PORT)
            {
                if let Some(status) = rsyslogd
                    .child
                    .as_mut()
                    .and_then(|c| c.try_wait().ok())
                    .flatten()
                {
                    bail!("the collecting rsyslogd exited ({status})");
                }
                if Instant::now() > deadline {
                    bail!("the collecting rsyslogd does not listen on {RELP_PORT}");
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(rsyslogd)
    }

    /// SIGKILL, as a crash would.
    fn kill(&mut self) -> Result<()> {
        let mut child = self.child.take().context("rsyslogd already stopped")?;
        child
            .kill()
            .with_context(|| format!("killing the {} rsyslogd", self.what))?;
        child.wait()?;
        Ok(())
    }
}

impl Drop for Rsyslogd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The test's directory: configs, work directories (imfile state, queues), the lines.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<Self> {
        let dir = std::env::temp_dir().join(format!("fwlog-shipping-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir)?;
        Ok(TempDir(dir))
    }

    /// A main config of the instance's own: its work directory, then the contrib snippet.
    fn config(&self, what: &str, snippet: &str) -> Result<PathBuf> {
        let work = self.0.join(format!("{what}-work"));
        fs::create_dir_all(&work)?;
        let path = self.0.join(format!("{what}.conf"));
        fs::write(
            &path,
            format!("global(workDirectory=\"{}\")\n{snippet}", work.display()),
        )?;
        Ok(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
