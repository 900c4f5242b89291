//! What fwlog installs, that it leaves the user's rules alone, and that it leaves nothing behind.

use std::time::Duration;

use anyhow::Result;
use fwlog_tests::{
    addr,
    fwlog::fwlog_command,
    netns::{HOST_V4, PEER_V4},
    traffic::{read_all, tcp_connect, tcp_listen, udp_bind, udp_send},
    untagged, Fwlog, TestNet,
};
use nix::sys::signal::{kill, Signal};
use serde_json::Value;

/// What a session pins: its record, the namespace link and the six verdict programs.
const PINS: [&str; 8] = [
    "link_netns",
    "record",
    "verdict_accept_new",
    "verdict_accept_related",
    "verdict_drop_new",
    "verdict_drop_related",
    "verdict_reject_new",
    "verdict_reject_related",
];

const PROGRAMS: [&str; 6] = [
    "verdict_accept_new",
    "verdict_accept_related",
    "verdict_drop_new",
    "verdict_drop_related",
    "verdict_reject_new",
    "verdict_reject_related",
];

/// How iptables-save prints `-p tcp --syn`.
const SYN: &str = "-p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN";

fn pins(net: &TestNet) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(net.host.pin_dir())
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn rules_and_pins_exist_while_watching_and_go_on_sigint() -> Result<()> {
    let net = TestNet::new()?;
    let before = net.host.saved_rules()?;
    let mut fwlog = Fwlog::watch(&net.host, &[&net.host_if])?;

    let during = untagged(&net.host.saved_rules()?);
    let pin_dir = net.host.pin_dir();
    for chain in ["LOG_AND_ACCEPT", "LOG_AND_DROP", "LOG_AND_REJECT"] {
        assert_eq!(
            during.matches(&format!(":{chain} - [0:0]")).count(),
            2,
            "{chain} in both families"
        );
    }
    for program in PROGRAMS {
        // In the chains fwlog created, the logging rule takes the chain's action itself.
        let target = ["accept", "drop", "reject"]
            .into_iter()
            .find(|action| program.contains(action))
            .map(str::to_uppercase)
            .unwrap_or_default();
        let rule = format!(
            "--object-pinned {}/{program} -j {target}",
            pin_dir.display()
        );
        assert_eq!(
            during.matches(&rule).count(),
            2,
            "rule for {program} in both families:\n{during}"
        );
    }
    // New connection attempts only: TCP SYNs and the first packet of other protocols.
    for attempt in [SYN, "! -p tcp"] {
        let input = format!(
            "-A INPUT -i {} {attempt} -m conntrack --ctstate NEW,RELATED -m comment --comment fwlog -j LOG_AND_DROP",
            net.host_if
        );
        assert_eq!(
            during.matches(&input).count(),
            2,
            "{input} in both families:\n{during}"
        );
        let output = format!(
            "-A OUTPUT ! -o lo {attempt} -m conntrack --ctstate NEW,RELATED -m comment --comment fwlog -j LOG_AND_ACCEPT"
        );
        assert_eq!(
            during.matches(&output).count(),
            2,
            "{output} in both families:\n{during}"
        );
    }
    // Kernels without TCX (before 6.6) also record their netlink filters (tests/tc_netlink.rs).
    let programs: Vec<String> = pins(&net)
        .into_iter()
        .filter(|pin| !pin.starts_with("tc_"))
        .collect();
    assert_eq!(programs, PINS);

    udp_send(&net.host, addr(PEER_V4, 7777), b"x")?;
    fwlog.expect_event("one event", |e| e["dest_port"] == 7777)?;

    let status = fwlog.stop(Signal::SIGINT)?;
    assert!(status.success(), "fwlog exits cleanly on SIGINT: {status}");
    assert_eq!(
        net.host.saved_rules()?,
        before,
        "nothing of fwlog remains in iptables"
    );
    assert!(!pin_dir.exists(), "pins removed");
    assert!(
        fwlog.stderr_text().lines().any(|l| l.starts_with("fwlog: ")
            && l.contains(" events, ")
            && l.contains(", 0 lost,")),
        "summary on stderr: {}",
        fwlog.stderr_text()
    );
    Ok(())
}

