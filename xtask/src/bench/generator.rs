//! The flood: crafted IPv4 UDP datagrams and TCP SYNs, each a new flow (its own source address
//! and port), written to the peer's veth with AF_PACKET + sendmmsg and paced to a target rate.
//!
//! With PACKET_QDISC_BYPASS the frame goes straight to `veth_xmit`, and the host side's receive
//! softirq (conntrack, iptables, and the logging under test) runs when the sender re-enables
//! bottom halves (net/packet/af_packet.c `packet_xmit`, drivers/net/veth.c): a costly logging
//! path slows the sender down, which is what the achieved rate shows.

use std::{
    fmt,
    net::Ipv4Addr,
    num::NonZeroU64,
    path::Path,
    str::FromStr,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Barrier,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use nix::{
    sched::{sched_setaffinity, CpuSet},
    unistd::Pid,
};

use super::{
    measure::task_cpu_ticks,
    netns::{NetNsGuard, HOST_ADDR, HOST_MAC, PEER_MAC},
    packet_socket::{PacketSocket, FRAME_CAP},
};

/// Destination port of every flow (nothing listens: the host drops them all).
pub const DEST_PORT: u16 = 7777;
const ETH_HLEN: usize = 14;
const IPV4_HLEN: usize = 20;
const UDP_PAYLOAD: &[u8; 18] = b"fwlog bench flood!";
/// A TCP SYN with one option, MSS 1460, as real stacks send.
const TCP_SYN_HLEN: usize = 24;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
/// Flood sources: 10.201.A.B with A and B in 1..=254, which avoids the /16's network and
/// broadcast addresses (a broadcast source is a martian) and the two veth addresses.
const SOURCE_OCTETS: u64 = 254;
const SOURCE_ADDRS: u64 = SOURCE_OCTETS * SOURCE_OCTETS;
const FIRST_SOURCE_PORT: u64 = 1024;
const SOURCE_PORTS: u64 = 65536 - FIRST_SOURCE_PORT;

/// Which kind of connection attempt the flood is made of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Proto {
    /// UDP datagrams (the `! -p tcp` jump rule).
    Udp,
    /// TCP SYNs (the `-p tcp --syn` jump rule).
    Tcp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Udp => "udp",
            Proto::Tcp => "tcp",
        }
    }
}

/// A target rate in flows per second, or as fast as the sender can go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rate {
    PerSecond(NonZeroU64),
    Max,
}

impl FromStr for Rate {
    type Err = String;

    /// `max`, `50000`, `50k`, `1M`.
    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("max") {
            return Ok(Rate::Max);
        }
        let (digits, multiplier) = match text.char_indices().last() {
            Some((i, 'k' | 'K')) => (&text[..i], 1_000),
            Some((i, 'm' | 'M')) => (&text[..i], 1_000_000),
            _ => (text, 1),
        };
        digits
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(multiplier))
            .and_then(NonZeroU64::new)
            .map(Rate::PerSecond)
            .ok_or_else(|| {
                format!("{text:?} is not a rate: use flows per second (50000, 50k, 1M) or `max`")
            })
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rate::Max => f.write_str("max"),
            Rate::PerSecond(rate) if rate.get() % 1_000_000 == 0 => {
                write!(f, "{}M/s", rate.get() / 1_000_000)
            }
            Rate::PerSecond(rate) if rate.get() % 1_000 == 0 => {
                write!(f, "{}k/s", rate.get() / 1_000)
            }
            Rate::PerSecond(rate) => write!(f, "{rate}/s"),
        }
    }
}

/// One flood to send.
#[derive(Clone, Copy, Debug)]
pub struct Flood {
    pub proto: Proto,
    pub rate: Rate,
    pub flows: u64,
    /// Index of the first flow: runs use disjoint ranges, so no two packets share a flow.
    pub first_flow: u64,
    /// Frames per sendmmsg call.
    pub batch: usize,
    /// The flood stops here even if not every flow was sent.
    pub time_limit: Duration,
    /// Sending threads. More than one: thread `i` runs on CPU `i` with its share of the flows
    /// and of the rate, so that the host's receive path runs on several CPUs at once and
    /// contention between them (the ring buffer's lock) shows.
    pub threads: usize,
}

