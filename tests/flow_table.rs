//! The flow table's own life: evictions when it is full, the flush at exit, how inbound flows
//! enter it (after their verdict), and the flow filter's counts.

use std::{net::TcpStream, time::Duration};

use anyhow::{Context as _, Result};
use fwlog_tests::{
    addr,
    fwlog::{is_flow_to, number},
    kernel_maps::{clear_filter, filter_total, flow_filter_of},
    netns::{HOST_V4, PEER_V4},
    traffic::{tcp_listen, tcp_transfer, udp_bind},
    Fwlog, TestNet,
};
use nix::sys::signal::Signal;
use serde_json::Value;

#[test]
fn a_small_flow_table_counts_and_reports_evictions() -> Result<()> {
    let net = TestNet::new()?;
    let sink = udp_bind(&net.peer, addr(PEER_V4, 5700))?;
    // Only the test's own flows: no IPv6 neighbour discovery or MLD flows on the link, whose
    // evictions would be counted too.
    ipv4_only(&net)?;
    // A 16-flow table has room for 128 more per CPU (what each CPU may hold back from a
    // common LRU, see `flow_table_entries`): 600 flows are more than it holds.
    let mut fwlog = Fwlog::watch(
        &net.host,
        &[
            "--flow-table-size",
            "16",
            // Sweeps every 2 s, which notice the evictions (flows that go idle meanwhile are
            // reported as such, which the count below allows for).
            "--idle-timeout",
            "8",
            "--events",
            "flow",
            &net.host_if,
        ],
    )?;
    const FLOWS: u64 = 600;
    // Each flow its own source port (ephemeral ports could repeat and merge two flows).
    for i in 0..FLOWS as u16 {
        let socket = udp_bind(&net.host, addr(HOST_V4, 30_000 + i))?;
        socket.send_to(b"x", addr(PEER_V4, 5700))?;
    }
    // The sink is there so that no port-unreachable comes back; it need not read them all
    // (600 datagrams overflow its buffer).
    let _ = sink;
    let held = 16
        + 128
            * nix::unistd::sysconf(nix::unistd::SysconfVar::_NPROCESSORS_CONF)?.unwrap_or(1) as u64;
    // Each sweep that finds new evictions recounts the filter from the table. On a busy machine
    // the sends can outlast a sweep (2 s), so the first recount may come before the last flows
    // went in: the next sweep's count of evictions is then followed by another recount.
    let pid = fwlog.pid().context("running")?;
    let mut eviction_lines = Vec::new();
    loop {
        eviction_lines.push(fwlog.expect_event("the sweep's eviction count", |e| {
            e["event_type"] == "flows_evicted"
        })?);
        let total = filter_total(&flow_filter_of(pid)?)?;
        if total <= held {
            break;
        }
        assert!(
            eviction_lines.len() < 5,
            "the filter was not recounted from the table after the evictions: {total} flows \
             counted after {} sweeps",
            eviction_lines.len()
        );
    }
    assert!(
        fwlog.stop(Signal::SIGINT)?.success(),
        "{}",
        fwlog.stderr_text()
    );
    let events = fwlog.collect_events(Duration::from_millis(300));
    let reported = events.iter().filter(|e| is_flow_to(e, 5700)).count() as u64;
    let evicted: u64 = eviction_lines
        .iter()
        .map(|e| number(&e["count"]))
        .sum::<u64>()
        + events
            .iter()
            .filter(|e| e["event_type"] == "flows_evicted")
            .map(|e| number(&e["count"]))
            .sum::<u64>();
    assert!(
        evicted > 0,
        "a 16-flow table cannot hold {FLOWS} flows: {events:#?}"
    );
    assert_eq!(
        reported + evicted,
        FLOWS,
        "every flow is reported or counted as evicted"
    );
    assert!(
        events.iter().all(|e| e["event_type"] != "verdict"),
        "--events flow prints no verdicts"
    );
    Ok(())
}

#[test]
fn open_flows_are_flushed_at_exit_and_tc_is_detached() -> Result<()> {
    let net = TestNet::new()?;
    let listener = tcp_listen(&net.peer, addr(PEER_V4, 8090))?;
    let mut fwlog = Fwlog::watch(&net.host, &[&net.host_if])?;
    let pid = fwlog.pid().context("running")?;
    let links = tcx_links(pid.as_raw())?;
    // Kernels without TCX (before 6.6) get netlink filters instead (tests/tc_netlink.rs).
    let filters = fwlog_tests::tc::fwlog_filters(&net.host, &net.host_if)?;
    assert_eq!(
        links.len() + filters.len(),
        2,
        "ingress and egress of one interface"
    );
    let _open = net
        .host
        .enter(|| TcpStream::connect(addr(PEER_V4, 8090)))??;
    let _accepted = listener.accept()?;
    std::thread::sleep(Duration::from_millis(200));
    assert!(fwlog.stop(Signal::SIGINT)?.success());
    let record = fwlog.expect_event("the open flow, flushed", |e| is_flow_to(e, 8090))?;
    assert_eq!(record["flow"]["reason"], "exit");
    for link in links {
        let shown = std::process::Command::new("bpftool")
            .args(["link", "show", "id", &link.to_string()])
            .output()?;
        assert!(
            !shown.status.success(),
            "tcx link {link} is gone after exit"
        );
    }
    assert_eq!(fwlog_tests::tc::fwlog_filters(&net.host, &net.host_if)?, []);
    Ok(())
}

