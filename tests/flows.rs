//! The flow table end to end: how each flow ended and what it carried, in the JSON `flow`
//! lines (TCP, UDP, IPv6, fragments, VLANs, malformed frames).

use std::{net::TcpStream, os::fd::AsRawFd as _, time::Duration};

use anyhow::{Context as _, Result};
use fwlog_tests::{
    addr,
    fwlog::{is_flow_to, number},
    netns::{HOST_V4, HOST_V6, PEER_V4, PEER_V6},
    traffic::{tcp_listen, tcp_transfer, udp_bind, udp_send},
    Fwlog, NetNsGuard, TestNet,
};
use nix::sys::signal::Signal;

#[test]
fn a_known_transfer_ends_with_fin_and_exact_byte_counts() -> Result<()> {
    let net = TestNet::new()?;
    let listener = tcp_listen(&net.peer, addr(PEER_V4, 8080))?;
    let mut fwlog = Fwlog::watch(&net.host, &[&net.host_if])?;
    const PAYLOAD: u64 = 1_000_000;
    let retransmitted_before = retransmitted_segments(&net.host)?;
    tcp_transfer(&net.host, listener, addr(PEER_V4, 8080), PAYLOAD as usize)?;
    let retransmitted = retransmitted_segments(&net.host)? - retransmitted_before;
    let record = fwlog.expect_event("the flow's end", |e| is_flow_to(e, 8080))?;
    let f = &record["flow"];
    assert_eq!(f["reason"], "fin");
    assert_eq!(record["direction"], "outbound");
    assert_eq!(
        record["src_ip"], HOST_V4,
        "src is the side that opened the flow"
    );
    assert_eq!(record["dest_ip"], PEER_V4);
    assert_eq!(record["in_iface"], net.host_if.as_str());
    assert_eq!(record["proto"], "tcp");
    assert_eq!(
        record["action"], "accept",
        "the OUTPUT verdict reached the flow"
    );
    assert_eq!(record["tcp_flags"], "SAFP");
    // Every IP packet carries a 20-byte IPv4 header and a 20–60-byte TCP header (32 with the
    // timestamps Linux sends); segmentation offload may merge segments, never split headers.
    // A segment the stack sent again (a busy machine) is counted again, up to 64 KiB with
    // offload: allowed for only when the namespace's stack says it retransmitted.
    let (pkts, bytes) = (number(&f["pkts_toserver"]), number(&f["bytes_toserver"]));
    let headers = bytes - PAYLOAD;
    assert!(
        headers >= 40 * pkts && headers <= 80 * pkts + retransmitted * 65_536,
        "{pkts} packets, {bytes} bytes, {retransmitted} segments retransmitted"
    );
    let (back_pkts, back_bytes) = (number(&f["pkts_toclient"]), number(&f["bytes_toclient"]));
    assert!(back_pkts >= 2, "SYN-ACK and FIN at least");
    assert!(
        back_bytes >= 40 * back_pkts && back_bytes <= 80 * back_pkts,
        "only headers came back: {back_bytes}"
    );
    assert!(f["duration_s"]
        .as_f64()
        .is_some_and(|d| (0.0..5.0).contains(&d)));
    assert!(f["start"].as_str() <= f["end"].as_str());
    Ok(())
}

#[test]
fn a_reset_connection_ends_with_rst() -> Result<()> {
    let net = TestNet::new()?;
    let listener = tcp_listen(&net.peer, addr(PEER_V4, 8081))?;
    let mut fwlog = Fwlog::watch(&net.host, &[&net.host_if])?;
    let stream = net
        .host
        .enter(|| TcpStream::connect(addr(PEER_V4, 8081)))??;
    let (_server_side, _) = listener.accept()?;
    // SO_LINGER with a zero timeout: close() sends RST instead of FIN.
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
    let record = fwlog.expect_event("the reset flow", |e| is_flow_to(e, 8081))?;
    assert_eq!(record["flow"]["reason"], "rst");
    assert!(record["tcp_flags"]
        .as_str()
        .is_some_and(|f| f.contains('R')));
    Ok(())
}

