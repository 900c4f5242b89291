//! What the user had stays theirs: chains they made or use, a closed OUTPUT policy, loopback,
//! and the connectionless flows the host already has when fwlog installs (and the grace the
//! configuration file gives them).

use std::{
    net::UdpSocket,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use fwlog_tests::{
    addr,
    daemon::TempDir,
    fwlog::fwlog_command,
    netns::{HOST_V4, PEER_V4},
    traffic::{tcp_connect, tcp_listen, udp_bind, udp_send},
    Fwlog, TestNet,
};
use nix::sys::signal::Signal;

const NO_ANSWER: Duration = Duration::from_millis(1500);

#[test]
fn a_chain_fwlog_created_keeps_its_action_when_the_users_rules_jump_to_it() -> Result<()> {
    let net = TestNet::new()?;
    let _listener = tcp_listen(&net.host, addr(HOST_V4, 2424))?;
    // A closed host: only what the user's rules accept gets in.
    net.host.output(
        "iptables",
        &[
            "-A",
            "INPUT",
            "-m",
            "conntrack",
            "--ctstate",
            "ESTABLISHED,RELATED",
            "-j",
            "ACCEPT",
        ],
    )?;
    net.host.output("iptables", &["-P", "INPUT", "DROP"])?;
    let mut fwlog = Fwlog::watch(&net.host, &[&net.host_if])?;
    // While fwlog runs, the user points a rule at its chain, as README suggests.
    net.host.output(
        "iptables",
        &[
            "-I",
            "INPUT",
            "1",
            "-p",
            "tcp",
            "--dport",
            "2424",
            "-j",
            "LOG_AND_ACCEPT",
        ],
    )?;
    assert!(tcp_connect(
        &net.peer,
        addr(HOST_V4, 2424),
        Duration::from_secs(3)
    )?);
    fwlog.expect_event("the accepted connection", |e| {
        e["dest_port"] == 2424 && e["action"] == "accept"
    })?;

    assert!(fwlog.stop(Signal::SIGINT)?.success());
    assert!(
        tcp_connect(&net.peer, addr(HOST_V4, 2424), Duration::from_secs(3))?,
        "the user's accept still accepts after fwlog left"
    );
    let said = fwlog.stderr_text();
    assert!(
        said.contains(
            "fwlog: kept LOG_AND_ACCEPT (iptables), since your rules use it, with its final ACCEPT"
        ),
        "says so: {said}"
    );
    let rules = net.host.saved_rules()?;
    assert!(
        rules.contains("-A LOG_AND_ACCEPT -m comment --comment fwlog-kept -j ACCEPT\n"),
        "{rules}"
    );
    assert!(
        !rules.contains(":LOG_AND_DROP") && !rules.contains(":LOG_AND_REJECT"),
        "the chains nobody else uses went: {rules}"
    );
    Ok(())
}

#[test]
fn a_users_own_empty_chain_survives() -> Result<()> {
    let net = TestNet::new()?;
    net.host.output("iptables", &["-N", "LOG_AND_REJECT"])?;
    net.host.output("ip6tables", &["-N", "LOG_AND_DROP"])?;
    let before = net.host.saved_rules()?;
    let mut fwlog = Fwlog::watch(&net.host, &[&net.host_if])?;
    assert!(fwlog.stop(Signal::SIGINT)?.success());
    assert_eq!(
        net.host.saved_rules()?,
        before,
        "the user's empty chains are still there, empty"
    );
    Ok(())
}

#[test]
fn watch_lo_is_refused() -> Result<()> {
    let net = TestNet::new()?;
    let before = net.host.saved_rules()?;
    let mut command = fwlog_command(&net.host);
    command.args(["watch", "lo"]);
    let mut fwlog = Fwlog::start(command, net.host.path(), None)?;
    let exit = fwlog.wait(Duration::from_secs(15))?;
    let said = fwlog.stderr_text();
    assert!(!exit.success(), "{said}");
    assert_eq!(said.lines().count(), 1, "{said}");
    assert!(
        said.starts_with("fwlog: lo is a loopback interface: fwlog leaves loopback alone"),
        "{said}"
    );
    assert_eq!(net.host.saved_rules()?, before);
    assert!(!net.host.pin_dir().exists());

    // An interface that carries loopback addresses is refused the same way.
    net.host
        .output("ip", &["addr", "add", "127.1.0.1/8", "dev", &net.host_if])?;
    let refused = fwlog_command(&net.host)
        .args(["watch", &net.host_if])
        .output()?;
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        said.starts_with(&format!(
            "fwlog: {} carries a loopback address (127.1.0.1): fwlog leaves loopback alone",
            net.host_if
        )),
        "{said}"
    );
    assert_eq!(net.host.saved_rules()?, before);
    Ok(())
}