#[test]
fn sigterm_also_cleans_up() -> Result<()> {
    let net = TestNet::new()?;
    let before = net.host.saved_rules()?;
    let mut fwlog = Fwlog::watch(&net.host, &[&net.host_if])?;
    assert!(fwlog.stop(Signal::SIGTERM)?.success());
    assert_eq!(net.host.saved_rules()?, before);
    assert!(!net.host.pin_dir().exists());
    Ok(())
}

#[test]
fn after_sigkill_the_firewall_holds_and_uninstall_removes_everything() -> Result<()> {
    let net = TestNet::new()?;
    let before = net.host.saved_rules()?;
    let listener = tcp_listen(&net.host, addr(HOST_V4, 2222))?;
    let mut fwlog = Fwlog::watch(&net.host, &[&net.host_if])?;
    fwlog.stop(Signal::SIGKILL)?;

    assert!(
        !tcp_connect(&net.peer, addr(HOST_V4, 2222), Duration::from_millis(1500))?,
        "the rules keep dropping without the collector"
    );
    let uninstall = fwlog_command(&net.host).arg("uninstall").output()?;
    assert!(
        uninstall.status.success(),
        "{}",
        String::from_utf8_lossy(&uninstall.stderr)
    );
    assert!(String::from_utf8_lossy(&uninstall.stderr)
        .contains("fwlog: removed iptables rules, ip6tables rules, pins"));
    assert_eq!(net.host.saved_rules()?, before);
    assert!(!net.host.pin_dir().exists());
    assert!(
        tcp_connect(&net.peer, addr(HOST_V4, 2222), Duration::from_secs(3))?,
        "firewall gone"
    );
    drop(listener);

    let again = fwlog_command(&net.host).arg("uninstall").output()?;
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("nothing of fwlog is installed here"));
    Ok(())
}

#[test]
fn a_user_chain_keeps_its_rules() -> Result<()> {
    let net = TestNet::new()?;
    for rule in [
        vec!["-N", "LOG_AND_DROP"],
        vec![
            "-A",
            "LOG_AND_DROP",
            "-m",
            "conntrack",
            "--ctstate",
            "NEW,RELATED",
            "-j",
            "LOG",
            "--log-prefix",
            "[OY-D]:",
            "--log-level",
            "7",
        ],
        vec!["-A", "LOG_AND_DROP", "-j", "DROP"],
        vec![
            "-A",
            "INPUT",
            "-p",
            "tcp",
            "--dport",
            "2323",
            "-j",
            "LOG_AND_DROP",
        ],
    ] {
        net.host.output("iptables", &rule)?;
    }
    let before = net.host.saved_rules()?;
    let mut fwlog = Fwlog::watch(&net.host, &[&net.host_if])?;

    let during = net.host.saved_rules()?;
    for line in before.lines().filter(|l| l.starts_with("-A")) {
        assert!(during.contains(line), "user rule {line:?} kept:\n{during}");
    }
    let drop_chain: Vec<&str> = during
        .lines()
        .filter(|l| l.starts_with("-A LOG_AND_DROP"))
        .take(4)
        .collect();
    assert!(
        drop_chain[0].contains("verdict_drop_new"),
        "fwlog's rules come first: {drop_chain:#?}"
    );
    assert!(drop_chain[1].contains("verdict_drop_related"));
    assert!(
        drop_chain[2].contains("[OY-D]:"),
        "then the user's own: {drop_chain:#?}"
    );

    assert!(!tcp_connect(
        &net.peer,
        addr(HOST_V4, 2323),
        Duration::from_millis(1500)
    )?);
    let event = fwlog.expect_event("drop through the user's rule", |e| e["dest_port"] == 2323)?;
    assert_eq!(event["action"], "drop");

    assert!(fwlog.stop(Signal::SIGINT)?.success());
    assert_eq!(
        net.host.saved_rules()?,
        before,
        "exactly the user's rules remain"
    );
    Ok(())
}

