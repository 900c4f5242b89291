//! Flow records under hostile traffic from the peer: raw frames with lying length fields,
//! padding, bad checksums, addresses that are not the host's, floods that would crowd the
//! table, forged resets and long pauses. A flow comes only from what the stack accepted, and
//! what it counts is what the IP headers say.

use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    time::Duration,
};

use anyhow::{Context as _, Result};
use fwlog_tests::{
    addr,
    fwlog::number,
    netns::{HOST_V4, HOST_V6, PEER_V4, PEER_V6},
    scapy,
    traffic::{tcp_listen, udp_bind},
    Fwlog, TestNet,
};
use nix::sys::signal::Signal;
use serde_json::Value;

fn flows_to(events: &[Value], dest_port: u16) -> Vec<&Value> {
    events
        .iter()
        .filter(|e| e["event_type"] == "flow" && e["dest_port"] == dest_port)
        .collect()
}

/// Stops fwlog (SIGINT, so open flows are flushed) and returns every line it printed after
/// the ones already read, and its exit summary's malformed-packet count.
fn stop(fwlog: &mut Fwlog) -> Result<(Vec<Value>, u64)> {
    let status = fwlog.stop(Signal::SIGINT)?;
    assert!(status.success(), "{}", fwlog.stderr_text());
    let events = fwlog.collect_events(Duration::from_millis(300));
    let stderr = fwlog.stderr_text();
    let malformed = stderr
        .lines()
        .find_map(|line| line.strip_suffix(" malformed packets"))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|count| count.parse().ok())
        .with_context(|| format!("no exit summary in {stderr}"))?;
    Ok((events, malformed))
}

/// A Python expression for `count` frames to the host built from `layers` (scapy, with `i`
/// the frame's index), sent on the peer's interface.
fn send(net: &TestNet, count: u32, layers: &str) -> Result<()> {
    let mac = scapy::mac_of(&net.host, &net.host_if)?;
    let script = format!(
        "frames = [Ether(dst={mac:?})/{layers} for i in range({count})]\nsendp(frames, iface=IFACE)"
    );
    scapy::run(&net.peer, &net.peer_if, &script)?;
    Ok(())
}

/// [`send`] for frames whose IP packet is given as a Python bytes expression.
fn send_ip_bytes(net: &TestNet, count: u32, bytes: &str) -> Result<()> {
    let mac = scapy::mac_of(&net.host, &net.host_if)?;
    let script = format!(
        "frames = [Ether(dst={mac:?}, type=0x800)/Raw({bytes}) for i in range({count})]\nsendp(frames, iface=IFACE)"
    );
    scapy::run(&net.peer, &net.peer_if, &script)?;
    Ok(())
}

#[test]
fn ethernet_padding_is_not_counted() -> Result<()> {
    let net = TestNet::new()?;
    let mut fwlog = Fwlog::watch(&net.host, &["--allow-in", "7000/udp", &net.host_if])?;
    // A 28-byte datagram in a 60-byte frame, as a real NIC pads it: 18 bytes after the IP
    // packet's end, which the stack trims.
    send_ip_bytes(
        &net,
        1,
        &format!(
            "raw(IP(src={PEER_V4:?}, dst={HOST_V4:?})/UDP(sport=40000, dport=7000)) + b'\\0' * 18"
        ),
    )?;
    fwlog.expect_event("the accept", |e| {
        e["event_type"] == "verdict" && e["dest_port"] == 7000
    })?;
    let (events, _) = stop(&mut fwlog)?;
    let flow = flows_to(&events, 7000);
    let flow = flow.first().context("no flow to 7000")?;
    assert_eq!(number(&flow["flow"]["pkts_toserver"]), 1);
    assert_eq!(
        number(&flow["flow"]["bytes_toserver"]),
        28,
        "the IP length, not the padded frame"
    );
    Ok(())
}

