//! The words fwlog's settings and lines are made of (policies, formats, directions, protocols,
//! hosts, ports, sizes, prefixes, interface names), each parsed and checked in one place for the
//! command line, the configuration file, the rules and the collector alike.
//!
//! The bottom floor: this module uses nothing of fwlog's but fwlog-common.

use std::{fmt, net::IpAddr, str::FromStr};

use fwlog_common::{
    event::Action,
    packet::{
        protocol_keyword, protocol_name, protocol_number, IPPROTO_ICMP, IPPROTO_ICMPV6,
        IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP, IPPROTO_UDPLITE,
    },
};

/// `--inbound` and `--outbound`: the `LOG_AND_*` chain new connections jump to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    Accept,
    Drop,
    Reject,
}

impl Policy {
    pub const fn as_str(self) -> &'static str {
        self.action().as_str()
    }

    pub const fn action(self) -> Action {
        match self {
            Policy::Accept => Action::Accept,
            Policy::Drop => Action::Drop,
            Policy::Reject => Action::Reject,
        }
    }
}

/// `--format`: how lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    Json,
    Text,
    Ecs,
}

impl OutputFormat {
    pub const fn as_str(self) -> &'static str {
        match self {
            OutputFormat::Json => "json",
            OutputFormat::Text => "text",
            OutputFormat::Ecs => "ecs",
        }
    }
}

/// `--color`: whether the text format is coloured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ColourChoice {
    Auto,
    Always,
    Never,
}

/// Which way a connection goes, as seen from this machine (`direction` in every line, `--dir`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Direction {
    Inbound,
    Outbound,
    Forward,
}

impl Direction {
    pub const ALL: [Direction; 3] = [Direction::Inbound, Direction::Outbound, Direction::Forward];

    pub const fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
            Direction::Forward => "forward",
        }
    }

    /// The direction a line names (`"inbound"`, …).
    pub fn named(name: &str) -> Option<Direction> {
        Direction::ALL
            .into_iter()
            .find(|direction| direction.as_str() == name)
    }
}

/// The action a line names (`"accept"`, …).
pub fn action_named(name: &str) -> Option<Action> {
    Action::ALL
        .into_iter()
        .find(|action| action.as_str() == name)
}

/// A transport protocol by number; parsed from `tcp`, `udp`, `icmp`, `icmpv6`, `sctp`,
/// `udplite` or a number 0–255, the same words fwlog writes in `proto`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Protocol(pub u8);

impl Protocol {
    /// fwlog's word for it (`proto`), for the protocols fwlog knows.
    pub fn name(self) -> Option<&'static str> {
        protocol_name(self.0)
    }

    /// IANA's lower-case keyword, for the protocols fwlog knows.
    pub fn iana_keyword(self) -> Option<&'static str> {
        protocol_keyword(self.0)
    }

    /// The protocol a line names: fwlog's word exactly as written, or the number.
    pub fn named(proto: &str) -> Option<Protocol> {
        protocol_number(proto, |known, name| known == name)
            .or_else(|| proto.parse().ok())
            .map(Protocol)
    }

    /// TCP, UDP, UDP-Lite and SCTP: the protocols whose packets carry ports.
    pub fn has_ports(self) -> bool {
        matches!(
            self.0,
            IPPROTO_TCP | IPPROTO_UDP | IPPROTO_SCTP | IPPROTO_UDPLITE
        )
    }

    /// ICMP and ICMPv6: type and code instead of ports.
    pub fn is_icmp(self) -> bool {
        matches!(self.0, IPPROTO_ICMP | IPPROTO_ICMPV6)
    }
}

impl FromStr for Protocol {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if let Some(number) = protocol_number(text, str::eq_ignore_ascii_case) {
            return Ok(Protocol(number));
        }
        text.parse::<u8>().map(Protocol).map_err(|_| {
            format!(
                "{text:?} is not a protocol: use tcp, udp, icmp, icmpv6, sctp, udplite or 0-255"
            )
        })
    }
}

