//! `fwlog watch --ipfix`: nfdump's collector (nfcapd, UDP) records the same tuples, counts and
//! times as fwlog's own flow lines, for IPv4 and IPv6, TCP and UDP; libfixbuf's ipfixDump
//! decodes fwlog's enterprise elements from a TCP stream (named by the RFC 5610 records fwlog
//! sends); a dead or late collector never stops `watch`. Collectors run in fwlog's namespace,
//! on its loopback.

use std::{
    io::Read as _,
    net::{SocketAddr, TcpListener, UdpSocket},
    process::Command,
    time::Duration,
};

use anyhow::{bail, ensure, Context as _, Result};
use fwlog_tests::{
    addr,
    daemon::{wait_for, Daemon, TempDir},
    fwlog::{is_flow_to, number},
    netns::{PEER_V4, PEER_V6},
    traffic::{tcp_listen, tcp_transfer, udp_bind},
    Fwlog, NetNsGuard, TestNet,
};
use nix::sys::signal::Signal;
use serde_json::Value;

const COLLECTOR: &str = "127.0.0.1:4739";

/// nfcapd receiving on the namespace's loopback, writing into `dir`.
fn nfcapd(net: &TestNet, dir: &TempDir) -> Result<Daemon> {
    let flows = dir.path().join("flows");
    std::fs::create_dir_all(&flows)?;
    let daemon = Daemon::start(
        &net.host,
        "nfcapd",
        &[
            "-w",
            &flows.to_string_lossy(),
            "-b",
            "127.0.0.1",
            "-p",
            "4739",
            "-t",
            "3600",
        ],
        &dir.path().join("nfcapd.log"),
    )?;
    // nfcapd binds within a few milliseconds; wait until the port is taken.
    wait_for("nfcapd listening", Duration::from_secs(5), || {
        net.host
            .enter(|| UdpSocket::bind(COLLECTOR).is_err())
            .ok()
            .filter(|taken| *taken)
    })?;
    Ok(daemon)
}

/// `nfdump -o json` of what nfcapd stored (times in UTC, as fwlog writes them).
fn nfdump(dir: &TempDir) -> Result<Vec<Value>> {
    let output = Command::new("nfdump")
        .env("TZ", "UTC")
        .args([
            "-R",
            &dir.path().join("flows").to_string_lossy(),
            "-o",
            "json",
        ])
        .output()
        .context("running nfdump (Debian's nfdump package; `cargo xtask setup` installs it)")?;
    ensure!(
        output.status.success(),
        "nfdump failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout);
    // nfdump 1.7 writes `[ No matching flows ]` when there are none.
    if text.trim().is_empty() || text.contains("No matching flows") {
        return Ok(Vec::new());
    }
    serde_json::from_str(&text).with_context(|| format!("nfdump's JSON: {text}"))
}

/// One UDP request and its answer between `from` and a socket bound in `to`.
fn udp_exchange(from: &NetNsGuard, to: &NetNsGuard, server: SocketAddr) -> Result<()> {
    let socket = udp_bind(to, server)?;
    let answer = std::thread::spawn(move || -> Result<()> {
        socket.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut buffer = [0u8; 2048];
        let (n, client) = socket.recv_from(&mut buffer)?;
        socket.send_to(&buffer[..n * 2 / 3], client)?;
        Ok(())
    });
    let bind: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0".parse()?
    } else {
        "[::]:0".parse()?
    };
    let client = udp_bind(from, bind)?;
    client.connect(server)?;
    client.send(&[b'q'; 300])?;
    client.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut buffer = [0u8; 2048];
    client.recv(&mut buffer).context("no answer")?;
    answer
        .join()
        .map_err(|_| anyhow::anyhow!("answer thread panicked"))?
}

/// fwlog's flow line as nfdump shows a flow: addresses, ports, counts, times to the ms.
fn expected_record(line: &Value) -> Value {
    let v6 = line["ip_version"] == 6;
    let (src, dst) = if v6 {
        ("src6_addr", "dst6_addr")
    } else {
        ("src4_addr", "dst4_addr")
    };
    let ms = |time: &Value| time.as_str().map(|t| t[..23].to_string());
    serde_json::json!({
        src: line["src_ip"],
        dst: line["dest_ip"],
        "src_port": line["src_port"],
        "dst_port": line["dest_port"],
        "in_packets": line["flow"]["pkts_toserver"],
        "in_bytes": line["flow"]["bytes_toserver"],
        "out_packets": line["flow"]["pkts_toclient"],
        "out_bytes": line["flow"]["bytes_toclient"],
        "first": ms(&line["flow"]["start"]),
        "last": ms(&line["flow"]["end"]),
    })
}

/// The fields of `record` that `expected` names.
fn same_fields(record: &Value, expected: &Value) -> Value {
    let mut picked = serde_json::Map::new();
    for key in expected.as_object().into_iter().flatten().map(|(k, _)| k) {
        picked.insert(key.clone(), record[key].clone());
    }
    Value::Object(picked)
}