#[test]
fn lying_ip_lengths_are_malformed_once_and_never_flows() -> Result<()> {
    let net = TestNet::new()?;
    let mut fwlog = Fwlog::watch(&net.host, &["--events", "flow", &net.host_if])?;
    const EACH: u32 = 10;
    let ip = format!("IP(src={PEER_V4:?}, dst={HOST_V4:?}");
    // The IP packet ends after its header; the UDP header that follows is not part of it.
    send(
        &net,
        EACH,
        &format!("{ip}, len=20)/UDP(sport=41000+i, dport=7001)"),
    )?;
    // The header claims more bytes than the frame has.
    send(
        &net,
        EACH,
        &format!("{ip}, len=1000)/UDP(sport=42000+i, dport=7002)"),
    )?;
    // The total length is shorter than the header itself.
    send(
        &net,
        EACH,
        &format!("{ip}, len=10)/UDP(sport=43000+i, dport=7003)"),
    )?;
    // A TCP SYN whose packet ends 10 bytes into the TCP header: ports, but no flags.
    send(
        &net,
        EACH,
        &format!("{ip}, len=30)/TCP(sport=44000+i, dport=7004, flags='S')"),
    )?;
    // An ordinary datagram afterwards, so nothing waits on its CPU to enter the table.
    let sink = udp_bind(&net.host, addr(HOST_V4, 7005))?;
    udp_bind(&net.peer, addr(PEER_V4, 0))?.send_to(b"ok", addr(HOST_V4, 7005))?;
    let _ = sink;
    std::thread::sleep(Duration::from_millis(300));
    let (events, malformed) = stop(&mut fwlog)?;
    for port in 7001..=7004 {
        assert!(
            flows_to(&events, port).is_empty(),
            "packets the stack drops are not flows (port {port}): {events:#?}"
        );
    }
    assert_eq!(malformed, 4 * u64::from(EACH), "each malformed packet once");
    Ok(())
}

#[test]
fn datagrams_with_a_bad_checksum_neither_become_flows_nor_push_real_ones_out() -> Result<()> {
    let net = TestNet::new()?;
    let listener = tcp_listen(&net.peer, addr(PEER_V4, 8200))?;
    let mut fwlog = Fwlog::watch(
        &net.host,
        &["--flow-table-size", "128", "--events", "flow", &net.host_if],
    )?;
    // A real connection, open while the flood goes on.
    let mut stream = net
        .host
        .enter(|| TcpStream::connect(addr(PEER_V4, 8200)))??;
    let (mut server, _) = listener.accept()?;
    stream.write_all(b"before")?;
    // 2 000 datagrams from spoofed sources, each its own 5-tuple, checksum wrong: the stack
    // drops every one (conntrack calls them invalid, UDP discards them).
    send(
        &net,
        2000,
        &format!(
            "IP(src='198.51.%d.%d' % (i // 250, i % 250 + 1), dst={HOST_V4:?})/UDP(sport=1024+i, dport=7010, chksum=0xdead)"
        ),
    )?;
    stream.write_all(b"after")?;
    stream.shutdown(std::net::Shutdown::Write)?;
    let mut got = Vec::new();
    server.set_read_timeout(Some(Duration::from_secs(5)))?;
    server.read_to_end(&mut got)?;
    assert_eq!(got, b"beforeafter");
    drop(server);
    let record = fwlog.expect_event("the real connection's end", |e| {
        e["event_type"] == "flow" && e["dest_port"] == 8200
    })?;
    assert_eq!(record["flow"]["reason"], "fin", "not pushed out: {record}");
    let (events, _) = stop(&mut fwlog)?;
    assert!(
        flows_to(&events, 7010).is_empty(),
        "datagrams the stack dropped are not flows"
    );
    assert!(
        !events.iter().any(|e| e["event_type"] == "flows_evicted"),
        "nothing was evicted: {events:#?}"
    );
    Ok(())
}