#[test]
fn a_closed_output_policy_stays_closed() -> Result<()> {
    let net = TestNet::new()?;
    let _peer = tcp_listen(&net.peer, addr(PEER_V4, 8080))?;
    net.host.output("iptables", &["-P", "OUTPUT", "DROP"])?;
    assert!(
        !tcp_connect(&net.host, addr(PEER_V4, 8080), NO_ANSWER)?,
        "closed before"
    );
    let mut fwlog = Fwlog::watch(&net.host, &[&net.host_if])?;
    assert!(
        !tcp_connect(&net.host, addr(PEER_V4, 8080), NO_ANSWER)?,
        "fwlog's default outbound policy does not open what the user closed"
    );
    let said = fwlog.stderr_text();
    assert!(
        said.contains(
            "the iptables OUTPUT policy is DROP: new outbound connections are logged and dropped"
        ),
        "{said}"
    );
    let event = fwlog.expect_event("the outbound attempt", |e| {
        e["dest_port"] == 8080 && e["direction"] == "outbound"
    })?;
    assert_eq!(event["action"], "drop", "logged as what happens to it");
    assert!(fwlog.stop(Signal::SIGINT)?.success());
    assert!(net.host.saved_rules()?.contains(":OUTPUT DROP"));
    Ok(())
}

/// Datagrams `socket` receives until `until`, with the time each came; at `reply_at` it sends
/// one datagram back (the host side of the flow, talking less often than the peer).
fn arrivals(socket: &UdpSocket, until: Instant, reply_at: Instant) -> Result<Vec<Instant>> {
    socket.set_read_timeout(Some(Duration::from_millis(20)))?;
    let mut times = Vec::new();
    let mut replied = false;
    let mut buffer = [0u8; 64];
    while Instant::now() < until {
        if socket.recv(&mut buffer).is_ok() {
            times.push(Instant::now());
        }
        if !replied && Instant::now() >= reply_at {
            socket.send(b"still here")?;
            replied = true;
        }
    }
    Ok(times)
}