/// `--host`: an address, a network in CIDR notation, or a host name (compared with the
/// `src_host`/`dest_host` fwlog resolved, case-insensitively, without a trailing dot).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostPattern {
    Network { address: IpAddr, prefix_len: u8 },
    Name(String),
}

impl FromStr for HostPattern {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if let Some((address, prefix)) = text.split_once('/') {
            let address: IpAddr = address
                .parse()
                .map_err(|_| format!("{address:?} in {text:?} is not an IP address"))?;
            let max = if address.is_ipv4() { 32 } else { 128 };
            let prefix_len = prefix
                .parse::<u8>()
                .ok()
                .filter(|len| *len <= max)
                .ok_or_else(|| format!("{prefix:?} in {text:?} is not a prefix length 0-{max}"))?;
            return Ok(HostPattern::Network {
                address,
                prefix_len,
            });
        }
        if let Ok(address) = text.parse::<IpAddr>() {
            let prefix_len = if address.is_ipv4() { 32 } else { 128 };
            return Ok(HostPattern::Network {
                address,
                prefix_len,
            });
        }
        let name = text.trim_end_matches('.');
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
        if valid {
            Ok(HostPattern::Name(name.to_ascii_lowercase()))
        } else {
            Err(format!(
                "{text:?} is neither an address, a network (10.0.0.0/8) nor a host name"
            ))
        }
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostPattern::Network {
                address,
                prefix_len,
            } => write!(f, "{address}/{prefix_len}"),
            HostPattern::Name(name) => f.write_str(name),
        }
    }
}

impl HostPattern {
    pub fn contains(&self, address: IpAddr) -> bool {
        let HostPattern::Network {
            address: network,
            prefix_len,
        } = self
        else {
            return false;
        };
        match (network, address) {
            (IpAddr::V4(network), IpAddr::V4(address)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(*prefix_len))
                    .unwrap_or(0);
                u32::from(*network) & mask == u32::from(address) & mask
            }
            (IpAddr::V6(network), IpAddr::V6(address)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(*prefix_len))
                    .unwrap_or(0);
                u128::from(*network) & mask == u128::from(address) & mask
            }
            _ => false,
        }
    }

    pub fn names(&self, host: &str) -> bool {
        match self {
            HostPattern::Name(name) => host.trim_end_matches('.').eq_ignore_ascii_case(name),
            HostPattern::Network { .. } => false,
        }
    }
}

/// A transport protocol that has ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    Tcp,
    Udp,
    Sctp,
}

impl Transport {
    pub const fn as_str(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
            Transport::Sctp => "sctp",
        }
    }
}

/// `22/tcp`: a port new inbound connections may reach (`--allow-in`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PortRule {
    pub port: u16,
    pub proto: Transport,
}

impl FromStr for PortRule {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (port, proto) = text
            .split_once('/')
            .ok_or_else(|| format!("{text:?} is not PORT/PROTO, e.g. 22/tcp"))?;
        let port = Some(port)
            .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|p| p.parse::<u16>().ok())
            .filter(|&p| p != 0)
            .ok_or_else(|| format!("{port:?} is not a port (1-65535)"))?;
        let proto = match proto.to_ascii_lowercase().as_str() {
            "tcp" => Transport::Tcp,
            "udp" => Transport::Udp,
            "sctp" => Transport::Sctp,
            other => return Err(format!("{other:?} is not tcp, udp or sctp")),
        };
        Ok(PortRule { port, proto })
    }
}

impl fmt::Display for PortRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.port, self.proto.as_str())
    }
}

/// The longest prefix that keeps `[PREFIX-X]:` within the kernel's 29-character log prefix.
pub const MAX_PREFIX_LEN: usize = 29 - "[-X]:".len();

/// The rule of `--prefix`: it goes into iptables' `--log-prefix '[PREFIX-A]:'`.
pub fn check_prefix(prefix: &str) -> Result<(), String> {
    let valid = !prefix.is_empty()
        && prefix.len() <= MAX_PREFIX_LEN
        && prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "prefix {prefix:?} must be 1 to {MAX_PREFIX_LEN} letters, digits, '-' or '_'"
        ))
    }
}