/// The ids of the TCX links a process holds (from /proc/PID/fdinfo).
fn tcx_links(pid: i32) -> Result<Vec<u32>> {
    let mut links = Vec::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fdinfo"))? {
        let info = std::fs::read_to_string(entry?.path()).unwrap_or_default();
        if info
            .lines()
            .any(|l| l.starts_with("link_type:") && l.contains("tcx"))
        {
            if let Some(id) = info.lines().find_map(|l| l.strip_prefix("link_id:")) {
                links.push(id.trim().parse()?);
            }
        }
    }
    Ok(links)
}

#[test]
fn a_refused_attempt_is_a_verdict_not_a_flow() -> Result<()> {
    let net = TestNet::new()?;
    let mut fwlog = Fwlog::watch(&net.host, &[&net.host_if])?;
    let attempt = net
        .peer
        .enter(|| TcpStream::connect_timeout(&addr(HOST_V4, 22), Duration::from_millis(800)))?;
    assert!(attempt.is_err(), "dropped");
    fwlog.expect_event("the drop", |e| {
        e["event_type"] == "verdict" && e["dest_port"] == 22
    })?;
    assert!(fwlog.stop(nix::sys::signal::Signal::SIGINT)?.success());
    let events = fwlog.collect_events(Duration::from_millis(300));
    assert!(
        !events.iter().any(|e| is_flow_to(e, 22)),
        "a refused attempt keeps no flow (a spoofed flood cannot push real flows out): {events:#?}"
    );
    Ok(())
}

#[test]
fn an_accepted_inbound_connection_is_one_flow_that_starts_with_its_verdict() -> Result<()> {
    let net = TestNet::new()?;
    let listener = tcp_listen(&net.host, addr(HOST_V4, 8090))?;
    let mut fwlog = Fwlog::watch(&net.host, &["--allow-in", "8090/tcp", &net.host_if])?;
    const PAYLOAD: u64 = 100_000;
    tcp_transfer(&net.peer, listener, addr(HOST_V4, 8090), PAYLOAD as usize)?;
    let verdict = fwlog.expect_event("the accept", |e| {
        e["event_type"] == "verdict" && e["dest_port"] == 8090
    })?;
    assert_eq!(verdict["action"], "accept");
    let record = fwlog.expect_event("the flow's end", |e| is_flow_to(e, 8090))?;
    assert_eq!(record["flow"]["reason"], "fin");
    assert_eq!(record["direction"], "inbound");
    assert_eq!(record["src_ip"], PEER_V4);
    assert_eq!(record["action"], "accept");
    assert_eq!(
        record["flow"]["start"], verdict["timestamp"],
        "the verdict is stamped with the time tc ingress saw the flow's first packet"
    );
    let (pkts, bytes) = (
        number(&record["flow"]["pkts_toserver"]),
        number(&record["flow"]["bytes_toserver"]),
    );
    assert!(
        bytes >= PAYLOAD + 40 * pkts && bytes <= PAYLOAD + 80 * pkts,
        "the SYN and every segment after it: {pkts} packets, {bytes} bytes"
    );
    Ok(())
}

#[test]
fn an_inbound_flow_a_users_own_rule_accepts_is_tracked_once_answered() -> Result<()> {
    let net = TestNet::new()?;
    let server = udp_bind(&net.host, addr(HOST_V4, 9100))?;
    let mut fwlog = Fwlog::watch(&net.host, &[&net.host_if])?;
    // Accepted before fwlog's jump: no verdict program sees these datagrams, so the flow tc
    // ingress proposed waits until the host answers it, which shows the stack took it.
    let port = "9100";
    let rule = [
        "-I", "INPUT", "1", "-p", "udp", "--dport", port, "-j", "ACCEPT",
    ];
    net.host.output("iptables", &rule)?;
    let client = udp_bind(&net.peer, addr(PEER_V4, 0))?;
    client.set_read_timeout(Some(Duration::from_secs(2)))?;
    server.set_read_timeout(Some(Duration::from_secs(2)))?;
    const DATAGRAMS: u64 = 3;
    for _ in 0..DATAGRAMS {
        client.send_to(b"hello", addr(HOST_V4, 9100))?;
        let mut buffer = [0u8; 16];
        let (n, from) = server
            .recv_from(&mut buffer)
            .context("the user's rule let the datagram in")?;
        server.send_to(&buffer[..n], from)?;
        client.recv(&mut buffer).context("the answer came back")?;
    }
    assert!(fwlog.stop(Signal::SIGINT)?.success());
    let events = fwlog.collect_events(Duration::from_millis(300));
    assert!(
        !events
            .iter()
            .any(|e| e["event_type"] == "verdict" && e["dest_port"] == 9100),
        "fwlog's chains never saw the flow: {events:#?}"
    );
    let records: Vec<&Value> = events.iter().filter(|e| is_flow_to(e, 9100)).collect();
    assert_eq!(records.len(), 1, "one flow: {events:#?}");
    let record = records[0];
    assert_eq!(record["flow"]["reason"], "exit");
    assert_eq!(record["direction"], "inbound");
    assert_eq!(record["src_ip"], PEER_V4);
    assert_eq!(number(&record["flow"]["pkts_toserver"]), DATAGRAMS);
    assert_eq!(
        number(&record["flow"]["bytes_toserver"]),
        DATAGRAMS * (20 + 8 + 5)
    );
    assert_eq!(number(&record["flow"]["pkts_toclient"]), DATAGRAMS);
    Ok(())
}