#[test]
fn an_established_udp_flow_survives_install() -> Result<()> {
    let net = TestNet::new()?;
    // A flow the host opened before fwlog (a resolver, a game, mosh): the peer sends every
    // 200 ms, the host now and then.
    let peer = udp_bind(&net.peer, addr(PEER_V4, 7400))?;
    let host = udp_bind(&net.host, addr(HOST_V4, 0))?;
    host.connect(addr(PEER_V4, 7400))?;
    host.send(b"hello")?;
    let mut buffer = [0u8; 16];
    peer.set_read_timeout(Some(Duration::from_secs(3)))?;
    let (_, host_addr) = peer
        .recv_from(&mut buffer)
        .context("the host's first datagram")?;
    let talking = Arc::new(AtomicBool::new(true));
    let sender = {
        let talking = Arc::clone(&talking);
        std::thread::spawn(move || {
            // Bounded: 150 datagrams, 30 s.
            for _ in 0..150 {
                if !talking.load(Ordering::Relaxed) {
                    break;
                }
                let _ = peer.send_to(b"tick", host_addr);
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };

    let mut command = fwlog_command(&net.host);
    command.args(["watch", &net.host_if]);
    let mut fwlog = Fwlog::start(command, net.host.path(), None)?;
    // The moment fwlog's rules are in: it says it is watching, or that it learns flows first.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !(fwlog.stderr_text().contains("fwlog: watching")
        || fwlog.stderr_text().contains("connectionless"))
    {
        anyhow::ensure!(
            Instant::now() < deadline,
            "fwlog did not start: {}",
            fwlog.stderr_text()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let installed = Instant::now();
    // The host's side speaks a second after install, and the peer's keeps coming.
    let received = arrivals(
        &host,
        installed + Duration::from_secs(8),
        installed + Duration::from_secs(1),
    )?;
    talking.store(false, Ordering::Relaxed);
    let _ = sender.join();
    fwlog.wait_until_watching()?;
    let largest_gap = received
        .windows(2)
        .map(|w| w[1] - w[0])
        .chain(received.first().map(|first| *first - installed))
        .max()
        .unwrap_or(Duration::from_secs(8));
    println!(
        "largest gap across install: {largest_gap:?}, {} datagrams in 8 s",
        received.len()
    );
    assert!(
        largest_gap < Duration::from_millis(700),
        "the peer's datagrams kept coming across install (every 200 ms): the largest gap was \
         {largest_gap:?}, {} datagrams in 8 s",
        received.len()
    );
    let said = fwlog.stderr_text();
    assert!(
        said.contains("new connectionless (UDP, …) attempts are accepted and logged for 5 s"),
        "{said}"
    );
    let learnt = fwlog.expect_event("the flow, logged as accepted while learnt", |e| {
        e["event_type"] == "verdict" && e["src_port"] == 7400 && e["direction"] == "inbound"
    })?;
    assert_eq!(learnt["action"], "accept");

    // A new inbound flow meets the policy as usual.
    let server = udp_bind(&net.host, addr(HOST_V4, 7500))?;
    let from = udp_send(&net.peer, addr(HOST_V4, 7500), b"new")?;
    let dropped = fwlog.expect_event("a new inbound flow", |e| {
        e["event_type"] == "verdict" && e["dest_port"] == 7500 && e["src_port"] == from.port()
    })?;
    assert_eq!(dropped["action"], "drop");
    assert!(!fwlog_tests::traffic::udp_received(
        &server,
        Duration::from_millis(500)
    )?);
    Ok(())
}

#[test]
fn a_stop_during_the_grace_removes_everything() -> Result<()> {
    let net = TestNet::new()?;
    let before = net.host.saved_rules()?;
    // A UDP socket on the host: fwlog gives connectionless flows their grace.
    let _socket = udp_bind(&net.host, addr(HOST_V4, 7600))?;
    let mut command = fwlog_command(&net.host);
    command.args(["watch", "--grace", "30", &net.host_if]);
    let mut fwlog = Fwlog::start(command, net.host.path(), None)?;
    fwlog.wait_for_message("fwlog: watching", Duration::from_secs(20))?;
    assert!(fwlog
        .stderr_text()
        .contains("attempts are accepted and logged for 30 s"));
    let asked = Instant::now();
    assert!(
        fwlog.stop(Signal::SIGINT)?.success(),
        "{}",
        fwlog.stderr_text()
    );
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "did not wait for the grace"
    );
    assert!(
        !fwlog
            .stderr_text()
            .contains("the policy applies to new connectionless attempts too"),
        "the grace was not ended after the stop: {}",
        fwlog.stderr_text()
    );
    assert_eq!(net.host.saved_rules()?, before);
    assert!(!net.host.pin_dir().exists());
    Ok(())
}

#[test]
fn the_config_file_sets_the_grace_and_the_line_format() -> Result<()> {
    let net = TestNet::new()?;
    // A UDP socket on the host: without a grace of 0 fwlog would give connectionless flows one.
    let _socket = udp_bind(&net.host, addr(HOST_V4, 7700))?;
    let dir = TempDir::new("config-grace")?;
    let config = dir.path().join("fwlog.toml");
    let config_arg = config.to_string_lossy().into_owned();

    // `grace = 3` is the install's grace, announced and then ended.
    std::fs::write(&config, "grace = 3\n")?;
    let mut command = fwlog_command(&net.host);
    command.args(["install", "--config", &config_arg, &net.host_if]);
    let installed = command.output()?;
    let said = String::from_utf8_lossy(&installed.stderr).into_owned();
    assert!(installed.status.success(), "{said}");
    assert!(
        said.contains("attempts are accepted and logged for 3 s"),
        "{said}"
    );
    assert!(
        said.contains("the policy applies to new connectionless attempts too"),
        "{said}"
    );
    let removed = fwlog_command(&net.host).arg("uninstall").output()?;
    assert!(
        removed.status.success(),
        "{}",
        String::from_utf8_lossy(&removed.stderr)
    );

    // `grace = 0` and `format = "ecs"`: no grace, and ECS lines, with no flag saying either.
    std::fs::write(&config, "grace = 0\n\n[output]\nformat = \"ecs\"\n")?;
    let mut fwlog = Fwlog::watch(&net.host, &["--config", &config_arg, &net.host_if])?;
    let said = fwlog.stderr_text();
    assert!(!said.contains("connectionless"), "{said}");
    let from = udp_send(&net.peer, addr(HOST_V4, 7700), b"in")?;
    let event = fwlog.expect_event("the inbound datagram, in ECS", |e| {
        e["destination"]["port"] == 7700 && e["source"]["port"] == from.port()
    })?;
    assert_eq!(
        event["event"]["action"], "drop",
        "no grace: the policy applies at once"
    );
    // A flag still wins over the file.
    drop(fwlog);
    let mut fwlog = Fwlog::watch(
        &net.host,
        &["--config", &config_arg, "--format", "json", &net.host_if],
    )?;
    let from = udp_send(&net.peer, addr(HOST_V4, 7700), b"in")?;
    let event = fwlog.expect_event("the inbound datagram, in fwlog's JSON", |e| {
        e["dest_port"] == 7700 && e["src_port"] == from.port()
    })?;
    assert_eq!(event["action"], "drop");
    Ok(())
}