#[test]
fn established_connections_survive_install_and_removal() -> Result<()> {
    let net = TestNet::new()?;
    let listener = tcp_listen(&net.host, addr(HOST_V4, 22))?;
    let peer_side = net
        .peer
        .enter(|| std::net::TcpStream::connect(addr(HOST_V4, 22)))??;
    let (mut host_side, _) = listener.accept()?;

    let mut fwlog = Fwlog::watch(&net.host, &[&net.host_if])?;
    use std::io::Write as _;
    (&peer_side).write_all(b"still here")?;
    host_side.set_read_timeout(Some(Duration::from_secs(3)))?;
    let mut buffer = [0u8; 10];
    std::io::Read::read_exact(&mut host_side, &mut buffer)?;
    assert_eq!(
        &buffer, b"still here",
        "an established inbound session is not cut by install"
    );
    assert!(fwlog.stop(Signal::SIGINT)?.success());

    host_side.write_all(b"bye")?;
    drop(host_side);
    let mut peer_side = peer_side;
    assert_eq!(
        read_all(&mut peer_side, Duration::from_secs(3))?,
        b"bye",
        "nor by removal"
    );
    Ok(())
}

#[test]
fn a_second_watch_in_the_same_namespace_is_refused() -> Result<()> {
    let net = TestNet::new()?;
    let mut first = Fwlog::watch(&net.host, &[&net.host_if])?;
    let second = fwlog_command(&net.host)
        .args(["watch", &net.host_if])
        .output()?;
    assert!(!second.status.success());
    let message = String::from_utf8_lossy(&second.stderr);
    let pid = first.pid().expect("running").as_raw();
    assert_eq!(
        message.trim(),
        format!(
            "fwlog: another fwlog is already running in this network namespace (pid {pid}): \
             stop it first, or run this one in another namespace"
        )
    );
    // The first one is untouched.
    udp_send(&net.host, addr(PEER_V4, 6000), b"x")?;
    first.expect_event("the first still logs", |e| e["dest_port"] == 6000)?;
    assert!(first.stop(Signal::SIGINT)?.success());
    Ok(())
}

#[test]
fn namespaces_do_not_collide() -> Result<()> {
    let one = TestNet::new()?;
    let two = TestNet::new()?;
    let mut first = Fwlog::watch(&one.host, &[&one.host_if])?;
    let mut second = Fwlog::watch(&two.host, &[&two.host_if])?;
    udp_send(&one.host, addr(PEER_V4, 6001), b"x")?;
    udp_send(&two.host, addr(PEER_V4, 6002), b"x")?;
    first.expect_event("own event", |e| e["dest_port"] == 6001)?;
    second.expect_event("own event", |e| e["dest_port"] == 6002)?;
    let stray: Vec<Value> = first.collect_events(Duration::from_millis(300));
    assert!(
        stray.iter().all(|e| e["dest_port"] != 6002),
        "no event of the other namespace"
    );
    assert!(first.stop(Signal::SIGINT)?.success());
    assert!(
        two.host.pin_dir().exists(),
        "stopping one leaves the other's pins"
    );
    assert!(second.stop(Signal::SIGINT)?.success());
    Ok(())
}

#[test]
fn rules_prints_what_watch_installs_and_changes_nothing() -> Result<()> {
    let net = TestNet::new()?;
    let before = net.host.saved_rules()?;
    let printed = fwlog_command(&net.host)
        .args(["rules", &net.host_if, "--kernel-log", "--prefix", "OY"])
        .output()?;
    assert!(
        printed.status.success(),
        "{}",
        String::from_utf8_lossy(&printed.stderr)
    );
    assert_eq!(
        net.host.saved_rules()?,
        before,
        "fwlog rules changes nothing"
    );
    let printed = String::from_utf8(printed.stdout)?;
    assert!(printed.starts_with("# iptables-restore --noflush\n*filter\n"));
    assert!(printed.contains("# ip6tables-restore --noflush\n*filter\n"));

    let mut fwlog = Fwlog::watch(&net.host, &[&net.host_if, "--kernel-log", "--prefix", "OY"])?;
    let installed = untagged(&net.host.saved_rules()?);
    for line in printed.lines().filter(|l| l.starts_with("-A ")) {
        // iptables-save prints REJECT's default and drops the quotes of the prefix.
        let line = line.replace("-j REJECT", "-j REJECT --reject-with icmp");
        let line = line.replace('"', "").replace("-p tcp --syn", SYN);
        let saved = installed
            .lines()
            .any(|l| l.replace('"', "").starts_with(&line));
        assert!(saved, "printed rule {line:?} is installed:\n{installed}");
    }
    assert!(
        installed.contains("--log-prefix \"[OY-D]:\" --log-level 7"),
        "{installed}"
    );
    assert!(fwlog.stop(Signal::SIGINT)?.success());
    Ok(())
}

