//! The package in a booted Debian: installed while systemd runs (not enabled, not started),
//! `systemctl enable --now fwlog` on the container's interface, traffic from a peer namespace,
//! the JSON lines in /var/log/fwlog, logrotate, the journal, `systemctl stop` (the firewall
//! stays), then removal (the firewall goes).

use std::{
    fs,
    time::{Duration, Instant},
};

use anyhow::{bail, Result};
use fwlog_package_tests::{fwlog_rules, Booted, Root};
use fwlog_tests::{addr, netns::HOST_V4, netns::PEER_V4, traffic, TestNet};
use serde_json::Value;

const LOG: &str = "/var/log/fwlog/fwlog.jsonl";

#[test]
fn the_service_installs_logs_rotates_stops_and_goes_with_the_package() -> Result<()> {
    let net = TestNet::new()?;
    let root = Root::new()?;
    let mut container = Booted::boot(&root, &net.host)?;

    let installed = container.exec_ok("dpkg -i /var/tmp/fwlog.deb 2>&1")?;
    println!("dpkg -i with systemd running:\n{installed}");
    let state = container.exec("systemctl is-enabled fwlog; systemctl is-active fwlog")?;
    assert_eq!(
        String::from_utf8_lossy(&state.stdout),
        "disabled\ninactive\n",
        "installing must change nothing"
    );
    assert!(fwlog_rules(&net.host.saved_rules()?).is_empty());

    // The admin names the interface and enables the service.
    let conffile = root.path("/etc/fwlog/fwlog.toml");
    let text = fs::read_to_string(&conffile)?.replace(
        "#interfaces = [\"eth0\"]",
        &format!("interfaces = [\"{}\"]", net.host_if),
    );
    fs::write(&conffile, text)?;
    let enabled = container.exec("systemctl enable --now fwlog 2>&1")?;
    if !enabled.status.success() {
        bail!(
            "systemctl enable --now fwlog failed: {}\njournal:\n{}",
            String::from_utf8_lossy(&enabled.stdout),
            journal(&container)?
        );
    }
    wait_for(&container, "the reader to start", |c| {
        journal(c).is_ok_and(|j| j.contains("watching the installed setup"))
    })?;
    assert!(net.host.saved_rules()?.contains("LOG_AND_DROP"));

    // A peer knocks: dropped, and one line each.
    let knock = addr(HOST_V4, 2201);
    assert!(
        !traffic::tcp_connect(&net.peer, knock, Duration::from_millis(500))?,
        "the inbound policy let a new connection in"
    );
    let drop_line = wait_for_line(&root, LOG, |line| {
        line["action"] == "drop" && line["src_ip"] == PEER_V4 && line["dest_port"] == 2201
    })?;
    println!("a line of {LOG}: {drop_line}");

    // logrotate moves the file; SIGHUP makes the reader write a new one.
    container.exec_ok("logrotate --force /etc/logrotate.d/fwlog 2>&1")?;
    assert!(
        root.path(&format!("{LOG}.1")).exists(),
        "logrotate did not rotate"
    );
    traffic::udp_send(&net.peer, addr(HOST_V4, 5353), b"after the rotation")?;
    let after_rotation = wait_for_line(&root, LOG, |line| {
        line["action"] == "drop" && line["proto"] == "udp" && line["dest_port"] == 5353
    })?;
    println!("after logrotate, in the new {LOG}: {after_rotation}");

    // Stop ends the reader; the firewall keeps enforcing.
    container.exec_ok("systemctl stop fwlog")?;
    let status = container.exec_ok("fwlog status --json")?;
    let status: Value = serde_json::from_str(&status)?;
    assert_eq!(status["mode"], "installed", "{status}");
    assert_eq!(status["reader_pid"], Value::Null, "{status}");
    assert!(
        !traffic::tcp_connect(&net.peer, addr(HOST_V4, 2202), Duration::from_millis(500))?,
        "stopping the service opened the firewall"
    );
    println!(
        "after systemctl stop: mode {}, reader {}, {} rules",
        status["mode"],
        status["reader_pid"],
        status["rules"].as_array().map_or(0, Vec::len)
    );
    let journal_text = journal(&container)?;
    println!("journalctl -u fwlog:\n{journal_text}");
    for said in [
        format!("fwlog: installed on {}", net.host_if),
        "watching the installed setup".to_string(),
        "Sent signal SIGHUP".to_string(),
        "Deactivated successfully".to_string(),
    ] {
        assert!(journal_text.contains(&said), "no {said:?} in the journal");
    }

    // Removing the package takes the firewall away, and nothing of fwlog is left.
    let removed = container.exec_ok("apt-get remove --yes fwlog 2>&1")?;
    println!("apt-get remove:\n{removed}");
    let rules = net.host.saved_rules()?;
    assert!(
        fwlog_rules(&rules).is_empty(),
        "left after removal: {rules}"
    );
    let pins = root.fwlog_pins();
    assert!(
        pins.iter().all(|pin| !pin.contains('/')),
        "pins left: {pins:?}"
    );
    let listener = traffic::tcp_listen(&net.host, addr(HOST_V4, 2203))?;
    assert!(
        traffic::tcp_connect(&net.peer, addr(HOST_V4, 2203), Duration::from_secs(2))?,
        "after removal a new connection should get in"
    );
    drop(listener);
    let processes = container.exec_ok("ps -e -o comm=")?;
    assert!(!processes.contains("fwlog"), "{processes}");

    container.power_off()?;
    Ok(())
}

fn journal(container: &Booted) -> Result<String> {
    container.exec_ok("journalctl --unit fwlog --no-pager --output short-iso")
}

/// Polls `done` every 200 ms for up to 20 s.
fn wait_for(container: &Booted, what: &str, done: impl Fn(&Booted) -> bool) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if done(container) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    bail!(
        "timed out waiting for {what}; journal: {}",
        journal(container).unwrap_or_default()
    )
}

/// The first JSON line of `path` (inside `root`) that `matches`, waiting up to 10 s.
fn wait_for_line(root: &Root, path: &str, matches: impl Fn(&Value) -> bool) -> Result<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut text = String::new();
    while Instant::now() < deadline {
        text = fs::read_to_string(root.path(path)).unwrap_or_default();
        for line in text.lines() {
            let value: Value = serde_json::from_str(line)
                .map_err(|error| anyhow::anyhow!("{path}: not JSON ({error}): {line}"))?;
            if matches(&value) {
                return Ok(value);
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    bail!("no matching line in {path} within 10 s; it holds:\n{text}")
}