fn proto_number(line: &Value) -> u64 {
    match line["proto"].as_str() {
        Some("tcp") => 6,
        Some("udp") => 17,
        Some("icmp") => 1,
        Some("icmpv6") => 58,
        _ => 0,
    }
}

#[test]
fn nfdump_records_what_the_flow_lines_say() -> Result<()> {
    let net = TestNet::new()?;
    let dir = TempDir::new("nfcapd")?;
    let mut collector = nfcapd(&net, &dir)?;
    let mut fwlog = Fwlog::watch(
        &net.host,
        &[
            &net.host_if,
            "--ipfix",
            &format!("udp://{COLLECTOR}"),
            "--idle-timeout",
            "1",
        ],
    )?;
    for (listen, bytes) in [(addr(PEER_V4, 8080), 3000), (addr(PEER_V6, 8081), 5000)] {
        let listener = tcp_listen(&net.peer, listen)?;
        tcp_transfer(&net.host, listener, listen, bytes)?;
    }
    udp_exchange(&net.host, &net.peer, addr(PEER_V4, 5353))?;
    udp_exchange(&net.host, &net.peer, addr(PEER_V6, 5354))?;
    let mut ours = Vec::new();
    for port in [8080, 8081, 5353, 5354] {
        ours.push(
            fwlog.expect_event(&format!("the flow to port {port}"), |e| is_flow_to(e, port))?,
        );
    }
    fwlog.stop(Signal::SIGINT)?;
    // Every flow line, including the exit's and the neighbour-discovery ones.
    let lines: Vec<Value> = ours
        .iter()
        .cloned()
        .chain(fwlog.collect_events(Duration::from_millis(300)))
        .filter(|e| e["event_type"] == "flow")
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    collector.stop()?;
    let records = nfdump(&dir)?;
    ensure!(
        records.len() == lines.len(),
        "nfdump has {} flows, fwlog wrote {} flow lines:\n{records:#?}\n{lines:#?}\nnfcapd: {}",
        records.len(),
        lines.len(),
        collector.output()
    );
    for line in &ours {
        let expected = expected_record(line);
        let proto = proto_number(line);
        let found = records.iter().find(|record| {
            record["proto"] == proto
                && same_fields(record, &expected)["src_port"] == expected["src_port"]
                && same_fields(record, &expected)["dst_port"] == expected["dst_port"]
        });
        let record = found.with_context(|| format!("no nfdump record for {line}"))?;
        ensure!(
            same_fields(record, &expected) == expected,
            "nfdump: {record:#}\nfwlog: {line}"
        );
        println!("fwlog:  {line}\nnfdump: {record}");
        // RFC 5102 flowEndReason 3 (end of flow) for TCP's FIN, 1 (idle) for UDP; nfdump
        // shows the direction fwlog gave (1: egress, outbound).
        ensure!(record["direction"] == 1, "{record:#}");
    }
    Ok(())
}

#[test]
fn ipfix_dump_decodes_the_enterprise_elements() -> Result<()> {
    let net = TestNet::new()?;
    let dir = TempDir::new("ipfixdump")?;
    let collector: SocketAddr = "127.0.0.1:4740".parse()?;
    let listener = net.host.enter(move || TcpListener::bind(collector))??;
    let stream = std::thread::spawn(move || -> Result<Vec<u8>> {
        let (mut conn, _) = listener.accept()?;
        conn.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut bytes = Vec::new();
        conn.read_to_end(&mut bytes)?;
        Ok(bytes)
    });
    let machine_id = std::fs::read_to_string("/etc/machine-id")
        .context("this test names the host by /etc/machine-id (systemd-machine-id-setup)")?;
    let mut fwlog = Fwlog::watch(
        &net.host,
        &[
            &net.host_if,
            "--ipfix",
            &format!("tcp://{collector}"),
            "--ipfix-enterprise",
            "65000",
            "--host-name",
            "edge-9",
            "--host-id",
        ],
    )?;
    let listen = addr(PEER_V4, 8443);
    let peer_listener = tcp_listen(&net.peer, listen)?;
    tcp_transfer(&net.host, peer_listener, listen, 2000)?;
    let line = fwlog.expect_event("the flow to 8443", |e| is_flow_to(e, 8443))?;
    ensure!(line["host"] == "edge-9", "{line}");
    ensure!(line["host_id"] == machine_id.trim(), "{line}");
    fwlog.stop(Signal::SIGINT)?;
    let bytes = stream
        .join()
        .map_err(|_| anyhow::anyhow!("collector thread panicked"))??;
    ensure!(!bytes.is_empty(), "nothing arrived over TCP");
    let file = dir.path().join("stream.ipfix");
    std::fs::write(&file, &bytes)?;
    let output = Command::new("ipfixDump")
        .args(["--rfc5610", "-i", &file.to_string_lossy()])
        .output()
        .context("running ipfixDump (Debian's libfixbuf-tools; `cargo xtask setup` installs it)")?;
    let dump = String::from_utf8_lossy(&output.stdout);
    ensure!(
        output.status.success(),
        "ipfixDump failed: {}{dump}",
        String::from_utf8_lossy(&output.stderr)
    );
    let process = &line["process"];
    let text = |value: &Value| value.as_str().unwrap_or("?").to_string();
    let string = |name: &str, value: &str| format!("{name} : (len: {}) {value}", value.len());
    let expect = [
        "(65000/1)".to_string(),
        format!("fwlogProcessId : {}", number(&process["pid"])),
        string("fwlogProcessName", &text(&process["comm"])),
        format!("fwlogProcessUserId : {}", number(&process["uid"])),
        string("fwlogCommunityId", &text(&line["community_id"])),
        string("fwlogObserverHostName", "edge-9"),
        string("fwlogObserverHostId", machine_id.trim()),
        string("fwlogFirewallAction", "accept"),
        format!("destinationIPv4Address : {PEER_V4}"),
        "destinationTransportPort : 8443".to_string(),
        format!(
            "octetDeltaCount : {}",
            number(&line["flow"]["bytes_toserver"])
        ),
        format!(
            "reverseOctetDeltaCount : {}",
            number(&line["flow"]["bytes_toclient"])
        ),
    ];
    for text in &expect {
        if !dump.contains(text.as_str()) {
            bail!("ipfixDump shows no {text:?}:\n{dump}");
        }
    }
    if let Some(exe) = process["exe"].as_str() {
        let exe = string("fwlogProcessExecutable", exe);
        ensure!(dump.contains(&exe), "ipfixDump shows no {exe:?}:\n{dump}");
    }
    ensure!(
        !dump.contains("_alienInformationElement"),
        "unnamed elements:\n{dump}"
    );
    let decoded: Vec<&str> = dump.lines().filter(|l| l.contains("(65000/")).collect();
    println!("fwlog: {line}\nipfixDump:\n{}", decoded.join("\n"));
    Ok(())
}

