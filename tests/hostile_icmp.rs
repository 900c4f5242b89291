//! ICMP, fragments and IPv6 extension chains from a hostile peer: ICMP flows keyed the way
//! conntrack keys them, errors counted only to the flow they really quote, a fragmented first
//! packet still a flow, long extension chains parsed to their true transport header.

use std::time::Duration;

use anyhow::{Context as _, Result};
use fwlog_tests::{
    addr,
    fwlog::number,
    netns::{HOST_V4, HOST_V6, PEER_V4, PEER_V6},
    scapy,
    traffic::udp_bind,
    Fwlog, TestNet,
};
use nix::sys::signal::Signal;
use serde_json::Value;

/// Stops fwlog (SIGINT: open flows are flushed); every line it printed, and the exit
/// summary's malformed-packet count.
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

/// Sends the scapy packets of the Python list expression `packets` to the host, in order.
fn send(net: &TestNet, packets: &str) -> Result<()> {
    let mac = scapy::mac_of(&net.host, &net.host_if)?;
    let script =
        format!("frames = [Ether(dst={mac:?})/p for p in {packets}]\nsendp(frames, iface=IFACE)");
    scapy::run(&net.peer, &net.peer_if, &script)?;
    Ok(())
}

fn icmp_flows(events: &[Value]) -> Vec<&Value> {
    events
        .iter()
        .filter(|e| e["event_type"] == "flow" && e["proto"] == "icmp")
        .collect()
}

#[test]
fn icmp_flows_are_keyed_by_type_and_identifier() -> Result<()> {
    let net = TestNet::new()?;
    let mut fwlog = Fwlog::watch(
        &net.host,
        &["--inbound", "accept", "--events", "flow", &net.host_if],
    )?;
    // Queries conntrack makes connections of: echo (8), timestamp (13), address mask (17),
    // each one per (type, identifier). The host answers echo and timestamp requests.
    send(
        &net,
        &format!(
            "[IP(src={PEER_V4:?}, dst={HOST_V4:?})/ICMP(type=t, id=n) for t, n in [(8, 1), (8, 2), (13, 3), (13, 4), (17, 5)]]"
        ),
    )?;
    std::thread::sleep(Duration::from_millis(300));
    let (events, _) = stop(&mut fwlog)?;
    let mut types: Vec<u64> = icmp_flows(&events)
        .iter()
        .map(|e| number(&e["icmp_type"]))
        .collect();
    types.sort_unstable();
    assert_eq!(types, [8, 8, 13, 13, 17], "one flow each: {events:#?}");
    for record in icmp_flows(&events) {
        assert_eq!(record["src_ip"], PEER_V4, "the peer asked: {record}");
        if number(&record["icmp_type"]) != 17 {
            assert_eq!(
                number(&record["flow"]["pkts_toclient"]),
                1,
                "the answer joined its query: {record}"
            );
        }
    }
    Ok(())
}

#[test]
fn icmp_errors_join_only_the_flow_they_quote() -> Result<()> {
    let net = TestNet::new()?;
    let sink = udp_bind(&net.peer, addr(PEER_V4, 7100))?;
    let mut fwlog = Fwlog::watch(&net.host, &["--events", "flow", &net.host_if])?;
    let client = udp_bind(&net.host, addr(HOST_V4, 41_100))?;
    client.send_to(b"hello", addr(PEER_V4, 7100))?;
    let mut buffer = [0u8; 16];
    sink.recv(&mut buffer)?;
    let quoted =
        |inner: &str| format!("IP(src={PEER_V4:?}, dst={HOST_V4:?})/ICMP(type=3, code=3)/{inner}");
    send(
        &net,
        &format!(
            "[{}, {}, {}, {}]",
            // Garbage where the quoted packet should be.
            quoted("Raw(b'not an ip packet at all')"),
            // A quoted IP header cut short.
            quoted("Raw(raw(IP(src=HOST, dst=PEER))[:12])"),
            // A well-formed quote of a flow nobody tracks.
            quoted("IP(src=HOST, dst=PEER)/UDP(sport=41101, dport=7101)"),
            // A quote of the tracked flow the wrong way round: not a packet the host sent.
            quoted("IP(src=PEER, dst=HOST)/UDP(sport=7100, dport=41100)"),
        )
        .replace("HOST", &format!("{HOST_V4:?}"))
        .replace("PEER", &format!("{PEER_V4:?}")),
    )?;
    std::thread::sleep(Duration::from_millis(300));
    let (events, _) = stop(&mut fwlog)?;
    assert!(
        icmp_flows(&events).is_empty(),
        "ICMP errors are never flows of their own: {events:#?}"
    );
    let record = events
        .iter()
        .find(|e| e["event_type"] == "flow" && e["dest_port"] == 7100)
        .with_context(|| format!("no flow to 7100: {events:#?}"))?;
    assert_eq!(number(&record["flow"]["pkts_toclient"]), 0, "{record}");
    assert!(record["flow"].get("icmp_error_type").is_none(), "{record}");
    Ok(())
}

