//! The flood: crafted IPv4 UDP datagrams and TCP SYNs, each a new flow (its own source address
//! and port), written to the peer's veth with AF_PACKET + sendmmsg and paced to a target rate.
//!
//! With PACKET_QDISC_BYPASS the frame goes straight to `veth_xmit`, and the host side's receive
//! softirq (conntrack, iptables, and the logging under test) runs when the sender re-enables
//! bottom halves (net/packet/af_packet.c `packet_xmit`, drivers/net/veth.c): a costly logging
//! path slows the sender down, which is what the achieved rate shows.

use std::{
    fmt, io,
    mem::{size_of, zeroed},
    net::Ipv4Addr,
    num::NonZeroU64,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    path::Path,
    str::FromStr,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};

use super::{
    measure::task_cpu_ticks,
    netns::{NetNs, HOST_ADDR, HOST_MAC, PEER_MAC},
};

/// Destination port of every flow (nothing listens: the host drops them all).
pub const DEST_PORT: u16 = 7777;
/// Room for the largest frame we build (UDP: 60 bytes).
const FRAME_CAP: usize = 64;
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

/// Sends `flood` from a thread inside `peer`, out of `peer_if`, and waits for it to finish.
pub fn send(
    peer: &NetNs,
    peer_if: &str,
    flood: Flood,
    interrupted: &'static AtomicBool,
) -> Result<FloodReport> {
    let peer_if = peer_if.to_owned();
    let sender = peer.spawn_inside(move || {
        let socket = PacketSocket::open(&peer_if)?;
        send_from(&socket, flood, interrupted)
    })?;
    match sender.join() {
        Ok(report) => report,
        Err(_) => bail!("the flood thread panicked"),
    }
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
        let mut done = 0;
        while done < count {
            match socket.send(&frames[done..count], &lens[done..count]) {
                Ok(accepted) => {
                    done += accepted;
                    sent += accepted as u64;
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error)
                    if matches!(
                        error.raw_os_error(),
                        Some(libc::ENOBUFS | libc::EAGAIN | libc::ENOMEM)
                    ) =>
                {
                    // The first frame was refused: skip it, as a sender under pressure would.
                    done += 1;
                    refused += 1;
                }
                Err(error) => return Err(error).context("sendmmsg on the peer's packet socket"),
            }
        }
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

/// Writes the Ethernet frame of flow `index` into `frame` and returns its length.
pub fn write_frame(frame: &mut [u8; FRAME_CAP], proto: Proto, index: u64) -> usize {
    let (src, src_port) = flow_source(index);
    frame[0..6].copy_from_slice(&HOST_MAC);
    frame[6..12].copy_from_slice(&PEER_MAC);
    frame[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let l4 = ETH_HLEN + IPV4_HLEN;
    let (ip_proto, l4_len) = match proto {
        Proto::Udp => {
            let len = 8 + UDP_PAYLOAD.len();
            let udp = &mut frame[l4..l4 + len];
            udp[0..2].copy_from_slice(&src_port.to_be_bytes());
            udp[2..4].copy_from_slice(&DEST_PORT.to_be_bytes());
            udp[4..6].copy_from_slice(&(len as u16).to_be_bytes());
            udp[6..8].fill(0);
            udp[8..].copy_from_slice(UDP_PAYLOAD);
            let sum = pseudo_header_sum(src, HOST_ADDR, IPPROTO_UDP, len);
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
            tcp[2..4].copy_from_slice(&DEST_PORT.to_be_bytes());
            // Any initial sequence number will do; spread them like a real stack.
            let seq = (index as u32).wrapping_mul(2_654_435_761);
            tcp[4..8].copy_from_slice(&seq.to_be_bytes());
            tcp[8..12].fill(0);
            tcp[12] = ((TCP_SYN_HLEN / 4) as u8) << 4;
            tcp[13] = 0x02; // SYN
            tcp[14..16].copy_from_slice(&64240u16.to_be_bytes());
            tcp[16..20].fill(0); // checksum, urgent pointer
            tcp[20..24].copy_from_slice(&[2, 4, 0x05, 0xb4]); // MSS 1460
            let sum = pseudo_header_sum(src, HOST_ADDR, IPPROTO_TCP, TCP_SYN_HLEN);
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
    ip[16..20].copy_from_slice(&HOST_ADDR.octets());
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

/// An AF_PACKET socket that writes whole Ethernet frames to one interface, bypassing its qdisc.
struct PacketSocket {
    fd: OwnedFd,
    to: libc::sockaddr_ll,
}

impl PacketSocket {
    fn open(interface: &str) -> Result<Self> {
        let ifindex = nix::net::if_::if_nametoindex(interface)
            .with_context(|| format!("no interface {interface} in the peer namespace"))?;
        // Protocol 0: the socket only sends, so the kernel hands it no received frames.
        // SAFETY: plain syscall with constant arguments; the result is checked.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(io::Error::last_os_error()).context("opening an AF_PACKET socket");
        }
        // SAFETY: `raw` is a fresh, valid descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let one: libc::c_int = 1;
        // SAFETY: `one` outlives the call and its size is passed along.
        let bypass = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_QDISC_BYPASS,
                (&one as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if bypass != 0 {
            return Err(io::Error::last_os_error()).context("setting PACKET_QDISC_BYPASS");
        }
        // SAFETY: sockaddr_ll is plain old data; all zeroes is a valid value.
        let mut to: libc::sockaddr_ll = unsafe { zeroed() };
        to.sll_family = libc::AF_PACKET as u16;
        to.sll_protocol = (libc::ETH_P_IP as u16).to_be();
        to.sll_ifindex = i32::try_from(ifindex).context("interface index out of range")?;
        to.sll_halen = 6;
        to.sll_addr[..6].copy_from_slice(&HOST_MAC);
        Ok(PacketSocket { fd, to })
    }

    /// Sends the frames with one sendmmsg; returns how many the kernel took.
    fn send(&self, frames: &[[u8; FRAME_CAP]], lens: &[usize]) -> io::Result<usize> {
        let mut iovecs: Vec<libc::iovec> = frames
            .iter()
            .zip(lens)
            .map(|(frame, &len)| libc::iovec {
                iov_base: frame.as_ptr().cast_mut().cast(),
                iov_len: len,
            })
            .collect();
        let mut messages: Vec<libc::mmsghdr> = iovecs
            .iter_mut()
            .map(|iovec| {
                // SAFETY: mmsghdr is plain old data; all zeroes is a valid value.
                let mut message: libc::mmsghdr = unsafe { zeroed() };
                message.msg_hdr.msg_name = (&self.to as *const libc::sockaddr_ll).cast_mut().cast();
                message.msg_hdr.msg_namelen = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
                message.msg_hdr.msg_iov = iovec;
                message.msg_hdr.msg_iovlen = 1;
                message
            })
            .collect();
        // SAFETY: every message points at `self.to` and at one iovec of `iovecs`, which point
        // into `frames`; all of them outlive the call, and the kernel only reads them.
        let accepted = unsafe {
            libc::sendmmsg(
                self.fd.as_raw_fd(),
                messages.as_mut_ptr(),
                messages.len() as libc::c_uint,
                0,
            )
        };
        if accepted < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(accepted as usize)
    }
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
