//! `fwlog watch` end to end: real traffic through a real firewall, checked in the JSON lines.

use std::time::Duration;

use anyhow::{Context as _, Result};
use fwlog_tests::{
    addr, kernel_maps,
    netns::{HOST_V4, HOST_V6, PEER_V4, PEER_V6},
    traffic::{ping, tcp_connect, tcp_listen, udp_bind, udp_received, udp_send},
    Fwlog, TestNet,
};
use serde_json::Value;

const NO_ANSWER: Duration = Duration::from_millis(1500);

fn is(event: &Value, fields: &[(&str, Value)]) -> bool {
    fields.iter().all(|(key, value)| &event[*key] == value)
}

#[test]
fn inbound_tcp_and_udp_are_dropped_and_logged() -> Result<()> {
    let net = TestNet::new()?;
    // A listener and a UDP socket on the host: without fwlog the peer would reach them.
    let _listener = tcp_listen(&net.host, addr(HOST_V4, 22))?;
    let udp_sink = udp_bind(&net.host, addr(HOST_V4, 5353))?;
    let mut fwlog = Fwlog::watch(&net.host, &[&net.host_if])?;

    let connected = tcp_connect(&net.peer, addr(HOST_V4, 22), NO_ANSWER)?;
    assert!(!connected, "the inbound TCP connection must get no answer");
    let event = fwlog.expect_event("inbound TCP drop", |e| {
        is(
            e,
            &[
                ("proto", "tcp".into()),
                ("dest_port", 22.into()),
                ("action", "drop".into()),
            ],
        )
    })?;
    assert_eq!(event["event_type"], "verdict");
    assert_eq!(event["ct_state"], "new");
    assert_eq!(event["direction"], "inbound");
    assert_eq!(event["in_iface"], net.host_if.as_str());
    assert_eq!(event["chain"], "LOG_AND_DROP");
    assert_eq!(event["ip_version"], 4);
    assert_eq!(event["src_ip"], PEER_V4);
    assert_eq!(event["dest_ip"], HOST_V4);
    assert_eq!(event["tcp_flags"], "S");
    assert_eq!(event["len"], 60, "a SYN with the usual options is 60 bytes");
    assert!(event["src_port"].as_u64().is_some_and(|p| p >= 1024));
    assert!(
        event.get("uid").is_none(),
        "no local socket sent this packet"
    );
    assert!(
        event.get("out_iface").is_none(),
        "not known in INPUT: omitted, not guessed"
    );
    assert!(event["timestamp"]
        .as_str()
        .is_some_and(|t| t.len() == 27 && t.ends_with('Z')));

    let sent_from = udp_send(&net.peer, addr(HOST_V4, 5353), b"hello")?;
    let event = fwlog.expect_event("inbound UDP drop", |e| {
        is(e, &[("proto", "udp".into()), ("dest_port", 5353.into())])
    })?;
    assert_eq!(event["action"], "drop");
    assert_eq!(event["src_port"], sent_from.port());
    assert_eq!(event["src_ip"], PEER_V4);
    assert_eq!(event["len"], 33, "20 (IP) + 8 (UDP) + 5 bytes");
    assert!(
        !udp_received(&udp_sink, Duration::from_millis(500))?,
        "the datagram was dropped"
    );
    Ok(())
}

#[test]
fn outbound_tcp_is_accepted_with_its_owner() -> Result<()> {
    let net = TestNet::new()?;
    let listener = tcp_listen(&net.peer, addr(PEER_V4, 8080))?;
    let mut fwlog = Fwlog::watch(&net.host, &[&net.host_if])?;

    assert!(tcp_connect(
        &net.host,
        addr(PEER_V4, 8080),
        Duration::from_secs(3)
    )?);
    let (_, client) = listener.accept()?;
    let event = fwlog.expect_event("outbound TCP accept", |e| {
        is(e, &[("proto", "tcp".into()), ("dest_port", 8080.into())])
    })?;
    assert_eq!(event["action"], "accept");
    assert_eq!(event["direction"], "outbound");
    assert_eq!(event["chain"], "LOG_AND_ACCEPT");
    assert_eq!(event["src_ip"], HOST_V4);
    assert_eq!(event["src_port"], client.port());
    assert_eq!(event["dest_ip"], PEER_V4);
    assert_eq!(event["uid"], 0, "the connecting socket belongs to root");
    assert!(event.get("in_iface").is_none());
    Ok(())
}

