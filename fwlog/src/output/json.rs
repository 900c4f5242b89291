//! JSON lines in Suricata EVE's field names (`timestamp`, `event_type`, `src_ip`, `dest_port`, …),
//! flat, no dots in keys.
//!
//! Hand-written rather than serde_json: this is the collector's hot path (every event of a
//! 100k flows/s flood passes here), and writing straight into one reused buffer with itoa
//! avoids building a value or a `String` per event.

use std::{
    io::Write as _,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use fwlog_common::{
    event::{Action, CtState, VerdictEvent, VERDICT_HAS_SOCKET},
    packet::{
        PacketInfo, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP,
        IPPROTO_UDPLITE, IP_VERSION_4, IP_VERSION_6, PKT_FRAGMENT, PKT_HAS_ICMP, PKT_HAS_PORTS,
        PKT_HAS_TCP_FLAGS, PKT_L4_UNPARSED,
    },
};

use super::{timestamp::TimestampFormatter, Direction};

/// A verdict event with what the collector found out about it.
pub struct VerdictRecord<'a> {
    pub unix_ns: i128,
    pub event: &'a VerdictEvent,
    pub direction: Direction,
    pub in_iface: Option<&'a str>,
}

/// Writes JSON lines into a buffer the caller drains (one write per batch, not per line).
#[derive(Default)]
pub struct JsonWriter {
    timestamps: TimestampFormatter,
}

impl JsonWriter {
    /// `{"timestamp":…,"event_type":"verdict",…}` and a newline.
    pub fn verdict(&mut self, out: &mut Vec<u8>, record: &VerdictRecord) {
        let event = record.event;
        let mut line = self.open(out, record.unix_ns, "verdict");
        if let Some(action) = Action::from_u8(event.action) {
            line.str("action", action.as_str());
        }
        if let Some(state) = CtState::from_u8(event.ct_state) {
            line.str("ct_state", state.as_str());
        }
        line.str("direction", record.direction.as_str());
        if let Some(name) = record.in_iface {
            line.escaped("in_iface", name);
        }
        if let Some(action) = Action::from_u8(event.action) {
            line.str("chain", action.chain());
        }
        line.packet(&event.packet);
        line.uint("len", event.len.into());
        if event.packet.flags & PKT_HAS_TCP_FLAGS != 0 {
            line.tcp_flags(event.packet.tcp_flags);
        }
        if event.flags & VERDICT_HAS_SOCKET != 0 {
            line.uint("uid", event.uid.into());
        }
        line.close();
    }

    /// `{"timestamp":…,"event_type":"lost","count":N}`: events the kernel could not queue.
    pub fn lost(&mut self, out: &mut Vec<u8>, unix_ns: i128, count: u64) {
        let mut line = self.open(out, unix_ns, "lost");
        line.uint("count", count);
        line.close();
    }

    fn open<'o>(&mut self, out: &'o mut Vec<u8>, unix_ns: i128, event_type: &str) -> Line<'o> {
        out.extend_from_slice(b"{\"timestamp\":\"");
        self.timestamps.write(out, unix_ns);
        out.push(b'"');
        let mut line = Line { out };
        line.str("event_type", event_type);
        line
    }
}

/// One JSON object being written; keys are fwlog's own ASCII names and need no escaping.
struct Line<'o> {
    out: &'o mut Vec<u8>,
}