/// IFNAMSIZ - 1 (include/uapi/linux/if.h).
pub const MAX_INTERFACE_NAME_LEN: usize = 15;

/// A Linux interface name, as the kernel's `dev_valid_name` (net/core/dev.c) and iptables'
/// `-i` accept it, minus characters that have no business in a configuration file.
pub fn check_interface_name(name: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "._@:-".contains(c);
    if name.is_empty() || name.len() > MAX_INTERFACE_NAME_LEN {
        Err(format!(
            "interface name {name:?} must be 1 to {MAX_INTERFACE_NAME_LEN} characters long"
        ))
    } else if !name.chars().all(allowed) {
        Err(format!(
            "interface name {name:?} may only hold letters, digits and . _ @ : -"
        ))
    } else if name.starts_with('-') || name == "." || name == ".." {
        Err(format!(
            "{name:?} is not an interface name (it starts with '-' or is . or ..)"
        ))
    } else {
        Ok(())
    }
}

/// "100M" → 104857600; K, M and G are powers of 1024, and a plain number is bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let (digits, multiplier) = match trimmed.char_indices().last() {
        Some((i, 'K' | 'k')) => (&trimmed[..i], 1u64 << 10),
        Some((i, 'M' | 'm')) => (&trimmed[..i], 1 << 20),
        Some((i, 'G' | 'g')) => (&trimmed[..i], 1 << 30),
        _ => (trimmed, 1),
    };
    digits
        .parse::<u64>()
        .ok()
        .filter(|_| !digits.starts_with('+'))
        .and_then(|n| n.checked_mul(multiplier))
        .ok_or_else(|| format!("{text:?} is not a size (e.g. 100M, 512K, 1G, 65536)"))
}

/// The shortest exact spelling of a size: 4194304 → "4M".
pub fn format_size(bytes: u64) -> String {
    match bytes {
        0 => "0".to_string(),
        _ if bytes.is_multiple_of(1 << 30) => format!("{}G", bytes >> 30),
        _ if bytes.is_multiple_of(1 << 20) => format!("{}M", bytes >> 20),
        _ if bytes.is_multiple_of(1 << 10) => format!("{}K", bytes >> 10),
        _ => bytes.to_string(),
    }
}

/// "4M" → 4194304. The kernel wants a power of two that is a multiple of the page size.
pub fn parse_ring_size(text: &str) -> Result<u32, String> {
    let bytes = parse_size(text)?;
    if !bytes.is_power_of_two() || !(4096..=1 << 30).contains(&bytes) {
        return Err(format!(
            "{:?} must be a power of two between 4K and 1G (e.g. 1M, 4M, 16M)",
            text.trim()
        ));
    }
    Ok(bytes as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_sizes() {
        assert_eq!(parse_ring_size("4M"), Ok(4 << 20));
        assert_eq!(parse_ring_size("64k"), Ok(64 << 10));
        assert_eq!(parse_ring_size("8192"), Ok(8192));
        assert!(parse_ring_size("3M").is_err());
        assert!(parse_ring_size("2K").is_err());
        assert!(parse_ring_size("2G").is_err());
        assert!(parse_ring_size("lots").is_err());
        assert!(parse_ring_size("99999999999999999999G").is_err());
    }

    #[test]
    fn protocol_words_read_back_as_written() {
        for number in 0..=u8::MAX {
            let protocol = Protocol(number);
            let word = protocol
                .name()
                .map_or_else(|| number.to_string(), str::to_string);
            assert_eq!(Protocol::named(&word), Some(protocol));
            assert_eq!(word.parse::<Protocol>(), Ok(protocol));
        }
        assert_eq!(Protocol(IPPROTO_ICMPV6).iana_keyword(), Some("ipv6-icmp"));
        assert_eq!(
            Protocol::named("TCP"),
            None,
            "lines are written in lower case"
        );
        assert_eq!("TCP".parse::<Protocol>(), Ok(Protocol(IPPROTO_TCP)));
    }
}
