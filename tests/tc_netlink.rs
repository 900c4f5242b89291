//! tc programs without TCX links (kernels before 6.6; forced here with FWLOG_TC_ATTACH=netlink so
//! newer kernels test it too): cls_bpf filters on a clsact qdisc that fwlog adds when there is
//! none, removed exactly on exit, after a SIGKILL by the next watch or by uninstall, kept by
//! install; a qdisc and filters that were there before stay.

use std::{net::TcpStream, time::Duration};

use anyhow::{Context as _, Result};
use fwlog_tests::{
    addr,
    fwlog::fwlog_command,
    netns::{HOST_V4, PEER_V4},
    tc::{filters, fwlog_filters, has_clsact, TcFilter, NETLINK_MODE},
    traffic::{ping, read_all, tcp_listen},
    Fwlog, TestNet,
};
use nix::sys::signal::Signal;
use serde_json::Value;

fn watch_netlink(net: &TestNet) -> Result<Fwlog> {
    Fwlog::watch_with_env(&net.host, &[&net.host_if], &[NETLINK_MODE])
}

fn fwlog_ok(net: &TestNet, args: &[&str]) -> Result<String> {
    let output = fwlog_command(&net.host)
        .args(args)
        .env(NETLINK_MODE.0, NETLINK_MODE.1)
        .output()?;
    anyhow::ensure!(
        output.status.success(),
        "fwlog {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8(output.stdout)? + &String::from_utf8(output.stderr)?)
}

fn status_json(net: &TestNet) -> Result<Value> {
    let printed = fwlog_ok(net, &["status", "--json"])?;
    Ok(serde_json::from_str(
        printed.lines().next().context("status printed nothing")?,
    )?)
}

/// fwlog's two filters on the interface: ingress and egress, with the Ethernet programs.
fn assert_attached(net: &TestNet) -> Result<Vec<TcFilter>> {
    let mut attached = fwlog_filters(&net.host, &net.host_if)?;
    attached.sort_by_key(|filter| filter.hook);
    let programs: Vec<(&str, Option<&str>)> = attached
        .iter()
        .map(|filter| (filter.hook, filter.program.as_deref()))
        .collect();
    assert_eq!(
        programs,
        [
            ("egress", Some("flow_egress")),
            ("ingress", Some("flow_ingress"))
        ]
    );
    Ok(attached)
}

fn assert_nothing_left(net: &TestNet) -> Result<()> {
    assert_eq!(fwlog_filters(&net.host, &net.host_if)?, []);
    assert!(
        !has_clsact(&net.host, &net.host_if)?,
        "the clsact qdisc fwlog added is gone"
    );
    assert!(!net.host.pin_dir().exists(), "pins and records removed");
    Ok(())
}

/// A TCP connection from host to peer that sends `bytes` and closes both ways.
fn connect_and_close(net: &TestNet, port: u16, bytes: usize) -> Result<()> {
    let listener = tcp_listen(&net.peer, addr(PEER_V4, port))?;
    let mut stream = net
        .host
        .enter(move || TcpStream::connect(addr(PEER_V4, port)))??;
    let (mut accepted, _) = listener.accept()?;
    std::io::Write::write_all(&mut stream, &vec![7u8; bytes])?;
    stream.shutdown(std::net::Shutdown::Write)?;
    read_all(&mut accepted, Duration::from_secs(5))?;
    drop(accepted);
    read_all(&mut stream, Duration::from_secs(5))?;
    Ok(())
}

#[test]
fn netlink_filters_count_flows_and_go_with_the_session() -> Result<()> {
    let net = TestNet::new()?;
    assert!(!has_clsact(&net.host, &net.host_if)?);
    let mut fwlog = watch_netlink(&net)?;
    let attached = assert_attached(&net)?;
    assert!(has_clsact(&net.host, &net.host_if)?, "fwlog added clsact");
    let status = status_json(&net)?;
    assert_eq!(status["mode"], "session");
    assert_eq!(status["tc_attach"]["mode"], "netlink", "{status}");
    let recorded = status["tc_attach"]["filters"]
        .as_array()
        .context("recorded filters")?;
    assert_eq!(recorded.len(), 2, "{status}");
    for filter in recorded {
        assert_eq!(filter["attached"], true, "{status}");
        let listed = attached.iter().find(|f| f.hook == filter["hook"]);
        let listed = listed.context("a recorded filter tc lists")?;
        assert_eq!(filter["priority"].as_u64(), Some(listed.priority));
        assert_eq!(
            format!("{:#x}", filter["handle"].as_u64().unwrap_or(0)),
            listed.handle
        );
    }

    connect_and_close(&net, 8190, 3000)?;
    let flow = fwlog.expect_event("the flow, counted by the netlink filters", |e| {
        e["event_type"] == "flow" && e["dest_port"] == 8190
    })?;
    assert_eq!(flow["flow"]["reason"], "fin");
    assert!(flow["flow"]["bytes_toserver"].as_u64().unwrap_or(0) > 3000);
    assert!(flow["flow"]["pkts_toclient"].as_u64().unwrap_or(0) >= 2);

    assert!(fwlog.stop(Signal::SIGINT)?.success());
    assert_nothing_left(&net)
}

#[test]
fn a_clsact_qdisc_that_was_there_stays_with_its_filters() -> Result<()> {
    let net = TestNet::new()?;
    net.host
        .output("tc", &["qdisc", "add", "dev", &net.host_if, "clsact"])?;
    // Someone else's classifier: classic BPF that matches nothing (`ret 0`).
    net.host.output(
        "tc",
        &[
            "filter",
            "add",
            "dev",
            &net.host_if,
            "ingress",
            "prio",
            "7",
            "bpf",
            "bytecode",
            "1,6 0 0 0,",
        ],
    )?;
    let before = filters(&net.host, &net.host_if)?;
    assert_eq!(before.len(), 1);

    let mut fwlog = watch_netlink(&net)?;
    assert_attached(&net)?;
    assert_eq!(filters(&net.host, &net.host_if)?.len(), 3);
    assert!(fwlog.stop(Signal::SIGINT)?.success());
    assert_eq!(
        filters(&net.host, &net.host_if)?,
        before,
        "only fwlog's went"
    );
    assert!(
        has_clsact(&net.host, &net.host_if)?,
        "the user's qdisc stays"
    );

    // install and uninstall leave them too.
    fwlog_ok(&net, &["install", &net.host_if])?;
    assert_attached(&net)?;
    fwlog_ok(&net, &["uninstall"])?;
    assert_eq!(filters(&net.host, &net.host_if)?, before);
    assert!(has_clsact(&net.host, &net.host_if)?);
    Ok(())
}

#[test]
fn after_sigkill_the_next_watch_and_uninstall_remove_the_filters() -> Result<()> {
    let net = TestNet::new()?;
    let before = net.host.saved_rules()?;
    let mut fwlog = watch_netlink(&net)?;
    fwlog.stop(Signal::SIGKILL)?;
    // Nothing takes netlink filters away with the process.
    assert_attached(&net)?;

    let mut next = watch_netlink(&net)?;
    assert!(
        next.stderr_text()
            .contains("replaced the iptables rules an earlier fwlog left"),
        "{}",
        next.stderr_text()
    );
    assert_attached(&net)?;
    next.stop(Signal::SIGKILL)?;
    assert_attached(&net)?;

    let removed = fwlog_ok(&net, &["uninstall"])?;
    assert!(removed.contains("fwlog: removed "), "{removed}");
    assert_nothing_left(&net)?;
    assert_eq!(net.host.saved_rules()?, before);
    Ok(())
}

#[test]
fn install_keeps_netlink_filters_for_readers_and_uninstall_removes_them() -> Result<()> {
    let net = TestNet::new()?;
    fwlog_ok(&net, &["install", &net.host_if])?;
    assert_attached(&net)?;
    let status = status_json(&net)?;
    assert_eq!(status["mode"], "installed");
    assert_eq!(status["tc_attach"]["mode"], "netlink", "{status}");
    let pins: Vec<&str> = status["pins"]
        .as_array()
        .context("pins")?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        !pins.iter().any(|pin| pin.starts_with("link_flow_")),
        "no tc link to pin: {pins:?}"
    );

    // The filters keep counting with no reader: an outbound ping is a flow in the table.
    assert!(ping(&net.host, PEER_V4)?, "outbound accepted");
    let counted = status_json(&net)?["counters"]["flows_created"]
        .as_u64()
        .unwrap_or(0);
    assert!(counted >= 1, "flows created with no reader: {counted}");
    let mut reader = Fwlog::watch(&net.host, &[])?;
    reader.expect_event("the ping's verdict", |e| {
        e["event_type"] == "verdict" && e["dest_ip"] == PEER_V4
    })?;
    assert!(reader.stop(Signal::SIGINT)?.success());
    assert_attached(&net)?;

    fwlog_ok(&net, &["uninstall"])?;
    assert_nothing_left(&net)?;
    assert!(ping(&net.peer, HOST_V4)?, "the firewall went too");
    Ok(())
}

#[test]
fn an_ingress_qdisc_is_refused_and_nothing_is_left() -> Result<()> {
    let net = TestNet::new()?;
    let before = net.host.saved_rules()?;
    net.host
        .output("tc", &["qdisc", "add", "dev", &net.host_if, "ingress"])?;
    let output = fwlog_command(&net.host)
        .args(["watch", &net.host_if])
        .env(NETLINK_MODE.0, NETLINK_MODE.1)
        .output()?;
    assert!(!output.status.success());
    let said = String::from_utf8_lossy(&output.stderr);
    assert_eq!(said.lines().count(), 1, "{said}");
    assert!(said.contains("has an `ingress` qdisc"), "{said}");
    assert_eq!(filters(&net.host, &net.host_if)?, []);
    assert_eq!(net.host.saved_rules()?, before);
    assert!(!net.host.pin_dir().exists());
    Ok(())
}
