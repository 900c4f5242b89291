//! Installed mode: the firewall enforces and records with no reader; readers come and go and
//! get what piled up; status shows it; uninstall leaves nothing; --enable writes the unit.

use std::time::Duration;

use anyhow::{Context as _, Result};
use fwlog_tests::{
    addr,
    fwlog::fwlog_command,
    netns::{HOST_V4, PEER_V4},
    traffic::{ping, udp_bind, udp_send},
    Fwlog, TestNet,
};
use nix::sys::signal::Signal;
use serde_json::Value;

fn fwlog_ok(net: &TestNet, args: &[&str]) -> Result<String> {
    let output = fwlog_command(&net.host).args(args).output()?;
    anyhow::ensure!(
        output.status.success(),
        "fwlog {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8(output.stdout)? + &String::from_utf8(output.stderr)?)
}

/// Runs `fwlog uninstall` when dropped, so a failing test leaves no pins behind.
struct UninstallOnDrop<'a>(&'a TestNet);

impl Drop for UninstallOnDrop<'_> {
    fn drop(&mut self) {
        let _ = fwlog_command(&self.0.host).arg("uninstall").output();
    }
}

/// Link ids of the installed tc and cgroup links, from their pins.
fn pinned_link_ids(net: &TestNet) -> Result<Vec<u64>> {
    let mut ids = Vec::new();
    for entry in std::fs::read_dir(net.host.pin_dir())? {
        let path = entry?.path();
        if path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("link_"))
        {
            let shown = std::process::Command::new("bpftool")
                .args(["-j", "link", "show", "pinned"])
                .arg(&path)
                .output()?;
            let link: Value = serde_json::from_slice(&shown.stdout).context("bpftool's JSON")?;
            ids.push(link["id"].as_u64().context("a link id")?);
        }
    }
    Ok(ids)
}

