//! The small-packet stream: one UDP flow that the host opens, answered by the peer with
//! 60-byte frames (64 on an Ethernet wire, its FCS included) as fast as AF_PACKET + sendmmsg
//! goes, for a fixed time. Every frame is the same datagram of an established flow: conntrack
//! finds its entry, fwlog's tc program its flow, and no rule sees it as new.
//!
//! As in the flood, the host's receive path runs in the sending thread's softirq, so its cost
//! is what bounds the rate.

use std::{
    net::{SocketAddrV4, UdpSocket},
    path::Path,
    sync::atomic::{AtomicBool, Ordering},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};

use crate::bench::{
    generator::{write_packet, Endpoints, Proto},
    measure::task_cpu_ticks,
    netns::{BenchNet, NetNsGuard, HOST_ADDR, PEER_ADDR},
    packet_socket::{PacketSocket, FRAME_CAP},
};

/// How long the host's opening datagram may take to reach the peer.
const OPEN_TIMEOUT: Duration = Duration::from_secs(2);

/// The flow's two sockets, open for the run: the host's, which opened the flow (and whose
/// receive queue overflows, as an application that cannot keep up would let it), and the
/// peer's, which took the opening datagram.
pub struct StreamFlow {
    _host: UdpSocket,
    _peer: UdpSocket,
    /// The stream's direction: from the peer to the host.
    pub ends: Endpoints,
}

impl StreamFlow {
    /// Opens the flow from the host side (through OUTPUT: conntrack and fwlog see an outbound
    /// flow start) and waits until its first datagram has reached the peer.
    pub fn open(net: &BenchNet, host_port: u16, peer_port: u16) -> Result<Self> {
        let peer_addr = SocketAddrV4::new(PEER_ADDR, peer_port);
        let host_addr = SocketAddrV4::new(HOST_ADDR, host_port);
        let peer = join(net.peer.spawn_inside(move || {
            let socket =
                UdpSocket::bind(peer_addr).with_context(|| format!("binding {peer_addr}"))?;
            socket
                .set_read_timeout(Some(OPEN_TIMEOUT))
                .context("setting a read timeout")?;
            Ok(socket)
        })?)?;
        let host = join(net.host.spawn_inside(move || {
            let socket =
                UdpSocket::bind(host_addr).with_context(|| format!("binding {host_addr}"))?;
            socket
                .connect(peer_addr)
                .with_context(|| format!("connecting {host_addr} to {peer_addr}"))?;
            socket
                .send(b"fwlog bench: stream opened")
                .context("sending the stream's first datagram")?;
            Ok(socket)
        })?)?;
        let mut buffer = [0u8; 64];
        peer.recv(&mut buffer).with_context(|| {
            format!("the host's first datagram did not reach {peer_addr} within {OPEN_TIMEOUT:?}")
        })?;
        Ok(StreamFlow {
            _host: host,
            _peer: peer,
            ends: Endpoints {
                src: PEER_ADDR,
                src_port: peer_port,
                dst: HOST_ADDR,
                dst_port: host_port,
            },
        })
    }
}

fn join<T>(thread: JoinHandle<Result<T>>) -> Result<T> {
    match thread.join() {
        Ok(result) => result,
        Err(_) => bail!("a thread of the stream's set-up panicked"),
    }
}

/// What the sender did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamReport {
    /// Frames the kernel accepted.
    pub sent: u64,
    /// Frames refused for want of buffers.
    pub refused: u64,
    pub elapsed: Duration,
    /// The sending thread's CPU ticks, the host's receive softirq included.
    pub cpu_ticks: u64,
}

/// Sends the stream's datagram from `peer` out of `peer_if` for `duration`, `batch` frames per
/// sendmmsg.
pub fn send(
    peer: &NetNsGuard,
    peer_if: &str,
    ends: Endpoints,
    duration: Duration,
    batch: usize,
    interrupted: &'static AtomicBool,
) -> Result<StreamReport> {
    let peer_if = peer_if.to_owned();
    join(peer.spawn_inside(move || {
        let socket = PacketSocket::open(&peer_if)?;
        let mut frame = [0u8; FRAME_CAP];
        let len = write_packet(&mut frame, Proto::Udp, ends, 0);
        let batch = batch.max(1);
        let frames = vec![frame; batch];
        let lens = vec![len; batch];
        let stat = Path::new("/proc/thread-self/stat");
        let cpu_before = task_cpu_ticks(stat)?;
        let start = Instant::now();
        let (mut sent, mut refused) = (0, 0);
        while start.elapsed() < duration && !interrupted.load(Ordering::Relaxed) {
            let (accepted, skipped) = socket.send_all(&frames, &lens)?;
            sent += accepted;
            refused += skipped;
        }
        Ok(StreamReport {
            sent,
            refused,
            elapsed: start.elapsed(),
            cpu_ticks: task_cpu_ticks(stat)?.saturating_sub(cpu_before),
        })
    })?)
}