#[test]
fn udp_then_silence_ends_idle_and_an_icmp_error_joins_its_flow() -> Result<()> {
    let net = TestNet::new()?;
    let sink = udp_bind(&net.peer, addr(PEER_V4, 5300))?;
    let mut fwlog = Fwlog::watch(&net.host, &["--idle-timeout", "2", &net.host_if])?;
    let client = udp_bind(&net.host, addr("0.0.0.0", 0))?;
    client.send_to(b"ping", addr(PEER_V4, 5300))?;
    let from = client.local_addr()?;
    let mut buffer = [0u8; 16];
    let (n, client_addr) = sink.recv_from(&mut buffer)?;
    sink.send_to(&buffer[..n], client_addr)?;
    client.set_read_timeout(Some(Duration::from_secs(2)))?;
    assert_eq!(client.recv(&mut buffer)?, 4, "the answer came back");
    // Nobody listens on port 9: the answer is an ICMP port unreachable.
    udp_send(&net.host, addr(PEER_V4, 9), b"anyone?")?;

    let exchange = fwlog.expect_event("the idle UDP flow", |e| is_flow_to(e, 5300))?;
    assert_eq!(exchange["flow"]["reason"], "idle");
    assert_eq!(exchange["src_port"], from.port());
    assert_eq!(number(&exchange["flow"]["pkts_toserver"]), 1);
    assert_eq!(number(&exchange["flow"]["bytes_toserver"]), 20 + 8 + 4);
    assert_eq!(number(&exchange["flow"]["pkts_toclient"]), 1);
    assert_eq!(number(&exchange["flow"]["bytes_toclient"]), 20 + 8 + 4);

    let refused = fwlog.expect_event("the refused UDP flow", |e| is_flow_to(e, 9))?;
    assert_eq!(
        refused["flow"]["icmp_error_type"], 3,
        "the ICMP error joined the UDP flow"
    );
    assert_eq!(refused["flow"]["icmp_error_code"], 3);
    assert_eq!(number(&refused["flow"]["pkts_toclient"]), 1);
    let events = fwlog.collect_events(Duration::from_millis(500));
    assert!(
        !events
            .iter()
            .any(|e| e["event_type"] == "flow" && e["proto"] == "icmp"),
        "no flow of its own for the ICMP error: {events:#?}"
    );
    Ok(())
}

#[test]
fn ipv6_flow() -> Result<()> {
    let net = TestNet::new()?;
    let listener = tcp_listen(&net.peer, addr(PEER_V6, 8443))?;
    let mut fwlog = Fwlog::watch(&net.host, &[&net.host_if])?;
    tcp_transfer(&net.host, listener, addr(PEER_V6, 8443), 10_000)?;
    let record = fwlog.expect_event("the IPv6 flow", |e| is_flow_to(e, 8443))?;
    assert_eq!(record["ip_version"], 6);
    assert_eq!(record["src_ip"], HOST_V6);
    assert_eq!(record["flow"]["reason"], "fin");
    let (pkts, bytes) = (
        number(&record["flow"]["pkts_toserver"]),
        number(&record["flow"]["bytes_toserver"]),
    );
    let headers = bytes - 10_000;
    assert!(
        headers >= 60 * pkts && headers <= 100 * pkts,
        "40-byte IPv6 headers: {pkts} {bytes}"
    );
    Ok(())
}