#[test]
fn installed_firewall_works_without_a_reader_and_readers_resume() -> Result<()> {
    let net = TestNet::new()?;
    let before = net.host.saved_rules()?;
    let _cleanup = UninstallOnDrop(&net);
    let said = fwlog_ok(&net, &["install", &net.host_if])?;
    assert!(said.contains("fwlog: installed on "), "{said}");

    assert!(!ping(&net.peer, HOST_V4)?, "dropped with no reader running");
    let printed = fwlog_ok(&net, &["status", "--json"])?;
    let status: Value = serde_json::from_str(printed.lines().next().unwrap_or(""))?;
    assert_eq!(status["mode"], "installed");
    assert_eq!(status["interfaces"], serde_json::json!([net.host_if]));
    assert_eq!(status["inbound"], "drop");
    assert_eq!(
        status["counters"]["events"], 1,
        "the ping, counted in the kernel"
    );
    let counted: u64 = status["rules"]
        .as_array()
        .context("rules")?
        .iter()
        .filter(|r| {
            r["family"] == "iptables"
                && r["rule"]
                    .as_str()
                    .is_some_and(|r| r.starts_with("-A INPUT") && r.contains("! -p tcp"))
        })
        .map(|r| r["packets"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(counted, 1, "the iptables counter agrees");
    let links = pinned_link_ids(&net)?;
    // Kernels without TCX (before 6.6) keep netlink filters instead (tests/tc_netlink.rs).
    let tc_links = match status["tc_attach"]["mode"].as_str() {
        Some("netlink") => 0,
        _ => 2,
    };
    assert_eq!(
        links.len(),
        tc_links + 4 + 1,
        "tc ingress and egress, four cgroup hooks, the namespace link"
    );

    // A reader gets what happened before it started.
    let mut reader = Fwlog::watch(&net.host, &[])?;
    let first = reader.expect_event("the ping from before", |e| {
        e["proto"] == "icmp" && e["direction"] == "inbound"
    })?;
    assert_eq!(first["action"], "drop");
    let refused = fwlog_command(&net.host)
        .args(["watch", &net.host_if])
        .output()?;
    assert!(
        !refused.status.success(),
        "one reader at a time, and no session over an install"
    );
    reader.stop(Signal::SIGKILL)?;

    assert!(
        !ping(&net.peer, HOST_V4)?,
        "still dropped after the reader was killed"
    );
    let mut second = Fwlog::watch(&net.host, &[])?;
    second.expect_event("the ping sent while no reader ran", |e| {
        e["proto"] == "icmp"
    })?;
    assert!(second.stop(Signal::SIGINT)?.success());
    assert!(
        net.host.pin_dir().exists(),
        "a reader leaves the installed setup in place"
    );

    fwlog_ok(&net, &["uninstall"])?;
    assert_eq!(net.host.saved_rules()?, before);
    assert!(!net.host.pin_dir().exists());
    for id in links {
        let shown = std::process::Command::new("bpftool")
            .args(["link", "show", "id", &id.to_string()])
            .output()?;
        assert!(!shown.status.success(), "link {id} is gone");
    }
    Ok(())
}

#[test]
fn a_restarted_reader_reports_what_was_lost() -> Result<()> {
    let net = TestNet::new()?;
    let _sink = udp_bind(&net.peer, addr(PEER_V4, 7300))?;
    fwlog_ok(
        &net,
        &[
            "install",
            "--ring-size",
            "4K",
            "--events",
            "verdict",
            &net.host_if,
        ],
    )?;
    const SENT: u64 = 300;
    for _ in 0..SENT {
        udp_send(&net.host, addr(PEER_V4, 7300), b"x")?;
    }
    let mut reader = Fwlog::watch(&net.host, &["--events", "verdict"])?;
    let lost = reader.expect_event("the loss while nobody read", |e| e["event_type"] == "lost")?;
    let events = reader.collect_events(Duration::from_millis(500));
    let received = events.iter().filter(|e| e["dest_port"] == 7300).count() as u64;
    let lost = lost["count"].as_u64().context("count")?
        + events
            .iter()
            .filter(|e| e["event_type"] == "lost")
            .filter_map(|e| e["count"].as_u64())
            .sum::<u64>();
    assert!(lost > 0);
    assert_eq!(received + lost, SENT);
    assert!(reader.stop(Signal::SIGINT)?.success());

    // The next reader reports only what no reader did: nothing, with no new traffic (it
    // reported the same loss a second time before).
    let mut again = Fwlog::watch(&net.host, &["--events", "verdict"])?;
    let repeated: Vec<_> = again
        .collect_events(Duration::from_millis(1500))
        .into_iter()
        .filter(|e| e["event_type"] == "lost")
        .collect();
    assert!(repeated.is_empty(), "reported again: {repeated:?}");
    assert!(again.stop(Signal::SIGINT)?.success());
    // New losses while no reader runs are reported, and only they.
    for _ in 0..SENT {
        udp_send(&net.host, addr(PEER_V4, 7300), b"x")?;
    }
    let mut third = Fwlog::watch(&net.host, &["--events", "verdict"])?;
    let events = third.collect_events(Duration::from_millis(1500));
    let new_lost: u64 = events
        .iter()
        .filter(|e| e["event_type"] == "lost")
        .filter_map(|e| e["count"].as_u64())
        .sum();
    let new_received = events.iter().filter(|e| e["dest_port"] == 7300).count() as u64;
    println!("first reader: {received} lines + {lost} lost; with the second's: {new_received} + {new_lost}");
    assert!(new_lost > 0);
    assert_eq!(new_received + new_lost, SENT, "only the new losses");
    assert!(third.stop(Signal::SIGINT)?.success());
    fwlog_ok(&net, &["uninstall"])?;
    Ok(())
}

#[test]
fn enable_writes_a_unit_and_uninstall_removes_it() -> Result<()> {
    let net = TestNet::new()?;
    let dir = std::env::temp_dir().join(format!("fwlog-unit-{}", std::process::id()));
    let unit_dir = format!("--unit-dir={}", dir.display());
    let _cleanup = UninstallOnDrop(&net);
    let said = fwlog_ok(
        &net,
        &[
            "install",
            "--enable",
            &unit_dir,
            "--allow-in",
            "22/tcp",
            &net.host_if,
        ],
    )?;
    let unit = std::fs::read_to_string(dir.join("fwlog.service"))?;
    let exe = fwlog_tests::fwlog_bin().canonicalize()?;
    assert!(
        unit.contains(&format!(
            "ExecStartPre={} install --allow-in 22/tcp {}\n",
            exe.display(),
            net.host_if
        )),
        "{unit}"
    );
    assert!(unit.contains(&format!(
        "ExecStart={} watch --output /var/log/fwlog/fwlog.jsonl\n",
        exe.display()
    )));
    assert!(unit.contains("WantedBy=multi-user.target"));
    if !std::path::Path::new("/run/systemd/system").is_dir() {
        assert!(said.contains("systemd is not running here"), "{said}");
    }
    let removed = fwlog_ok(&net, &["uninstall", &unit_dir])?;
    assert!(
        removed.contains("the systemd unit fwlog.service"),
        "{removed}"
    );
    assert!(!dir.join("fwlog.service").exists());
    let _ = std::fs::remove_dir(&dir);
    Ok(())
}