impl Line<'_> {
    fn key(&mut self, key: &str) {
        self.out.extend_from_slice(b",\"");
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    /// A value known to need no escaping (fwlog's own words).
    fn str(&mut self, key: &str, value: &str) {
        self.key(key);
        self.out.push(b'"');
        self.out.extend_from_slice(value.as_bytes());
        self.out.push(b'"');
    }

    /// A value from outside (an interface name), escaped.
    fn escaped(&mut self, key: &str, value: &str) {
        self.key(key);
        write_escaped(self.out, value);
    }

    fn uint(&mut self, key: &str, value: u64) {
        self.key(key);
        self.out
            .extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
    }

    fn bool(&mut self, key: &str) {
        self.key(key);
        self.out.extend_from_slice(b"true");
    }

    fn ip(&mut self, key: &str, addr: IpAddr) {
        self.key(key);
        self.out.push(b'"');
        let _ = write!(self.out, "{addr}");
        self.out.push(b'"');
    }

    fn packet(&mut self, packet: &PacketInfo) {
        let (src, dst) = match packet_addrs(packet) {
            Some(addrs) => addrs,
            None => {
                self.bool("malformed");
                return;
            }
        };
        self.uint("ip_version", packet.ip_version.into());
        self.key("proto");
        self.out.push(b'"');
        match proto_name(packet.proto) {
            Some(name) => self.out.extend_from_slice(name.as_bytes()),
            None => self
                .out
                .extend_from_slice(itoa::Buffer::new().format(packet.proto).as_bytes()),
        }
        self.out.push(b'"');
        self.ip("src_ip", src);
        if packet.flags & PKT_HAS_PORTS != 0 {
            self.uint("src_port", packet.src_port.into());
        }
        self.ip("dest_ip", dst);
        if packet.flags & PKT_HAS_PORTS != 0 {
            self.uint("dest_port", packet.dst_port.into());
        }
        if packet.flags & PKT_HAS_ICMP != 0 {
            self.uint("icmp_type", packet.icmp_type.into());
            self.uint("icmp_code", packet.icmp_code.into());
        }
        if packet.flags & PKT_FRAGMENT != 0 {
            self.bool("fragment");
        }
        if packet.flags & PKT_L4_UNPARSED != 0 {
            self.bool("malformed");
        }
    }

    fn tcp_flags(&mut self, flags: u8) {
        self.key("tcp_flags");
        self.out.push(b'"');
        self.out.extend(tcp_flag_letters(flags));
        self.out.push(b'"');
    }

    fn close(self) {
        self.out.extend_from_slice(b"}\n");
    }
}

/// Source and destination address, or `None` when the IP header could not be read.
pub fn packet_addrs(packet: &PacketInfo) -> Option<(IpAddr, IpAddr)> {
    match packet.ip_version {
        IP_VERSION_4 => Some((v4(&packet.src_addr).into(), v4(&packet.dst_addr).into())),
        IP_VERSION_6 => Some((
            Ipv6Addr::from(packet.src_addr).into(),
            Ipv6Addr::from(packet.dst_addr).into(),
        )),
        _ => None,
    }
}

fn v4(addr: &[u8; 16]) -> Ipv4Addr {
    Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3])
}

pub fn proto_name(proto: u8) -> Option<&'static str> {
    Some(match proto {
        IPPROTO_TCP => "tcp",
        IPPROTO_UDP => "udp",
        IPPROTO_ICMP => "icmp",
        IPPROTO_ICMPV6 => "icmpv6",
        IPPROTO_SCTP => "sctp",
        IPPROTO_UDPLITE => "udplite",
        _ => return None,
    })
}

/// TCP flags as letters in a fixed order: S(YN) A(CK) F(IN) R(ST) P(SH) U(RG) E(CE) C(WR).
pub fn tcp_flag_letters(flags: u8) -> impl Iterator<Item = u8> {
    const ORDER: [(u8, u8); 8] = [
        (0x02, b'S'),
        (0x10, b'A'),
        (0x01, b'F'),
        (0x04, b'R'),
        (0x08, b'P'),
        (0x20, b'U'),
        (0x40, b'E'),
        (0x80, b'C'),
    ];
    ORDER
        .into_iter()
        .filter(move |(bit, _)| flags & bit != 0)
        .map(|(_, letter)| letter)
}

fn write_escaped(out: &mut Vec<u8>, value: &str) {
    out.push(b'"');
    for c in value.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => {
                let mut utf8 = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
            }
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests;