#[test]
fn ipv4_options_and_fragments_are_counted_right() -> Result<()> {
    let net = TestNet::new()?;
    let sink = udp_bind(&net.peer, addr(PEER_V4, 5400))?;
    let frag_sink = udp_bind(&net.peer, addr(PEER_V4, 5401))?;
    let mut fwlog = Fwlog::watch(&net.host, &["--idle-timeout", "2", &net.host_if])?;

    // IP options (4 bytes: NOP NOP NOP EOL) move the UDP header.
    let with_options = udp_bind(&net.host, addr("0.0.0.0", 0))?;
    let options = [1u8, 1, 1, 0];
    // SAFETY: setsockopt with a buffer of the given length.
    let set = unsafe {
        libc::setsockopt(
            with_options.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_OPTIONS,
            options.as_ptr().cast(),
            4,
        )
    };
    assert_eq!(set, 0, "IP_OPTIONS: {}", std::io::Error::last_os_error());
    with_options.send_to(b"opts", addr(PEER_V4, 5400))?;
    let mut buffer = vec![0u8; 4096];
    assert_eq!(sink.recv(&mut buffer)?, 4);

    // 3000 bytes over a 1500-byte MTU: three fragments, only the first with ports.
    udp_send(&net.host, addr(PEER_V4, 5401), &[7u8; 3000])?;
    assert_eq!(frag_sink.recv(&mut buffer)?, 3000);

    let opts = fwlog.expect_event("the flow with IP options", |e| is_flow_to(e, 5400))?;
    assert_eq!(
        number(&opts["flow"]["bytes_toserver"]),
        24 + 8 + 4,
        "IHL 6, UDP, payload"
    );
    let fragmented = fwlog.expect_event("the fragmented flow", |e| is_flow_to(e, 5401))?;
    assert_eq!(number(&fragmented["flow"]["pkts_toserver"]), 3);
    assert_eq!(
        number(&fragmented["flow"]["bytes_toserver"]),
        3 * 20 + 8 + 3000
    );
    Ok(())
}

/// 802.1Q and QinQ frames, sent raw from the peer (this kernel has no VLAN devices, and the
/// parser must not need them): the flow is found behind the tags. No VLAN device takes the
/// frames, so the stack drops them and they start no flow; they answer flows the host opened.
#[test]
fn vlan_tagged_frames_are_parsed() -> Result<()> {
    let net = TestNet::new()?;
    let mut fwlog = Fwlog::watch(&net.host, &["--events", "flow", &net.host_if])?;
    let mut sinks = Vec::new();
    for port in [4000, 4001] {
        sinks.push(udp_bind(&net.peer, addr(PEER_V4, port + 1500))?);
        let socket = udp_bind(&net.host, addr(HOST_V4, port))?;
        socket.send_to(b"opens", addr(PEER_V4, port + 1500))?;
    }
    let udp = |src_port: u16, dst_port: u16| {
        let mut p = vec![
            0x45, 0, 0, 34, 0, 1, 0, 0, 64, 17, 0, 0, 10, 200, 0, 2, 10, 200, 0, 1,
        ];
        p.extend_from_slice(&src_port.to_be_bytes());
        p.extend_from_slice(&dst_port.to_be_bytes());
        p.extend_from_slice(&[0, 14, 0, 0, b't', b'a', b'g', b'g', b'e', b'd']);
        p
    };
    let mut single = vec![0x81, 0x00, 0x00, 0x07, 0x08, 0x00];
    single.extend(udp(5500, 4000));
    let mut double = vec![0x88, 0xa8, 0x00, 0x64, 0x81, 0x00, 0x00, 0x07, 0x08, 0x00];
    double.extend(udp(5501, 4001));
    let peer_if = net.peer_if.clone();
    net.peer
        .enter(move || send_frames(&peer_if, &[single, double]))??;
    std::thread::sleep(Duration::from_millis(200));
    assert!(fwlog.stop(Signal::SIGINT)?.success());
    let events = fwlog.collect_events(Duration::from_millis(300));
    for port in [5500, 5501] {
        let record = events
            .iter()
            .find(|e| is_flow_to(e, port))
            .with_context(|| format!("no flow to port {port}: {events:#?}"))?;
        assert_eq!(record["in_iface"], net.host_if.as_str());
        assert_eq!(record["direction"], "outbound");
        assert_eq!(record["proto"], "udp");
        assert_eq!(number(&record["flow"]["pkts_toclient"]), 1, "{record}");
        assert_eq!(
            number(&record["flow"]["bytes_toclient"]),
            34,
            "IP bytes, tags not counted"
        );
    }
    Ok(())
}