/// The UDP counters of a namespace that tell whether the stream reached the socket layer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UdpCounters {
    /// Datagrams queued to a socket.
    pub in_datagrams: u64,
    /// Datagrams that found their socket but were not queued (its receive buffer was full:
    /// RcvbufErrors is a part of it).
    pub in_errors: u64,
    /// Datagrams to a port without a socket.
    pub no_ports: u64,
}

impl UdpCounters {
    pub fn read(netns: &NetNsGuard) -> Result<Self> {
        let snmp = netns.output("cat", &["/proc/net/snmp"])?;
        parse_udp_counters(&snmp).with_context(|| {
            format!(
                "no Udp: InDatagrams/NoPorts/InErrors in {}'s /proc/net/snmp",
                netns.name()
            )
        })
    }

    /// Datagrams that reached a socket since `earlier`, queued or not.
    pub fn reached_socket_since(self, earlier: UdpCounters) -> u64 {
        (self.in_datagrams + self.in_errors)
            .saturating_sub(earlier.in_datagrams + earlier.in_errors)
    }
}

/// The `Udp:` header and value lines of /proc/net/snmp.
pub fn parse_udp_counters(snmp: &str) -> Option<UdpCounters> {
    let mut lines = snmp.lines().filter(|line| line.starts_with("Udp: "));
    let names: Vec<&str> = lines.next()?.split_whitespace().skip(1).collect();
    let values: Vec<&str> = lines.next()?.split_whitespace().skip(1).collect();
    let field = |wanted: &str| -> Option<u64> {
        let index = names.iter().position(|name| *name == wanted)?;
        values.get(index)?.parse().ok()
    };
    Some(UdpCounters {
        in_datagrams: field("InDatagrams")?,
        in_errors: field("InErrors")?,
        no_ports: field("NoPorts")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::generator::checksum;

    #[test]
    fn udp_counters_from_snmp() {
        let snmp = "\
Ip: Forwarding DefaultTTL InReceives
Ip: 2 64 1000
Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors
Udp: 120 3 880 1 880 0 0 0 0
UdpLite: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors
UdpLite: 0 0 0 0 0 0 0 0 0
";
        let counters = parse_udp_counters(snmp).expect("a Udp: pair");
        assert_eq!(
            counters,
            UdpCounters {
                in_datagrams: 120,
                in_errors: 880,
                no_ports: 3
            }
        );
        let before = UdpCounters {
            in_datagrams: 20,
            in_errors: 80,
            no_ports: 0,
        };
        assert_eq!(counters.reached_socket_since(before), 900);
        assert_eq!(parse_udp_counters("Ip: Forwarding\nIp: 1\n"), None);
    }

    #[test]
    fn the_stream_frame_is_64_bytes_on_the_wire_with_valid_checksums() {
        let ends = Endpoints {
            src: PEER_ADDR,
            src_port: 30_001,
            dst: HOST_ADDR,
            dst_port: 20_001,
        };
        let mut frame = [0u8; FRAME_CAP];
        let len = write_packet(&mut frame, Proto::Udp, ends, 0);
        // 60 bytes handed to the device; the wire adds a 4-byte FCS.
        assert_eq!(len, 60);
        assert_eq!(checksum(&frame[14..34], 0), 0, "IP header checksum");
        assert_eq!(&frame[26..30], &PEER_ADDR.octets());
        assert_eq!(&frame[30..34], &HOST_ADDR.octets());
        assert_eq!(u16::from_be_bytes([frame[34], frame[35]]), 30_001);
        assert_eq!(u16::from_be_bytes([frame[36], frame[37]]), 20_001);
    }
}