#[test]
fn packets_for_addresses_that_are_not_the_hosts_are_not_flows() -> Result<()> {
    let net = TestNet::new()?;
    let mut fwlog = Fwlog::watch(&net.host, &["--events", "flow", &net.host_if])?;
    // The host does not forward: the stack drops all of these after routing.
    send(
        &net,
        50,
        "IP(src='198.51.100.%d' % (i + 1), dst='203.0.113.%d' % (i + 1))/UDP(sport=5000+i, dport=7020)",
    )?;
    send(
        &net,
        50,
        "IPv6(src='2001:db8:1::%x' % (i + 1), dst='2001:db8:2::%x' % (i + 1))/UDP(sport=5000+i, dport=7021)",
    )?;
    let sink = udp_bind(&net.host, addr(HOST_V6, 7022))?;
    udp_bind(&net.peer, addr(PEER_V6, 0))?.send_to(b"ok", addr(HOST_V6, 7022))?;
    let _ = sink;
    std::thread::sleep(Duration::from_millis(300));
    let (events, _) = stop(&mut fwlog)?;
    for port in [7020, 7021] {
        assert!(
            flows_to(&events, port).is_empty(),
            "no flow between other hosts (port {port}): {events:#?}"
        );
    }
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

/// `count` outbound UDP flows (source ports from `first_port`), all sent from CPU 0.
fn flows_from_one_cpu(net: &TestNet, first_port: u16, count: u16) -> Result<()> {
    net.host.enter(move || -> Result<()> {
        let mut cpu = nix::sched::CpuSet::new();
        cpu.set(0)?;
        nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &cpu)?;
        for port in first_port..first_port + count {
            let socket = std::net::UdpSocket::bind(addr(HOST_V4, port))?;
            socket.send_to(b"x", addr(PEER_V4, 7030))?;
        }
        Ok(())
    })?
}

#[test]
fn the_flow_table_holds_the_size_asked_for_whatever_the_cpus() -> Result<()> {
    let net = TestNet::new()?;
    ipv4_only(&net)?;
    let _sink = udp_bind(&net.peer, addr(PEER_V4, 7030))?;
    let mut fwlog = Fwlog::watch(
        &net.host,
        &[
            "--flow-table-size",
            "1024",
            // Sweeps every 2 s; nothing goes idle during the test.
            "--idle-timeout",
            "8",
            "--stats",
            "1",
            "--events",
            "flow",
            &net.host_if,
        ],
    )?;
    flows_from_one_cpu(&net, 32_000, 900)?;
    let stats = fwlog.expect_event("a sweep that saw the 900 flows", |e| {
        e["event_type"] == "stats" && e["flows_tracked"].as_u64().is_some_and(|n| n >= 900)
    });
    let events = fwlog.collect_events(Duration::from_millis(100));
    assert!(
        !events.iter().any(|e| e["event_type"] == "flows_evicted"),
        "a 1024-flow table holds 900 flows of one CPU: {events:#?}"
    );
    assert_eq!(number(&stats?["flows_tracked"]), 900);
    // Past 90 % of what was asked for, the sweep makes room itself, down to 75 %.
    flows_from_one_cpu(&net, 33_000, 60)?;
    let mut crowded = 0;
    while crowded < 960 - 768 {
        fwlog.expect_event("a flow the crowded sweep ended", |e| {
            e["event_type"] == "flow" && e["flow"]["reason"] == "evicted"
        })?;
        crowded += 1;
    }
    let (events, _) = stop(&mut fwlog)?;
    assert!(
        !events.iter().any(|e| e["event_type"] == "flows_evicted"),
        "the kernel never had to evict: {events:#?}"
    );
    let exited = events
        .iter()
        .filter(|e| e["event_type"] == "flow" && e["flow"]["reason"] == "exit")
        .count();
    assert_eq!(exited, 768, "the rest is flushed at exit");
    Ok(())
}