/// Raw Ethernet frames from the peer: broken headers must be counted, never crash fwlog.
#[test]
fn malformed_packets_are_counted_not_misread() -> Result<()> {
    let net = TestNet::new()?;
    let mut fwlog = Fwlog::watch(&net.host, &["--stats", "1", &net.host_if])?;
    let peer_if = net.peer_if.clone();
    let sent = net.peer.enter(move || send_malformed_frames(&peer_if))??;
    let stats = fwlog.expect_event("stats counting them", |e| {
        e["event_type"] == "stats" && e["malformed"].as_u64().is_some_and(|m| m >= sent)
    })?;
    assert!(number(&stats["malformed"]) >= sent);
    // Still working: a normal flow afterwards is tracked.
    let sink = udp_bind(&net.peer, addr(PEER_V4, 5600))?;
    udp_send(&net.host, addr(PEER_V4, 5600), b"ok")?;
    let mut buffer = [0u8; 8];
    assert_eq!(sink.recv(&mut buffer)?, 2);
    assert!(
        fwlog.stop(Signal::SIGINT)?.success(),
        "{}",
        fwlog.stderr_text()
    );
    fwlog.expect_event("the normal flow, flushed at exit", |e| is_flow_to(e, 5600))?;
    Ok(())
}

/// Sends three broken frames on `interface`: a truncated TCP header, IPv4 IHL 4, and an IPv6
/// extension chain that runs past the end. Returns how many.
fn send_malformed_frames(interface: &str) -> Result<u64> {
    let ipv4 = |ihl: u8, proto: u8, payload: &[u8]| {
        let total = (20 + payload.len()) as u16;
        let mut p = vec![0x08, 0x00, 0x40 | ihl, 0];
        p.extend_from_slice(&total.to_be_bytes());
        p.extend_from_slice(&[0, 1, 0, 0, 64, proto, 0, 0, 10, 200, 0, 2, 10, 200, 0, 1]);
        p.extend_from_slice(payload);
        p
    };
    let mut ipv6_bad_chain = vec![0x86, 0xdd, 0x60, 0, 0, 0, 0, 8, 0, 64];
    ipv6_bad_chain.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    ipv6_bad_chain.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    // Hop-by-hop claiming 2 KiB, then the packet ends.
    ipv6_bad_chain.extend_from_slice(&[6, 255, 0, 0, 0, 0, 0, 0]);
    let frames = [
        ipv4(5, 6, &[0x9c, 0x40, 0, 22, 0, 0]),
        ipv4(4, 17, &[0; 8]),
        ipv6_bad_chain,
    ];
    send_frames(interface, &frames)?;
    Ok(frames.len() as u64)
}

/// Sends Ethernet frames (broadcast destination) whose bytes from the ethertype on are given.
fn send_frames(interface: &str, frames: &[Vec<u8>]) -> Result<()> {
    let index = nix::net::if_::if_nametoindex(interface)?;
    // SAFETY: plain socket call.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
    anyhow::ensure!(
        fd >= 0,
        "AF_PACKET socket: {}",
        std::io::Error::last_os_error()
    );
    for tail in frames {
        let mut frame = vec![0xff; 6];
        frame.extend_from_slice(&[0x02, 0, 0, 0, 0, 1]);
        frame.extend_from_slice(tail);
        // SAFETY: sockaddr_ll zeroed then filled; sendto with matching lengths.
        let sent = unsafe {
            let mut to: libc::sockaddr_ll = std::mem::zeroed();
            to.sll_family = libc::AF_PACKET as u16;
            to.sll_ifindex = index as i32;
            to.sll_halen = 6;
            libc::sendto(
                fd,
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&to as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        anyhow::ensure!(
            sent == frame.len() as isize,
            "sendto: {}",
            std::io::Error::last_os_error()
        );
    }
    // SAFETY: closing the socket made above.
    unsafe { libc::close(fd) };
    Ok(())
}

/// TCP segments the stack of `netns` retransmitted so far (`RetransSegs`, /proc/net/snmp).
fn retransmitted_segments(netns: &NetNsGuard) -> Result<u64> {
    let snmp = netns.output("cat", &["/proc/net/snmp"])?;
    let mut tcp = snmp.lines().filter(|line| line.starts_with("Tcp:"));
    let (Some(names), Some(values)) = (tcp.next(), tcp.next()) else {
        anyhow::bail!("no Tcp lines in /proc/net/snmp");
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(name, _)| *name == "RetransSegs")
        .and_then(|(_, value)| value.parse().ok())
        .context("no RetransSegs in /proc/net/snmp")
}