#[test]
fn icmp_echo_both_ways() -> Result<()> {
    let net = TestNet::new()?;
    let mut fwlog = Fwlog::watch(&net.host, &[&net.host_if])?;

    assert!(
        !ping(&net.peer, HOST_V4)?,
        "inbound echo requests are dropped"
    );
    let event = fwlog.expect_event("inbound echo", |e| {
        is(
            e,
            &[("proto", "icmp".into()), ("direction", "inbound".into())],
        )
    })?;
    assert_eq!(event["action"], "drop");
    assert_eq!(event["icmp_type"], 8);
    assert_eq!(event["icmp_code"], 0);
    assert!(event.get("src_port").is_none(), "ICMP has no ports");

    assert!(
        ping(&net.host, PEER_V4)?,
        "outbound echo is accepted and answered"
    );
    let event = fwlog.expect_event("outbound echo", |e| {
        is(
            e,
            &[("proto", "icmp".into()), ("direction", "outbound".into())],
        )
    })?;
    assert_eq!(event["action"], "accept");
    assert_eq!(event["icmp_type"], 8);
    assert_eq!(event["dest_ip"], PEER_V4);
    Ok(())
}

#[test]
fn ipv6_inbound_outbound_and_echo() -> Result<()> {
    let net = TestNet::new()?;
    let _listener = tcp_listen(&net.host, addr(HOST_V6, 22))?;
    let peer_listener = tcp_listen(&net.peer, addr(PEER_V6, 8443))?;
    let mut fwlog = Fwlog::watch(&net.host, &[&net.host_if])?;

    assert!(!tcp_connect(&net.peer, addr(HOST_V6, 22), NO_ANSWER)?);
    let event = fwlog.expect_event("inbound TCP over IPv6", |e| {
        is(
            e,
            &[
                ("ip_version", 6.into()),
                ("proto", "tcp".into()),
                ("dest_port", 22.into()),
            ],
        )
    })?;
    assert_eq!(event["action"], "drop");
    assert_eq!(event["src_ip"], PEER_V6);
    assert_eq!(event["dest_ip"], HOST_V6);
    assert_eq!(event["in_iface"], net.host_if.as_str());
    assert_eq!(event["len"], 80, "40 (IPv6) + 40 (TCP with options)");

    assert!(tcp_connect(
        &net.host,
        addr(PEER_V6, 8443),
        Duration::from_secs(3)
    )?);
    let (_, client) = peer_listener.accept()?;
    let event = fwlog.expect_event("outbound TCP over IPv6", |e| {
        is(e, &[("ip_version", 6.into()), ("dest_port", 8443.into())])
    })?;
    assert_eq!(event["action"], "accept");
    assert_eq!(event["direction"], "outbound");
    assert_eq!(event["src_port"], client.port());

    assert!(!ping(&net.peer, HOST_V6)?);
    let event = fwlog.expect_event("inbound ICMPv6 echo", |e| {
        is(e, &[("proto", "icmpv6".into()), ("icmp_type", 128.into())])
    })?;
    assert_eq!(event["action"], "drop");
    assert_eq!(event["src_ip"], PEER_V6);
    Ok(())
}