/// No IPv6 on the test link: neighbour discovery and MLD would add flows of their own.
fn ipv4_only(net: &TestNet) -> Result<()> {
    for (netns, interface) in [(&net.host, &net.host_if), (&net.peer, &net.peer_if)] {
        let key = format!("net.ipv6.conf.{interface}.disable_ipv6=1");
        netns.output("sysctl", &["-q", "-w", &key])?;
    }
    Ok(())
}

#[test]
fn the_flow_filter_counts_tracked_flows_and_forgets_swept_ones() -> Result<()> {
    let net = TestNet::new()?;
    ipv4_only(&net)?;
    let _sink = udp_bind(&net.peer, addr(PEER_V4, 5800))?;
    let mut fwlog = Fwlog::watch(
        &net.host,
        &["--idle-timeout", "2", "--events", "flow", &net.host_if],
    )?;
    let filter = flow_filter_of(fwlog.pid().context("running")?)?;
    assert_eq!(filter_total(&filter)?, 0, "nothing tracked yet");
    const FLOWS: u16 = 20;
    for i in 0..FLOWS {
        let socket = udp_bind(&net.host, addr(HOST_V4, 31_000 + i))?;
        socket.send_to(b"x", addr(PEER_V4, 5800))?;
    }
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        filter_total(&filter)?,
        u64::from(FLOWS),
        "each tracked flow counted once"
    );
    for _ in 0..FLOWS {
        fwlog.expect_event("an idle flow", |e| {
            is_flow_to(e, 5800) && e["flow"]["reason"] == "idle"
        })?;
    }
    assert_eq!(
        filter_total(&filter)?,
        0,
        "the collector counted out every flow it swept"
    );
    Ok(())
}

#[test]
fn a_flow_the_filter_lost_count_of_is_still_counted_whole() -> Result<()> {
    let net = TestNet::new()?;
    ipv4_only(&net)?;
    let server = udp_bind(&net.peer, addr(PEER_V4, 5900))?;
    let mut fwlog = Fwlog::watch(&net.host, &["--events", "flow", &net.host_if])?;
    let mut filter = flow_filter_of(fwlog.pid().context("running")?)?;
    let client = udp_bind(&net.host, addr(HOST_V4, 0))?;
    client.set_read_timeout(Some(Duration::from_secs(2)))?;
    server.set_read_timeout(Some(Duration::from_secs(2)))?;
    const ROUNDS: u64 = 3;
    let mut buffer = [0u8; 16];
    for _ in 0..ROUNDS {
        // Lost before the outbound packet (tc egress) and again before the answer (tc
        // ingress): each must find the flow through its insert and count to it.
        clear_filter(&mut filter)?;
        client.send_to(b"ping", addr(PEER_V4, 5900))?;
        let (_, client_addr) = server.recv_from(&mut buffer)?;
        std::thread::sleep(Duration::from_millis(50));
        clear_filter(&mut filter)?;
        server.send_to(b"pong!", client_addr)?;
        client.recv(&mut buffer).context("the answer came back")?;
    }
    assert!(fwlog.stop(Signal::SIGINT)?.success());
    let events = fwlog.collect_events(Duration::from_millis(300));
    let records: Vec<&Value> = events.iter().filter(|e| is_flow_to(e, 5900)).collect();
    assert_eq!(records.len(), 1, "one flow: {events:#?}");
    let record = records[0];
    assert_eq!(record["direction"], "outbound");
    assert_eq!(number(&record["flow"]["pkts_toserver"]), ROUNDS);
    assert_eq!(
        number(&record["flow"]["bytes_toserver"]),
        ROUNDS * (20 + 8 + 4)
    );
    assert_eq!(number(&record["flow"]["pkts_toclient"]), ROUNDS);
    assert_eq!(
        number(&record["flow"]["bytes_toclient"]),
        ROUNDS * (20 + 8 + 5)
    );
    Ok(())
}
