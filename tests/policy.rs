//! Policies and safety: allowed ports, reject, outbound drop, loopback untouched, the SSH guard.

use std::time::Duration;

use anyhow::Result;
use fwlog_tests::{
    addr,
    fwlog::fwlog_command,
    netns::{HOST_V4, PEER_V4},
    traffic::{tcp_connect, tcp_listen},
    Fwlog, TestNet,
};

const NO_ANSWER: Duration = Duration::from_millis(1500);

#[test]
fn an_allowed_port_is_logged_and_accepted_while_others_are_dropped() -> Result<()> {
    let net = TestNet::new()?;
    let _ssh = tcp_listen(&net.host, addr(HOST_V4, 22))?;
    let _telnet = tcp_listen(&net.host, addr(HOST_V4, 23))?;
    let mut fwlog = Fwlog::watch(&net.host, &["--allow-in", "22/tcp", &net.host_if])?;

    assert!(
        tcp_connect(&net.peer, addr(HOST_V4, 22), Duration::from_secs(3))?,
        "22 is allowed"
    );
    let allowed = fwlog.expect_event("the allowed connection", |e| {
        e["event_type"] == "verdict" && e["dest_port"] == 22
    })?;
    assert_eq!(allowed["action"], "accept");
    assert_eq!(allowed["chain"], "LOG_AND_ACCEPT");
    assert_eq!(allowed["direction"], "inbound");

    assert!(
        !tcp_connect(&net.peer, addr(HOST_V4, 23), NO_ANSWER)?,
        "23 is dropped"
    );
    let dropped = fwlog.expect_event("the dropped connection", |e| {
        e["event_type"] == "verdict" && e["dest_port"] == 23
    })?;
    assert_eq!(dropped["action"], "drop");
    Ok(())
}

#[test]
fn inbound_reject_answers_and_logs_reject() -> Result<()> {
    let net = TestNet::new()?;
    let _listener = tcp_listen(&net.host, addr(HOST_V4, 8000))?;
    let mut fwlog = Fwlog::watch(&net.host, &["--inbound", "reject", &net.host_if])?;
    let refused = tcp_connect(&net.peer, addr(HOST_V4, 8000), Duration::from_secs(3));
    assert!(refused.is_err(), "REJECT answers at once: {refused:?}");
    let event = fwlog.expect_event("the rejected connection", |e| {
        e["event_type"] == "verdict" && e["dest_port"] == 8000
    })?;
    assert_eq!(event["action"], "reject");
    assert_eq!(event["chain"], "LOG_AND_REJECT");
    Ok(())
}

#[test]
fn outbound_drop_blocks_and_logs_but_loopback_is_untouched() -> Result<()> {
    let net = TestNet::new()?;
    let _peer = tcp_listen(&net.peer, addr(PEER_V4, 8080))?;
    let _local = tcp_listen(&net.host, addr("127.0.0.1", 8081))?;
    let mut fwlog = Fwlog::watch(&net.host, &["--outbound", "drop", &net.host_if])?;
    assert!(!tcp_connect(&net.host, addr(PEER_V4, 8080), NO_ANSWER)?);
    let event = fwlog.expect_event("the dropped outbound connection", |e| {
        e["event_type"] == "verdict" && e["dest_port"] == 8080
    })?;
    assert_eq!(event["action"], "drop");
    assert_eq!(event["direction"], "outbound");
    assert!(
        tcp_connect(&net.host, addr("127.0.0.1", 8081), Duration::from_secs(3))?,
        "loopback is never touched"
    );
    Ok(())
}

#[test]
fn the_ssh_guard_refuses_to_lock_the_user_out() -> Result<()> {
    let net = TestNet::new()?;
    let before = net.host.saved_rules()?;
    // As if this session came in over SSH to the host's address on the watched interface.
    let session = format!("{PEER_V4} 50000 {HOST_V4} 22");
    let refused = fwlog_command(&net.host)
        .env("SSH_CONNECTION", &session)
        .args(["watch", &net.host_if])
        .output()?;
    assert!(!refused.status.success());
    let message = String::from_utf8(refused.stderr)?;
    assert_eq!(message.lines().count(), 1, "{message}");
    assert!(
        message.starts_with("fwlog: this SSH session reaches 10.200.0.1 port 22 on "),
        "{message}"
    );
    assert!(message.contains("`--allow-in 22/tcp`"), "{message}");
    assert_eq!(net.host.saved_rules()?, before, "nothing installed");
    assert!(!net.host.pin_dir().exists(), "no pins left");

    let env = [("SSH_CONNECTION", session.as_str())];
    for args in [
        vec!["--allow-in", "22/tcp", &net.host_if],
        vec!["--force", &net.host_if],
    ] {
        let mut fwlog = Fwlog::watch_with_env(&net.host, &args, &env)?;
        assert!(
            fwlog.stop(nix::sys::signal::Signal::SIGINT)?.success(),
            "{args:?}"
        );
    }
    assert_eq!(net.host.saved_rules()?, before);
    Ok(())
}
