//! A new instance over what an earlier one left (`fwlog install` again, a restarted service, a
//! watch after a killed one): the earlier rules enforce until the new ones replace them in one
//! transaction per family, so no new connection gets in between.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use fwlog_tests::{
    addr,
    fwlog::fwlog_command,
    netns::HOST_V4,
    traffic::{tcp_connect, tcp_listen},
    Fwlog, NetNsGuard, TestNet,
};
use nix::sys::signal::Signal;
use serde_json::Value;

/// Connection attempts from the peer every 10 ms (each waits 50 ms for an answer) until
/// stopped or 60 s: how many got through, and how many were made.
struct Knocking {
    stop: Arc<AtomicBool>,
    through: Arc<AtomicU64>,
    tried: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Knocking {
    fn start(peer: &NetNsGuard, port: u16) -> Result<Self> {
        let file = std::fs::File::open(peer.path()).context("opening the peer namespace")?;
        let stop = Arc::new(AtomicBool::new(false));
        let through = Arc::new(AtomicU64::new(0));
        let tried = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, through, tried) = (stop.clone(), through.clone(), tried.clone());
            std::thread::spawn(move || {
                if nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).is_err() {
                    return;
                }
                let deadline = Instant::now() + Duration::from_secs(60);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    let target = addr(HOST_V4, port);
                    if std::net::TcpStream::connect_timeout(&target, Duration::from_millis(50))
                        .is_ok()
                    {
                        through.fetch_add(1, Ordering::Relaxed);
                    }
                    tried.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(10));
                }
            })
        };
        Ok(Knocking {
            stop,
            through,
            tried,
            thread: Some(thread),
        })
    }

    /// (got through, tried).
    fn finish(mut self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        (
            self.through.load(Ordering::Relaxed),
            self.tried.load(Ordering::Relaxed),
        )
    }
}

fn status(net: &TestNet) -> Result<Value> {
    let output = fwlog_command(&net.host)
        .args(["status", "--json"])
        .output()?;
    serde_json::from_slice(&output.stdout).context("status --json")
}

/// Runs `fwlog uninstall` in the host namespace when dropped.
struct UninstallOnDrop<'a>(&'a TestNet);

impl Drop for UninstallOnDrop<'_> {
    fn drop(&mut self) {
        let _ = fwlog_command(&self.0.host).arg("uninstall").output();
    }
}

#[test]
fn installing_again_never_opens_the_firewall() -> Result<()> {
    let net = TestNet::new()?;
    let _cleanup = UninstallOnDrop(&net);
    let _listener = tcp_listen(&net.host, addr(HOST_V4, 2525))?;
    let install = |net: &TestNet| -> Result<String> {
        let output = fwlog_command(&net.host)
            .args(["install", "--no-process", &net.host_if])
            .output()?;
        let said = String::from_utf8_lossy(&output.stderr).into_owned();
        anyhow::ensure!(output.status.success(), "install failed: {said}");
        Ok(said)
    };
    install(&net)?;
    let first = status(&net)?;
    assert!(!tcp_connect(
        &net.peer,
        addr(HOST_V4, 2525),
        Duration::from_millis(500)
    )?);

    let knocking = Knocking::start(&net.peer, 2525)?;
    std::thread::sleep(Duration::from_millis(300));
    let said = install(&net)?;
    std::thread::sleep(Duration::from_millis(300));
    let (through, tried) = knocking.finish();
    println!("during the second install: {through} of {tried} connection attempts got in");
    assert!(tried > 20, "the attempts ran: {tried}");
    assert_eq!(
        through, 0,
        "no connection got in while the setup was replaced ({tried} tried): {said}"
    );
    assert!(
        said.contains(
            "replaced the iptables rules of the earlier install, never leaving the table without \
             them"
        ),
        "{said}"
    );

    let second = status(&net)?;
    assert_eq!(second["mode"], "installed", "{second}");
    assert_ne!(second["instance"], first["instance"], "a new instance");
    let tag = format!(
        "fwlog-{}",
        second["instance"].as_str().context("an instance id")?
    );
    let rules = net.host.saved_rules()?;
    let commented = rules.lines().filter(|l| l.contains("--comment fwlog-"));
    assert!(
        commented.clone().all(|l| l.contains(&tag)),
        "only the new instance's rules remain:\n{rules}"
    );
    assert_eq!(
        rules.matches("verdict_drop_new").count(),
        2,
        "one logging rule per family, not two:\n{rules}"
    );
    // No reader ran: what the first install recorded (the first attempt and the knocks before
    // its rules went) is reported by the next reader as lost, and with what the second install
    // recorded it accounts for every attempt, one SYN each (50 ms is before any retransmission).
    let mut reader = Fwlog::watch(&net.host, &[])?;
    let lost = reader.expect_event("the first install's unread events", |e| {
        e["event_type"] == "lost" && e["where"] == "replaced"
    })?;
    let carried = lost["count"].as_u64().context("a count")?;
    let recorded = reader
        .collect_events(Duration::from_millis(800))
        .iter()
        .filter(|e| e["event_type"] == "verdict" && e["dest_port"] == 2525)
        .count() as u64;
    println!("the first install's ring held {carried} unread events, the second's {recorded}");
    assert!(
        said.contains(&format!(
            "the earlier install recorded {carried} events no reader read"
        )),
        "{said}"
    );
    assert!(carried >= 1, "at least the first attempt: {said}");
    assert_eq!(
        carried + recorded,
        1 + tried,
        "every attempt is a line or counted lost ({carried} carried, {recorded} recorded)"
    );
    assert!(!tcp_connect(
        &net.peer,
        addr(HOST_V4, 2525),
        Duration::from_millis(500)
    )?);
    reader.expect_event("the new setup records", |e| e["dest_port"] == 2525)?;
    assert!(reader.stop(Signal::SIGINT)?.success());
    Ok(())
}

#[test]
fn a_killed_sessions_rules_hold_until_the_next_session_replaces_them() -> Result<()> {
    let net = TestNet::new()?;
    let before = net.host.saved_rules()?;
    let _listener = tcp_listen(&net.host, addr(HOST_V4, 2526))?;
    let mut killed = Fwlog::watch(&net.host, &[&net.host_if])?;
    killed.stop(Signal::SIGKILL)?;

    let knocking = Knocking::start(&net.peer, 2526)?;
    std::thread::sleep(Duration::from_millis(300));
    let mut fwlog = Fwlog::watch(&net.host, &[&net.host_if])?;
    std::thread::sleep(Duration::from_millis(300));
    let (through, tried) = knocking.finish();
    println!("during the second watch's start: {through} of {tried} connection attempts got in");
    assert!(tried > 20, "the attempts ran: {tried}");
    assert_eq!(through, 0, "{}", fwlog.stderr_text());
    fwlog.expect_event("the new session logs", |e| {
        e["dest_port"] == 2526 && e["action"] == "drop"
    })?;
    let exit = fwlog.stop(Signal::SIGINT)?;
    assert!(exit.success(), "{exit}: {}", fwlog.stderr_text());
    assert_eq!(
        net.host.saved_rules()?,
        before,
        "and removes everything at exit"
    );
    assert!(!net.host.pin_dir().exists());
    Ok(())
}