impl Flood {
    /// Each thread's part of the flood: disjoint flows, the rate divided.
    pub fn shares(self) -> Vec<Flood> {
        let threads = self.threads.max(1);
        let count = threads as u64;
        let mut first_flow = self.first_flow;
        (0..count)
            .map(|i| {
                let flows = self.flows / count + u64::from(i < self.flows % count);
                let share = Flood {
                    flows,
                    first_flow,
                    rate: match self.rate {
                        Rate::Max => Rate::Max,
                        Rate::PerSecond(rate) => {
                            Rate::PerSecond(NonZeroU64::new(rate.get() / count).unwrap_or(rate))
                        }
                    },
                    threads: 1,
                    ..self
                };
                first_flow += flows;
                share
            })
            .collect()
    }
}

/// Why the flood ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FloodEnd {
    Done,
    TimeLimit,
    Interrupted,
}

#[derive(Clone, Copy, Debug)]
pub struct FloodReport {
    /// Frames the kernel accepted.
    pub sent: u64,
    /// Frames the kernel refused (ENOBUFS and the like).
    pub refused: u64,
    /// From the first frame to the return of the last sendmmsg.
    pub elapsed: Duration,
    pub end: FloodEnd,
    /// The sending thread's user + system CPU ticks: its syscalls and the receive softirq that
    /// runs in its context, i.e. the kernel path up to and including the logging rule.
    pub cpu_ticks: u64,
}

impl FloodReport {
    /// The threads' reports as one: frames and CPU added up, the longest elapsed time, and the
    /// worst reason for ending.
    pub fn combined(reports: &[FloodReport]) -> Option<FloodReport> {
        let end = if reports.iter().any(|r| r.end == FloodEnd::Interrupted) {
            FloodEnd::Interrupted
        } else if reports.iter().any(|r| r.end == FloodEnd::TimeLimit) {
            FloodEnd::TimeLimit
        } else {
            FloodEnd::Done
        };
        Some(FloodReport {
            sent: reports.iter().map(|r| r.sent).sum(),
            refused: reports.iter().map(|r| r.refused).sum(),
            elapsed: reports.iter().map(|r| r.elapsed).max()?,
            end,
            cpu_ticks: reports.iter().map(|r| r.cpu_ticks).sum(),
        })
    }
}

/// Sends `flood` from threads inside `peer`, out of `peer_if`, and waits for them to finish.
pub fn send(
    peer: &NetNsGuard,
    peer_if: &str,
    flood: Flood,
    interrupted: &'static AtomicBool,
) -> Result<FloodReport> {
    let shares = flood.shares();
    let pinned = shares.len() > 1;
    let start = Arc::new(Barrier::new(shares.len()));
    let mut senders = Vec::new();
    for (cpu, share) in shares.into_iter().enumerate() {
        let peer_if = peer_if.to_owned();
        let start = Arc::clone(&start);
        senders.push(peer.spawn_inside(move || {
            let ready = (if pinned { pin_to_cpu(cpu) } else { Ok(()) })
                .and_then(|()| PacketSocket::open(&peer_if));
            // Every thread gets here, ready or not, so none waits for ever.
            start.wait();
            send_from(&ready?, share, interrupted)
        })?);
    }
    let mut reports = Vec::new();
    for sender in senders {
        match sender.join() {
            Ok(report) => reports.push(report?),
            Err(_) => bail!("a flood thread panicked"),
        }
    }
    FloodReport::combined(&reports).context("the flood had no thread")
}

/// Runs the calling thread on `cpu` only.
fn pin_to_cpu(cpu: usize) -> Result<()> {
    let mut set = CpuSet::new();
    set.set(cpu)
        .with_context(|| format!("CPU {cpu} is beyond what a CPU set holds"))?;
    // Pid 0: the calling thread.
    sched_setaffinity(Pid::from_raw(0), &set)
        .with_context(|| format!("pinning a flood thread to CPU {cpu} (is there a CPU {cpu}?)"))
}