#[test]
fn a_fragmented_first_packet_still_makes_its_flow() -> Result<()> {
    let net = TestNet::new()?;
    let _v4 = udp_bind(&net.host, addr(HOST_V4, 7200))?;
    let _v6 = udp_bind(&net.host, addr(HOST_V6, 7201))?;
    let _listener = fwlog_tests::traffic::tcp_listen(&net.host, addr(HOST_V4, 7202))?;
    let mut fwlog = Fwlog::watch(
        &net.host,
        &[
            "--allow-in",
            "7200/udp",
            "--allow-in",
            "7201/udp",
            "--allow-in",
            "7202/tcp",
            "--events",
            "flow",
            &net.host_if,
        ],
    )?;
    // 3008 bytes of UDP in 1000-byte fragments: four IPv4 fragments, four IPv6 ones.
    send(
        &net,
        &format!(
            "fragment(IP(src={PEER_V4:?}, dst={HOST_V4:?})/UDP(sport=41200, dport=7200)/Raw(b'x' * 3000), fragsize=1000) + fragment6(IPv6(src={PEER_V6:?}, dst={HOST_V6:?})/IPv6ExtHdrFragment()/UDP(sport=41201, dport=7201)/Raw(b'y' * 3000), 1100)"
        ),
    )?;
    // A SYN in 8-byte fragments (RFC 1858): the first carries the ports but not the flags.
    // The host answers; the peer's own stack, which sent no SYN, resets the connection.
    send(
        &net,
        &format!(
            "fragment(IP(src={PEER_V4:?}, dst={HOST_V4:?})/TCP(sport=41202, dport=7202, flags='S', seq=1000), fragsize=8)"
        ),
    )?;
    let syn = fwlog.expect_event("the fragmented SYN's flow", |e| {
        e["event_type"] == "flow" && e["dest_port"] == 7202
    })?;
    assert_eq!(syn["src_port"], 41202, "{syn}");
    assert_eq!(syn["flow"]["reason"], "rst", "{syn}");
    std::thread::sleep(Duration::from_millis(300));
    let (events, _) = stop(&mut fwlog)?;
    for (port, header) in [(7200, 20), (7201, 48)] {
        let record = events
            .iter()
            .find(|e| e["event_type"] == "flow" && e["dest_port"] == port)
            .with_context(|| format!("no flow to {port}: {events:#?}"))?;
        let pkts = number(&record["flow"]["pkts_toserver"]);
        assert!(pkts >= 3, "every fragment counted: {record}");
        assert_eq!(
            number(&record["flow"]["bytes_toserver"]),
            pkts * header + 3008,
            "{record}"
        );
    }
    Ok(())
}

#[test]
fn long_ipv6_extension_chains_keep_their_transport_header() -> Result<()> {
    let net = TestNet::new()?;
    let sink = udp_bind(&net.host, addr(HOST_V6, 7300))?;
    let mut fwlog = Fwlog::watch(&net.host, &["--allow-in", "7300/udp", &net.host_if])?;
    // 8 and 11 destination-options headers, then UDP: the kernel delivers both.
    let chain = |n: usize, sport: u16| {
        format!(
            "IPv6(src={PEER_V6:?}, dst={HOST_V6:?}){}/UDP(sport={sport}, dport=7300)/Raw(b'chain')",
            "/IPv6ExtHdrDestOpt()".repeat(n)
        )
    };
    send(
        &net,
        &format!("[{}, {}]", chain(8, 41_300), chain(11, 41_301)),
    )?;
    sink.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut buffer = [0u8; 64];
    for _ in 0..2 {
        sink.recv(&mut buffer)
            .context("the kernel delivers long chains")?;
    }
    for sport in [41_300, 41_301] {
        let verdict = fwlog.expect_event("the datagram's verdict", |e| {
            e["event_type"] == "verdict" && e["src_port"] == sport
        })?;
        assert_eq!(verdict["proto"], "udp", "{verdict}");
        assert_eq!(verdict["dest_port"], 7300);
        assert!(verdict.get("malformed").is_none(), "{verdict}");
    }
    let (events, malformed) = stop(&mut fwlog)?;
    assert_eq!(malformed, 0, "nothing malformed: {events:#?}");
    Ok(())
}

#[test]
fn an_extension_chain_past_the_bound_is_malformed_once() -> Result<()> {
    let net = TestNet::new()?;
    let mut fwlog = Fwlog::watch(&net.host, &["--inbound", "accept", &net.host_if])?;
    send(
        &net,
        &format!(
            "[IPv6(src={PEER_V6:?}, dst={HOST_V6:?}){}/UDP(sport=41400, dport=7400)]",
            "/IPv6ExtHdrDestOpt()".repeat(40)
        ),
    )?;
    std::thread::sleep(Duration::from_millis(300));
    let (events, malformed) = stop(&mut fwlog)?;
    assert_eq!(
        malformed, 1,
        "counted once, by whichever program saw it: {events:#?}"
    );
    Ok(())
}
