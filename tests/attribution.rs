//! Who and what: the process behind outbound connections, names from DNS answers on the wire,
//! and the Community ID shared by a connection's lines.

use std::{net::UdpSocket, process::Stdio, time::Duration};

use anyhow::{Context as _, Result};
use fwlog_tests::{
    addr,
    netns::{HOST_V4, PEER_V4},
    traffic::{tcp_connect, tcp_listen, udp_bind},
    Fwlog, TestNet,
};
use serde_json::Value;
use simple_dns::{rdata, Name, Packet, Question, ResourceRecord, CLASS, QCLASS, QTYPE, TYPE};

/// `bash -c SCRIPT` inside the host namespace; nsenter execs bash, so its pid is the child's.
fn bash_in(net: &TestNet, script: &str) -> Result<std::process::Child> {
    net.host
        .command("bash")
        .args(["-c", script])
        .stdin(Stdio::null())
        .spawn()
        .context("starting bash")
}

#[test]
fn outbound_connections_name_their_process() -> Result<()> {
    let net = TestNet::new()?;
    let _listener = tcp_listen(&net.peer, addr(PEER_V4, 8080))?;
    let mut fwlog = Fwlog::watch(&net.host, &[&net.host_if])?;

    // Two programs to the same destination; each stays alive a moment so /proc can be read
    // (`; true` keeps bash from exec'ing sleep, which would change its executable).
    let script = format!("exec 3<>/dev/tcp/{PEER_V4}/8080; sleep 2; true");
    let mut first = bash_in(&net, &script)?;
    let first_pid = first.id();
    let event = fwlog.expect_event("the first connect", |e| {
        e["event_type"] == "verdict" && e["dest_port"] == 8080 && e["process"]["pid"] == first_pid
    })?;
    let process = &event["process"];
    assert_eq!(process["comm"], "bash");
    assert!(
        process["exe"]
            .as_str()
            .is_some_and(|exe| exe.ends_with("/bash")),
        "{process}"
    );
    assert_eq!(process["uid"], 0);
    assert_eq!(process["user"], "root");

    let mut second = bash_in(&net, &script)?;
    let second_pid = second.id();
    assert_ne!(first_pid, second_pid);
    fwlog.expect_event("the second connect, its own pid", |e| {
        e["event_type"] == "verdict" && e["dest_port"] == 8080 && e["process"]["pid"] == second_pid
    })?;
    first.wait()?;
    second.wait()?;
    // Nobody accepts on the peer, so the flows stay open: stopping fwlog reports them.
    assert!(fwlog.stop(nix::sys::signal::Signal::SIGINT)?.success());
    let flow = fwlog.expect_event("the first flow, with its process", |e| {
        e["event_type"] == "flow" && e["process"]["pid"] == first_pid
    })?;
    assert_eq!(flow["process"]["comm"], "bash");
    Ok(())
}

#[test]
fn unconnected_udp_sendto_is_attributed() -> Result<()> {
    let net = TestNet::new()?;
    let sink = udp_bind(&net.peer, addr(PEER_V4, 5353))?;
    let mut fwlog = Fwlog::watch(&net.host, &[&net.host_if])?;
    let (pid, tid) = net.host.enter(|| -> Result<(u32, i32)> {
        // A thread name of our own, so the event's `comm` can be checked exactly.
        let name = c"fwlog-sendto";
        // SAFETY: PR_SET_NAME with a NUL-terminated string of at most 16 bytes.
        unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr()) };
        let socket = UdpSocket::bind("0.0.0.0:0")?;
        socket.send_to(b"unconnected", addr(PEER_V4, 5353))?;
        Ok((std::process::id(), nix::unistd::gettid().as_raw()))
    })??;
    let mut buffer = [0u8; 32];
    sink.set_read_timeout(Some(Duration::from_secs(2)))?;
    assert_eq!(sink.recv(&mut buffer)?, 11);
    let event = fwlog.expect_event("the datagram", |e| {
        e["event_type"] == "verdict" && e["dest_port"] == 5353
    })?;
    assert_eq!(
        event["process"]["pid"], pid,
        "the process (thread group), not thread {tid}"
    );
    assert_eq!(event["process"]["comm"], "fwlog-sendto");
    Ok(())
}