#[test]
fn port_unreachable_answering_outbound_udp_is_related() -> Result<()> {
    let net = TestNet::new()?;
    let mut fwlog = Fwlog::watch(&net.host, &[&net.host_if])?;

    // Nothing listens on the peer's port 9: its kernel answers with ICMP port unreachable,
    // which conntrack ties to our datagram (RELATED) and the inbound rule drops and logs.
    let sent_from = udp_send(&net.host, addr(PEER_V4, 9), b"anyone?")?;
    let outbound = fwlog.expect_event("outbound UDP", |e| {
        is(e, &[("proto", "udp".into()), ("dest_port", 9.into())])
    })?;
    assert_eq!(outbound["ct_state"], "new");
    assert_eq!(outbound["src_port"], sent_from.port());
    let related = fwlog.expect_event("ICMP port unreachable", |e| {
        is(e, &[("proto", "icmp".into()), ("icmp_type", 3.into())])
    })?;
    assert_eq!(related["ct_state"], "related");
    assert_eq!(related["icmp_code"], 3);
    assert_eq!(related["action"], "drop");
    assert_eq!(related["direction"], "inbound");
    assert_eq!(related["src_ip"], PEER_V4);
    assert_eq!(related["dest_ip"], HOST_V4);
    Ok(())
}

#[test]
fn every_line_is_flushed_promptly_and_parses() -> Result<()> {
    let net = TestNet::new()?;
    let mut fwlog = Fwlog::watch(&net.host, &[&net.host_if])?;
    for port in 40000..40020 {
        udp_send(&net.host, addr(PEER_V4, port), b"x")?;
    }
    // The fixture reads through a pipe: each line must arrive without fwlog exiting first.
    for port in 40000..40020 {
        fwlog.expect_event("outbound UDP", |e| is(e, &[("dest_port", port.into())]))?;
    }
    Ok(())
}

#[test]
fn filters_keep_only_what_was_asked_in_ecs() -> Result<()> {
    let net = TestNet::new()?;
    let _peer_sink = udp_bind(&net.peer, addr(PEER_V4, 6200))?;
    let mut fwlog = Fwlog::watch(
        &net.host,
        &[
            "--format",
            "ecs",
            "--action",
            "drop",
            "--proto",
            "udp",
            &net.host_if,
        ],
    )?;
    udp_send(&net.peer, addr(HOST_V4, 5353), b"in")?; // drop, udp: kept
    assert!(!tcp_connect(&net.peer, addr(HOST_V4, 22), NO_ANSWER)?); // drop, tcp: filtered out
    udp_send(&net.host, addr(PEER_V4, 6200), b"out")?; // accept: filtered out
    let event = fwlog.expect_event("the inbound UDP drop, in ECS", |e| {
        e["destination"]["port"] == 5353
    })?;
    assert_eq!(event["event"]["action"], "drop");
    assert_eq!(event["network"]["transport"], "udp");
    assert_eq!(event["network"]["direction"], "inbound");
    assert_eq!(event["source"]["ip"], PEER_V4);
    assert_eq!(
        event["observer"]["ingress"]["interface"]["name"],
        net.host_if.as_str()
    );
    assert!(event["@timestamp"].is_string());
    let others = fwlog.collect_events(Duration::from_millis(800));
    let unwanted: Vec<&Value> = others
        .iter()
        .filter(|e| e["event"]["action"] != "drop" || e["network"]["transport"] != "udp")
        .filter(|e| e["event"]["kind"] != "metric")
        .collect();
    assert!(unwanted.is_empty(), "filtered out: {unwanted:#?}");
    Ok(())
}

