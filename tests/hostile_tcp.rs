//! TCP flow ends under attack and in quiet times: a forged reset from the wire does not end a
//! flow the kernel keeps, and an established connection that pauses is not reported idle.

use std::{
    io::{Read as _, Write as _},
    net::{Shutdown, TcpListener, TcpStream},
    os::fd::AsRawFd as _,
    time::Duration,
};

use anyhow::{Context as _, Result};
use fwlog_tests::{
    addr,
    fwlog::{is_flow_to, number},
    netns::{HOST_V4, PEER_V4},
    scapy,
    traffic::tcp_listen,
    Fwlog, NetNsGuard, TestNet,
};

/// A connection from `client` to the listener, accepted; the server side reads in the
/// background and returns how many bytes it got once the client shuts down.
fn connect(
    client: &NetNsGuard,
    listener: TcpListener,
    to: std::net::SocketAddr,
) -> Result<(TcpStream, std::thread::JoinHandle<Result<usize>>)> {
    let stream =
        client.enter(move || TcpStream::connect_timeout(&to, Duration::from_secs(3)))??;
    let server = std::thread::spawn(move || -> Result<usize> {
        let (mut conn, _) = listener.accept()?;
        // Patient: under emulation the scapy script alone can outlast 15 s (the server then
        // closed, and the client's shutdown failed with ENOTCONN on 6.1 in qemu).
        conn.set_read_timeout(Some(fwlog_tests::patient(Duration::from_secs(15))))?;
        let mut total = 0;
        let mut buffer = vec![0u8; 65536];
        loop {
            let n = conn.read(&mut buffer)?;
            if n == 0 {
                break;
            }
            total += n;
        }
        Ok(total)
    });
    Ok((stream, server))
}

/// Shuts the client down and waits for the server to have read everything (`expected`).
fn finish(
    mut stream: TcpStream,
    server: std::thread::JoinHandle<Result<usize>>,
    expected: usize,
) -> Result<()> {
    stream.shutdown(Shutdown::Write)?;
    let read = server
        .join()
        .map_err(|_| anyhow::anyhow!("server thread panicked"))??;
    assert_eq!(read, expected, "the connection carried everything");
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest)?;
    Ok(())
}

#[test]
fn a_forged_reset_does_not_end_a_live_flow() -> Result<()> {
    let net = TestNet::new()?;
    let listener = tcp_listen(&net.host, addr(HOST_V4, 8300))?;
    let mut fwlog = Fwlog::watch(&net.host, &["--allow-in", "8300/tcp", &net.host_if])?;
    let (mut stream, server) = connect(&net.peer, listener, addr(HOST_V4, 8300))?;
    stream.write_all(&[b'a'; 1000])?;
    std::thread::sleep(Duration::from_millis(200));
    // The attacker knows the addresses and ports, not the sequence number: the kernel ignores
    // a reset that is not exactly at the next sequence number it expects.
    let client_port = stream.local_addr()?.port();
    let mac = scapy::mac_of(&net.host, &net.host_if)?;
    scapy::run(
        &net.peer,
        &net.peer_if,
        &format!(
            "sendp([Ether(dst={mac:?})/IP(src={PEER_V4:?}, dst={HOST_V4:?})/TCP(sport={client_port}, dport=8300, flags=f, seq=12345 + i) for i, f in enumerate(['R', 'RA', 'R'])], iface=IFACE)"
        ),
    )?;
    std::thread::sleep(Duration::from_millis(200));
    stream.write_all(&[b'b'; 100_000])?;
    finish(stream, server, 101_000)?;
    let record = fwlog.expect_event("the flow's end", |e| is_flow_to(e, 8300))?;
    assert_eq!(record["flow"]["reason"], "fin", "{record}");
    assert!(
        number(&record["flow"]["bytes_toserver"]) >= 101_000,
        "the whole connection: {record}"
    );
    let events = fwlog.collect_events(Duration::from_millis(500));
    assert!(
        !events.iter().any(|e| is_flow_to(e, 8300)),
        "one record: {events:#?}"
    );
    Ok(())
}

#[test]
fn a_real_reset_from_the_peer_ends_the_flow() -> Result<()> {
    let net = TestNet::new()?;
    let listener = tcp_listen(&net.host, addr(HOST_V4, 8301))?;
    let mut fwlog = Fwlog::watch(&net.host, &["--allow-in", "8301/tcp", &net.host_if])?;
    let (mut stream, _server) = connect(&net.peer, listener, addr(HOST_V4, 8301))?;
    stream.write_all(&[b'a'; 1000])?;
    std::thread::sleep(Duration::from_millis(200));
    // SO_LINGER with a zero timeout: close() sends RST, at the sequence number the host expects.
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a plain setsockopt on an open socket with a correctly sized value.
    let set = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as u32,
        )
    };
    assert_eq!(set, 0);
    drop(stream);
    let record = fwlog.expect_event("the reset flow", |e| is_flow_to(e, 8301))?;
    assert_eq!(record["flow"]["reason"], "rst", "{record}");
    Ok(())
}

#[test]
fn an_established_connection_that_pauses_is_not_reported_idle() -> Result<()> {
    let net = TestNet::new()?;
    let listener = tcp_listen(&net.peer, addr(PEER_V4, 8302))?;
    // Sweeps every second; a UDP flow would be idle after 2 s.
    let mut fwlog = Fwlog::watch(&net.host, &["--idle-timeout", "2", &net.host_if])?;
    let (mut stream, server) = connect(&net.host, listener, addr(PEER_V4, 8302))?;
    stream.write_all(&[b'a'; 1000])?;
    std::thread::sleep(Duration::from_secs(4));
    stream.write_all(&[b'b'; 100_000])?;
    finish(stream, server, 101_000)?;
    let record = fwlog.expect_event("the flow's end", |e| is_flow_to(e, 8302))?;
    assert_eq!(record["flow"]["reason"], "fin", "{record}");
    assert!(
        number(&record["flow"]["bytes_toserver"]) >= 101_000,
        "{record}"
    );
    Ok(())
}

#[test]
fn established_tcp_has_an_idle_timeout_of_its_own() -> Result<()> {
    let net = TestNet::new()?;
    let listener = tcp_listen(&net.peer, addr(PEER_V4, 8303))?;
    let mut fwlog = Fwlog::watch(
        &net.host,
        &[
            "--idle-timeout",
            "60",
            "--tcp-idle-timeout",
            "2",
            &net.host_if,
        ],
    )?;
    let (mut stream, _server) = connect(&net.host, listener, addr(PEER_V4, 8303))?;
    stream.write_all(&[b'a'; 1000])?;
    let record = fwlog
        .expect_event("the quiet connection's end", |e| is_flow_to(e, 8303))
        .context("--tcp-idle-timeout 2 ends a quiet established connection")?;
    assert_eq!(record["flow"]["reason"], "idle", "{record}");
    Ok(())
}