/// A one-question DNS server on the peer: answers `name` with `answer`, once.
fn serve_dns(socket: UdpSocket, answer: std::net::Ipv4Addr) -> std::thread::JoinHandle<Result<()>> {
    std::thread::spawn(move || -> Result<()> {
        socket.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut buffer = [0u8; 512];
        let (n, client) = socket.recv_from(&mut buffer)?;
        let query = Packet::parse(&buffer[..n])?;
        let question = query.questions.first().context("a question")?.clone();
        let mut reply = Packet::new_reply(query.id());
        reply.answers.push(ResourceRecord::new(
            question.qname.clone(),
            CLASS::IN,
            300,
            rdata::RData::A(rdata::A {
                address: u32::from(answer),
            }),
        ));
        reply.questions.push(question);
        socket.send_to(&reply.build_bytes_vec()?, client)?;
        Ok(())
    })
}

#[test]
fn a_dns_answer_names_the_next_connection_and_community_ids_match() -> Result<()> {
    let net = TestNet::new()?;
    let _listener = tcp_listen(&net.peer, addr(PEER_V4, 8080))?;
    let mut fwlog = Fwlog::watch(&net.host, &[&net.host_if])?;
    // Started once fwlog runs: the server waits a bounded time for its one question.
    let server = serve_dns(udp_bind(&net.peer, addr(PEER_V4, 53))?, PEER_V4.parse()?);

    let resolver = udp_bind(&net.host, addr(HOST_V4, 0))?;
    let mut query = Packet::new_query(4242);
    query.questions.push(Question::new(
        Name::new_unchecked("web.example.test"),
        QTYPE::TYPE(TYPE::A),
        QCLASS::CLASS(CLASS::IN),
        false,
    ));
    resolver.send_to(&query.build_bytes_vec()?, addr(PEER_V4, 53))?;
    resolver.set_read_timeout(Some(Duration::from_secs(3)))?;
    let mut buffer = [0u8; 512];
    let n = resolver.recv(&mut buffer)?;
    assert!(
        Packet::parse(&buffer[..n])?.answers.len() == 1,
        "the resolver answered"
    );
    server
        .join()
        .map_err(|_| anyhow::anyhow!("DNS server panicked"))??;

    assert!(tcp_connect(
        &net.host,
        addr(PEER_V4, 8080),
        Duration::from_secs(3)
    )?);
    let verdict = fwlog.expect_event("the connection after the lookup", |e| {
        e["event_type"] == "verdict" && e["dest_port"] == 8080
    })?;
    assert_eq!(verdict["dest_host"], "web.example.test");
    assert!(
        verdict.get("src_host").is_none(),
        "nobody asked for our own name"
    );
    let id = verdict["community_id"].as_str().context("community_id")?;
    assert!(id.starts_with("1:") && id.len() == 30, "{id}");
    // Nobody accepts on the peer, so the flow stays open: stopping fwlog reports it.
    assert!(fwlog.stop(nix::sys::signal::Signal::SIGINT)?.success());
    let flow = fwlog.expect_event("its flow", |e| {
        e["event_type"] == "flow" && e["dest_port"] == 8080
    })?;
    assert_eq!(flow["dest_host"], "web.example.test");
    assert_eq!(
        flow["community_id"], id,
        "the verdict and the flow join on the Community ID"
    );
    Ok(())
}

#[test]
fn no_names_and_no_process_turn_them_off() -> Result<()> {
    let net = TestNet::new()?;
    let _listener = tcp_listen(&net.peer, addr(PEER_V4, 8080))?;
    let mut fwlog = Fwlog::watch(&net.host, &["--no-process", "--no-names", &net.host_if])?;
    let mut child = bash_in(&net, &format!("exec 3<>/dev/tcp/{PEER_V4}/8080"))?;
    child.wait()?;
    let event: Value = fwlog.expect_event("the connect", |e| {
        e["event_type"] == "verdict" && e["dest_port"] == 8080
    })?;
    assert!(event.get("process").is_none());
    Ok(())
}

#[test]
fn an_accepted_inbound_connection_names_its_listener() -> Result<()> {
    let net = TestNet::new()?;
    let listener = tcp_listen(&net.host, addr(HOST_V4, 8022))?;
    let mut fwlog = Fwlog::watch(&net.host, &["--allow-in", "8022/tcp", &net.host_if])?;
    assert!(tcp_connect(
        &net.peer,
        addr(HOST_V4, 8022),
        Duration::from_secs(3)
    )?);
    let _accepted = listener.accept()?;
    let event = fwlog.expect_event("the accepted connection", |e| {
        e["event_type"] == "verdict" && e["dest_port"] == 8022
    })?;
    assert_eq!(event["action"], "accept");
    assert_eq!(event["direction"], "inbound");
    assert_eq!(
        event["process"]["pid"],
        std::process::id(),
        "this test process holds the listening socket"
    );
    Ok(())
}