#[test]
fn text_format_is_one_readable_line_per_event() -> Result<()> {
    use std::io::{BufRead as _, BufReader};
    let net = TestNet::new()?;
    let mut child = fwlog_tests::fwlog::fwlog_command(&net.host)
        .args([
            "watch",
            "--format",
            "text",
            "--color",
            "never",
            &net.host_if,
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().expect("piped");
    let (lines_tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    // Bounded wait for the rules, then traffic until a line arrives.
    let mut found = None;
    for _ in 0..20 {
        udp_send(&net.peer, addr(HOST_V4, 5454), b"hello")?;
        if let Ok(line) = lines.recv_timeout(Duration::from_millis(500)) {
            found = Some(line);
            break;
        }
    }
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    );
    assert!(child.wait()?.success());
    let line = found.expect("a text line within 10 s");
    assert!(line.contains(" drop "), "{line}");
    assert!(line.contains(&format!("{PEER_V4}:")), "{line}");
    assert!(line.contains(&format!("{HOST_V4}:5454")), "{line}");
    assert!(
        !line.contains('{') && !line.contains('\x1b'),
        "plain text: {line}"
    );
    Ok(())
}

/// The kernel verifies at most a million instructions per program, and verifying takes time
/// at start-up: each program has to stay well inside that (a branch that made the verifier
/// walk the tc programs once per parsed header length once cost 684 000 and 1.8 s).
#[test]
fn every_program_is_verified_well_inside_the_kernels_limit() -> Result<()> {
    const BUDGET: u32 = 300_000;
    let net = TestNet::new()?;
    // A tun device too, for the programs of interfaces without a link-layer header (`_l3`).
    let tun = net.add_tun()?;
    let mut fwlog = Fwlog::watch(&net.host, &[&net.host_if, &tun])?;
    let pid = fwlog.pid().context("fwlog is running")?;
    let programs = kernel_maps::programs_of(pid)?;
    let mut names = Vec::new();
    for program in &programs {
        let name = program.name_as_str().unwrap_or("?").to_string();
        let verified = program.verified_instruction_count().with_context(|| {
            format!("the kernel reports no verified instruction count for {name}")
        })?;
        // `cargo xtask test --kernel` reads these lines (with --show-output) into its table.
        println!("verified {name}: {verified} instructions");
        names.push((name, verified));
    }
    for (name, verified) in &names {
        assert!(
            *verified < BUDGET,
            "{name}: {verified} instructions verified"
        );
    }
    for expected in [
        "flow_ingress",
        "flow_egress",
        "flow_ingress_l3",
        "flow_egress_l3",
        "verdict_drop_ne",
        "verdict_accept_",
    ] {
        assert!(
            names.iter().any(|(name, _)| name == expected),
            "{expected} among {names:?}"
        );
    }
    assert!(fwlog.stop(nix::sys::signal::Signal::SIGINT)?.success());
    Ok(())
}

/// Each CPU writes its verdicts into a ring of its own: traffic sent from CPU 0 and from CPU 1
/// (taskset; a veth delivers a packet on the CPU that sent it) is logged whole, so the
/// collector reads every CPU's ring, not only the first.
#[test]
fn verdicts_from_each_cpu_are_logged() -> Result<()> {
    const PER_CPU: usize = 20;
    let cpus = std::thread::available_parallelism()?.get();
    anyhow::ensure!(
        cpus >= 2,
        "this test sends from two CPUs and the machine has {cpus}"
    );
    let net = TestNet::new()?;
    let mut fwlog = Fwlog::watch(&net.host, &[&net.host_if])?;
    for cpu in 0..2u16 {
        // A new socket per datagram (bash's /dev/udp), so each one is a new connection.
        let script = format!(
            "for i in $(seq {PER_CPU}); do echo x > /dev/udp/{HOST_V4}/{}; done",
            7100 + cpu
        );
        net.peer
            .output("taskset", &["-c", &cpu.to_string(), "bash", "-c", &script])?;
    }
    let events = fwlog.collect_events(Duration::from_secs(2));
    for cpu in 0..2u16 {
        let logged = events
            .iter()
            .filter(|e| {
                is(
                    e,
                    &[
                        ("event_type", "verdict".into()),
                        ("action", "drop".into()),
                        ("proto", "udp".into()),
                        ("dest_port", (7100 + cpu).into()),
                    ],
                )
            })
            .count();
        assert_eq!(logged, PER_CPU, "datagrams sent from CPU {cpu}");
    }
    // And they came through each CPU's own ring: the collector has read from both.
    let pid = fwlog.pid().context("fwlog is running")?;
    for cpu in 0..2 {
        let ring = kernel_maps::map_of(pid, &format!("events_cpu{cpu}"))?;
        let consumed = kernel_maps::ring_consumed(&ring)?;
        assert!(consumed > 0, "nothing was read from CPU {cpu}'s ring");
    }
    Ok(())
}