#[test]
fn no_rules_pins_programs_and_prints_the_rules() -> Result<()> {
    let net = TestNet::new()?;
    let before = net.host.saved_rules()?;
    let mut fwlog = Fwlog::watch(&net.host, &["--no-rules", &net.host_if])?;
    assert_eq!(net.host.saved_rules()?, before, "no rules installed");
    // Kernels without TCX (before 6.6) also record their netlink filters (tests/tc_netlink.rs).
    let programs: Vec<String> = pins(&net)
        .into_iter()
        .filter(|pin| !pin.starts_with("tc_"))
        .collect();
    assert_eq!(programs, PINS);
    let said = fwlog.stderr_text();
    assert!(
        said.contains("programs pinned, no rules installed"),
        "{said}"
    );
    assert!(said.contains("-m bpf --object-pinned"), "{said}");

    // A rule the user adds by hand, with the printed match, logs through fwlog.
    let pin = format!("{}/verdict_accept_new", net.host.pin_dir().display());
    net.host.output(
        "iptables",
        &[
            "-A",
            "OUTPUT",
            "-p",
            "udp",
            "--dport",
            "6100",
            "-m",
            "conntrack",
            "--ctstate",
            "NEW",
            "-m",
            "bpf",
            "--object-pinned",
            &pin,
        ],
    )?;
    udp_send(&net.host, addr(PEER_V4, 6100), b"x")?;
    let event = fwlog.expect_event("event through a hand-made rule", |e| e["dest_port"] == 6100)?;
    assert_eq!(event["action"], "accept");
    net.host.output("iptables", &["-F", "OUTPUT"])?;
    assert!(fwlog.stop(Signal::SIGINT)?.success());
    assert!(!net.host.pin_dir().exists());
    Ok(())
}

#[test]
fn default_route_interface_is_used_and_named() -> Result<()> {
    let net = TestNet::new()?;
    net.host
        .output("ip", &["route", "add", "default", "via", PEER_V4])?;
    let fwlog = Fwlog::watch(&net.host, &[])?;
    let said = fwlog.stderr_text();
    assert!(
        said.contains(&format!(
            "fwlog: no interface given: using {}, the interface of the default route",
            net.host_if
        )),
        "{said}"
    );
    let rules = net.host.saved_rules()?;
    assert!(
        rules.contains(&format!("-A INPUT -i {} -p tcp", net.host_if)),
        "{rules}"
    );
    Ok(())
}

#[test]
fn losses_are_counted_and_reported_never_silent() -> Result<()> {
    let net = TestNet::new()?;
    // One listening port on the peer, so every datagram is a new outbound flow (its own
    // source port) and nothing answers with ICMP errors.
    let _sink = udp_bind(&net.peer, addr(PEER_V4, 20000))?;
    // 4 KiB holds a few dozen events: with the collector stopped, most of a burst is lost.
    let mut fwlog = Fwlog::watch(&net.host, &["--ring-size", "4K", &net.host_if])?;
    let pid = fwlog.pid().expect("running");
    kill(pid, Signal::SIGSTOP)?;
    const SENT: u64 = 300;
    for _ in 0..SENT {
        udp_send(&net.host, addr(PEER_V4, 20000), b"x")?;
    }
    kill(pid, Signal::SIGCONT)?;
    let lost_line = fwlog.expect_event("a lost line", |e| e["event_type"] == "lost")?;
    let lost = lost_line["count"].as_u64().expect("count");
    assert!(lost > 0 && lost < SENT, "lost {lost}");
    let events = fwlog.collect_events(Duration::from_millis(500));
    let received = events
        .iter()
        .filter(|e| e["event_type"] == "verdict" && e["dest_port"] == 20000)
        .count() as u64;
    let more_lost: u64 = events
        .iter()
        .filter(|e| e["event_type"] == "lost")
        .filter_map(|e| e["count"].as_u64())
        .sum();
    assert_eq!(
        received + lost + more_lost,
        SENT,
        "every datagram is an event or counted as lost"
    );
    assert!(fwlog.stop(Signal::SIGINT)?.success());
    let said = fwlog.stderr_text();
    assert!(
        said.contains(&format!("fwlog: {received} events, ")),
        "{said}"
    );
    assert!(
        said.contains(&format!(", {} lost, ", lost + more_lost)),
        "{said}"
    );
    Ok(())
}