fn send_from(socket: &PacketSocket, flood: Flood, interrupted: &AtomicBool) -> Result<FloodReport> {
    let batch = flood.batch.max(1);
    let mut frames = vec![[0u8; FRAME_CAP]; batch];
    let mut lens = vec![0usize; batch];
    let mut sent = 0;
    let mut refused = 0;
    let mut next = 0;
    let mut end = FloodEnd::Done;
    let thread_stat = Path::new("/proc/thread-self/stat");
    let cpu_before = task_cpu_ticks(thread_stat)?;
    let start = Instant::now();
    while next < flood.flows {
        if interrupted.load(Ordering::Relaxed) {
            end = FloodEnd::Interrupted;
            break;
        }
        if start.elapsed() >= flood.time_limit {
            end = FloodEnd::TimeLimit;
            break;
        }
        if let Rate::PerSecond(rate) = flood.rate {
            let due = start + pacing_offset(next, rate.get());
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        let count = usize::try_from(flood.flows - next).map_or(batch, |left| left.min(batch));
        for (frame, len) in frames.iter_mut().zip(lens.iter_mut()).take(count) {
            *len = write_frame(frame, flood.proto, flood.first_flow + next);
            next += 1;
        }
        let (accepted, skipped) = socket.send_all(&frames[..count], &lens[..count])?;
        sent += accepted;
        refused += skipped;
    }
    let elapsed = start.elapsed();
    Ok(FloodReport {
        sent,
        refused,
        elapsed,
        end,
        cpu_ticks: task_cpu_ticks(thread_stat)?.saturating_sub(cpu_before),
    })
}

/// When the flow with index `sent` is due, counted from the start of the flood.
pub fn pacing_offset(sent: u64, rate_per_second: u64) -> Duration {
    let nanos = u128::from(sent) * 1_000_000_000 / u128::from(rate_per_second.max(1));
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// The source address and port of flow `index`: distinct for the first 4.1 billion flows.
pub fn flow_source(index: u64) -> (Ipv4Addr, u16) {
    let addr = index % SOURCE_ADDRS;
    let port = (index / SOURCE_ADDRS) % SOURCE_PORTS;
    // Both octets are at most 254 and the port at most 65535 by construction.
    let third = (1 + addr / SOURCE_OCTETS) as u8;
    let fourth = (1 + addr % SOURCE_OCTETS) as u8;
    (
        Ipv4Addr::new(10, 201, third, fourth),
        (FIRST_SOURCE_PORT + port) as u16,
    )
}

/// Writes the Ethernet frame of flood flow `index` into `frame` and returns its length.
pub fn write_frame(frame: &mut [u8; FRAME_CAP], proto: Proto, index: u64) -> usize {
    let (src, src_port) = flow_source(index);
    let ends = Endpoints {
        src,
        src_port,
        dst: HOST_ADDR,
        dst_port: DEST_PORT,
    };
    write_packet(frame, proto, ends, index)
}

/// Where a packet goes from and to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Endpoints {
    pub src: Ipv4Addr,
    pub src_port: u16,
    pub dst: Ipv4Addr,
    pub dst_port: u16,
}

/// Writes a frame from the peer to the host, a UDP datagram or a TCP SYN between `ends`, into
/// `frame` and returns its length; `index` makes its IP id and its TCP sequence number.
pub fn write_packet(
    frame: &mut [u8; FRAME_CAP],
    proto: Proto,
    ends: Endpoints,
    index: u64,
) -> usize {
    let Endpoints {
        src,
        src_port,
        dst,
        dst_port,
    } = ends;
    frame[0..6].copy_from_slice(&HOST_MAC);
    frame[6..12].copy_from_slice(&PEER_MAC);
    frame[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let l4 = ETH_HLEN + IPV4_HLEN;
    let (ip_proto, l4_len) = match proto {
        Proto::Udp => {
            let len = 8 + UDP_PAYLOAD.len();
            let udp = &mut frame[l4..l4 + len];
            udp[0..2].copy_from_slice(&src_port.to_be_bytes());
            udp[2..4].copy_from_slice(&dst_port.to_be_bytes());
            udp[4..6].copy_from_slice(&(len as u16).to_be_bytes());
            udp[6..8].fill(0);
            udp[8..].copy_from_slice(UDP_PAYLOAD);
            let sum = pseudo_header_sum(src, dst, IPPROTO_UDP, len);
            // RFC 768: a computed 0 is sent as all ones (0 means "no checksum").
            let checksum = match checksum(udp, sum) {
                0 => 0xffff,
                checksum => checksum,
            };
            udp[6..8].copy_from_slice(&checksum.to_be_bytes());
            (IPPROTO_UDP, len)
        }
        Proto::Tcp => {
            let tcp = &mut frame[l4..l4 + TCP_SYN_HLEN];
            tcp[0..2].copy_from_slice(&src_port.to_be_bytes());
            tcp[2..4].copy_from_slice(&dst_port.to_be_bytes());
            // Any initial sequence number will do; spread them like a real stack.
            let seq = (index as u32).wrapping_mul(2_654_435_761);
            tcp[4..8].copy_from_slice(&seq.to_be_bytes());
            tcp[8..12].fill(0);
            tcp[12] = ((TCP_SYN_HLEN / 4) as u8) << 4;
            tcp[13] = 0x02; // SYN
            tcp[14..16].copy_from_slice(&64240u16.to_be_bytes());
            tcp[16..20].fill(0); // checksum, urgent pointer
            tcp[20..24].copy_from_slice(&[2, 4, 0x05, 0xb4]); // MSS 1460
            let sum = pseudo_header_sum(src, dst, IPPROTO_TCP, TCP_SYN_HLEN);
            let checksum = checksum(tcp, sum);
            tcp[16..18].copy_from_slice(&checksum.to_be_bytes());
            (IPPROTO_TCP, TCP_SYN_HLEN)
        }
    };
    let total = IPV4_HLEN + l4_len;
    let ip = &mut frame[ETH_HLEN..l4];
    ip[0] = 0x45; // version 4, 20-byte header
    ip[1] = 0;
    ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    ip[4..6].copy_from_slice(&(index as u16).to_be_bytes());
    ip[6..8].copy_from_slice(&0x4000u16.to_be_bytes()); // don't fragment
    ip[8] = 64;
    ip[9] = ip_proto;
    ip[10..12].fill(0);
    ip[12..16].copy_from_slice(&src.octets());
    ip[16..20].copy_from_slice(&dst.octets());
    let checksum = checksum(ip, 0);
    ip[10..12].copy_from_slice(&checksum.to_be_bytes());
    ETH_HLEN + total
}

/// The one's complement sum of the TCP/UDP pseudo header (RFC 793, RFC 768), not yet folded.
fn pseudo_header_sum(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, l4_len: usize) -> u32 {
    let words = |addr: Ipv4Addr| {
        let [a, b, c, d] = addr.octets();
        u32::from(u16::from_be_bytes([a, b])) + u32::from(u16::from_be_bytes([c, d]))
    };
    words(src) + words(dst) + u32::from(proto) + l4_len as u32
}

/// The Internet checksum (RFC 1071) of `data`, starting from the unfolded sum `initial`.
pub fn checksum(data: &[u8], initial: u32) -> u16 {
    let mut sum = u64::from(initial);
    let mut chunks = data.chunks_exact(2);
    for pair in &mut chunks {
        sum += u64::from(u16::from_be_bytes([pair[0], pair[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u64::from(u16::from_be_bytes([*last, 0]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|byte| format!("{byte:02x}")).collect()
    }

    #[test]
    fn checksum_of_a_textbook_ipv4_header() {
        // The example header of the "Internet checksum" literature: checksum 0xb861.
        let mut header = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(checksum(&header, 0), 0xb861);
        header[10..12].copy_from_slice(&0xb861u16.to_be_bytes());
        assert_eq!(
            checksum(&header, 0),
            0,
            "a header with its checksum sums to 0"
        );
        assert_eq!(checksum(&[0xab], 0), !0xab00);
    }

    // Known frames, computed independently (Python's struct module, RFC 1071 by hand).
    const UDP_FLOW_0: &str = "02fb0000000102fb0000000208004500002e000040004011242c0ac901010ac9000104001e61001a19d866776c6f672062656e636820666c6f6f6421";
    const TCP_FLOW_0: &str = "02fb0000000102fb0000000208004500002c00004000400624390ac901010ac9000104001e6100000000000000006002faf064410000020405b4";

    #[test]
    fn frames_match_known_packets() {
        let mut frame = [0u8; FRAME_CAP];
        let len = write_frame(&mut frame, Proto::Udp, 0);
        assert_eq!(hex(&frame[..len]), UDP_FLOW_0);
        let len = write_frame(&mut frame, Proto::Tcp, 0);
        assert_eq!(hex(&frame[..len]), TCP_FLOW_0);
    }

    #[test]
    fn every_frame_carries_valid_checksums() {
        for proto in [Proto::Udp, Proto::Tcp] {
            for index in [1, 253, 254, 64_515, 64_516, 1 << 20, 4_000_000_000] {
                let mut frame = [0u8; FRAME_CAP];
                let len = write_frame(&mut frame, proto, index);
                let ip = &frame[ETH_HLEN..ETH_HLEN + IPV4_HLEN];
                assert_eq!(checksum(ip, 0), 0, "{proto:?} flow {index}: IP checksum");
                let segment = &frame[ETH_HLEN + IPV4_HLEN..len];
                let (src, _) = flow_source(index);
                let proto_number = if proto == Proto::Udp {
                    IPPROTO_UDP
                } else {
                    IPPROTO_TCP
                };
                let sum = pseudo_header_sum(src, HOST_ADDR, proto_number, segment.len());
                assert_eq!(
                    checksum(segment, sum),
                    0,
                    "{proto:?} flow {index}: L4 checksum"
                );
            }
        }
    }

    #[test]
    fn flows_are_distinct_and_stay_in_the_source_range() {
        let mut seen = std::collections::HashSet::new();
        for index in 0..200_000 {
            let (addr, port) = flow_source(index);
            let [a, b, c, d] = addr.octets();
            assert_eq!((a, b), (10, 201));
            assert!((1..=254).contains(&c) && (1..=254).contains(&d), "{addr}");
            assert!(port >= 1024);
            assert!(
                seen.insert((addr, port)),
                "flow {index} repeats {addr}:{port}"
            );
        }
        assert_eq!(flow_source(0), (Ipv4Addr::new(10, 201, 1, 1), 1024));
        assert_eq!(
            flow_source(SOURCE_ADDRS),
            (Ipv4Addr::new(10, 201, 1, 1), 1025)
        );
        assert_eq!(
            flow_source(SOURCE_ADDRS - 1),
            (Ipv4Addr::new(10, 201, 254, 254), 1024)
        );
    }

    #[test]
    fn pacing_spreads_flows_over_the_second() {
        assert_eq!(pacing_offset(0, 50_000), Duration::ZERO);
        assert_eq!(pacing_offset(50_000, 50_000), Duration::from_secs(1));
        assert_eq!(pacing_offset(128, 64_000), Duration::from_millis(2));
        assert_eq!(pacing_offset(1, 3), Duration::from_nanos(333_333_333));
        // No overflow for huge counts.
        assert_eq!(pacing_offset(u64::MAX, 1), Duration::from_nanos(u64::MAX));
    }

    #[test]
    fn threads_share_the_flows_and_the_rate() {
        let flood = Flood {
            proto: Proto::Udp,
            rate: "100k".parse().expect("a rate"),
            flows: 1001,
            first_flow: 5000,
            batch: 64,
            time_limit: Duration::from_secs(1),
            threads: 2,
        };
        let shares = flood.shares();
        let parts: Vec<(u64, u64, String, usize)> = shares
            .iter()
            .map(|s| (s.first_flow, s.flows, s.rate.to_string(), s.threads))
            .collect();
        assert_eq!(
            parts,
            [
                (5000, 501, "50k/s".to_owned(), 1),
                (5501, 500, "50k/s".to_owned(), 1)
            ]
        );
        let one = Flood {
            threads: 1,
            rate: Rate::Max,
            ..flood
        };
        let shares = one.shares();
        assert_eq!(shares.len(), 1);
        assert_eq!((shares[0].flows, shares[0].rate), (1001, Rate::Max));
    }

    #[test]
    fn thread_reports_combine() {
        let report = |sent, secs, end, cpu_ticks| FloodReport {
            sent,
            refused: 1,
            elapsed: Duration::from_secs(secs),
            end,
            cpu_ticks,
        };
        let combined = FloodReport::combined(&[
            report(10, 2, FloodEnd::Done, 5),
            report(20, 3, FloodEnd::TimeLimit, 7),
        ])
        .expect("two reports");
        assert_eq!(
            (
                combined.sent,
                combined.refused,
                combined.elapsed,
                combined.end,
                combined.cpu_ticks
            ),
            (30, 2, Duration::from_secs(3), FloodEnd::TimeLimit, 12)
        );
        assert!(FloodReport::combined(&[]).is_none());
    }

    #[test]
    fn rates_parse_and_print() {
        let rate = |text: &str| text.parse::<Rate>();
        assert_eq!(rate("max"), Ok(Rate::Max));
        assert_eq!(rate("50k").map(|r| r.to_string()), Ok("50k/s".into()));
        assert_eq!(rate("1M").map(|r| r.to_string()), Ok("1M/s".into()));
        assert_eq!(rate("12345").map(|r| r.to_string()), Ok("12345/s".into()));
        assert!(rate("0").is_err());
        assert!(rate("fast").is_err());
        assert!(rate("99999999999999999999k").is_err());
    }
}