#[test]
fn a_dead_collector_costs_the_export_not_the_lines() -> Result<()> {
    let net = TestNet::new()?;
    // Nothing listens there: every connection attempt is refused.
    let mut fwlog = Fwlog::watch(
        &net.host,
        &[&net.host_if, "--ipfix", "tcp://127.0.0.1:4741"],
    )?;
    for port in [9001, 9002] {
        let listen = addr(PEER_V4, port);
        let listener = tcp_listen(&net.peer, listen)?;
        tcp_transfer(&net.host, listener, listen, 1000)?;
        fwlog.expect_event(&format!("the flow to {port}, written"), |e| {
            is_flow_to(e, port)
        })?;
    }
    let status = fwlog.stop(Signal::SIGINT)?;
    ensure!(
        status.success(),
        "fwlog exited {status}: {}",
        fwlog.stderr_text()
    );
    let stderr = fwlog.stderr_text();
    ensure!(
        stderr.contains("IPFIX: cannot reach tcp://127.0.0.1:4741"),
        "{stderr}"
    );
    let lost: u64 = fwlog
        .collect_events(Duration::from_millis(300))
        .iter()
        .filter(|e| e["event_type"] == "lost" && e["where"] == "export")
        .map(|e| number(&e["count"]))
        .sum();
    ensure!(lost >= 2, "lost to export: {lost}; fwlog said {stderr}");
    ensure!(
        stderr.contains(&format!("{lost} flows lost to IPFIX export")),
        "{stderr}"
    );
    Ok(())
}

#[test]
fn a_late_udp_collector_gets_the_templates_again() -> Result<()> {
    let net = TestNet::new()?;
    let dir = TempDir::new("late-nfcapd")?;
    let mut fwlog = Fwlog::watch(
        &net.host,
        &[
            &net.host_if,
            "--ipfix",
            &format!("udp://{COLLECTOR}"),
            "--ipfix-template-refresh",
            "1",
        ],
    )?;
    // The first flow's template goes nowhere: no collector yet.
    let early = addr(PEER_V4, 7001);
    tcp_transfer(&net.host, tcp_listen(&net.peer, early)?, early, 100)?;
    fwlog.expect_event("the early flow", |e| is_flow_to(e, 7001))?;
    let mut collector = nfcapd(&net, &dir)?;
    std::thread::sleep(Duration::from_millis(2500));
    let late = addr(PEER_V4, 7002);
    tcp_transfer(&net.host, tcp_listen(&net.peer, late)?, late, 100)?;
    let line = fwlog.expect_event("the late flow", |e| is_flow_to(e, 7002))?;
    std::thread::sleep(Duration::from_millis(500));
    collector.stop()?;
    fwlog.stop(Signal::SIGINT)?;
    let records = nfdump(&dir)?;
    let expected = expected_record(&line);
    ensure!(
        records
            .iter()
            .any(|record| same_fields(record, &expected) == expected),
        "nfdump did not decode the late flow {line}:\n{records:#?}\nnfcapd: {}",
        collector.output()
    );
    Ok(())
}
