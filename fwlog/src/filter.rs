//! Which events to keep (`--action`, `--dir`, `--proto`, `--port`, `--host`), for the collector's
//! records and for JSON lines read back by `summary`: the same rules on both representations.

use std::{fmt, net::IpAddr, str::FromStr};

use fwlog_common::{
    event::Action,
    packet::{
        IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP, IPPROTO_UDPLITE,
    },
};

use crate::{
    args::{FilterAction, FilterArgs, FilterDirection},
    enrich::Extras,
    output::{
        connection::Connection,
        json::{FlowRecord, VerdictRecord},
        Direction,
    },
    summary::line::LogLine,
};

/// A transport protocol by number; parsed from `tcp`, `udp`, `icmp`, `icmpv6`, `sctp`,
/// `udplite` or a number 0–255, the same words fwlog writes in `proto`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Protocol(pub u8);

const PROTOCOL_NAMES: [(&str, u8); 6] = [
    ("tcp", IPPROTO_TCP),
    ("udp", IPPROTO_UDP),
    ("icmp", IPPROTO_ICMP),
    ("icmpv6", IPPROTO_ICMPV6),
    ("sctp", IPPROTO_SCTP),
    ("udplite", IPPROTO_UDPLITE),
];

impl FromStr for Protocol {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if let Some((_, number)) = PROTOCOL_NAMES
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(text))
        {
            return Ok(Protocol(*number));
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
    fn contains(&self, address: IpAddr) -> bool {
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

    fn names(&self, host: &str) -> bool {
        match self {
            HostPattern::Name(name) => host.trim_end_matches('.').eq_ignore_ascii_case(name),
            HostPattern::Network { .. } => false,
        }
    }
}

/// The fields every filter looks at, whichever representation they come from.
struct Candidate<'a> {
    action: Option<Action>,
    direction: Option<Direction>,
    proto: Option<u8>,
    /// Source and destination port, for protocols that have ports.
    ports: Option<(u16, u16)>,
    addrs: [Option<IpAddr>; 2],
    hosts: [Option<&'a str>; 2],
}

/// The filters of one command line; the default keeps everything.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    actions: Vec<Action>,
    directions: Vec<Direction>,
    protocols: Vec<u8>,
    ports: Vec<u16>,
    hosts: Vec<HostPattern>,
}

impl Filter {
    pub fn new(args: &FilterArgs) -> Self {
        Filter {
            actions: args
                .actions
                .iter()
                .map(|action| match action {
                    FilterAction::Accept => Action::Accept,
                    FilterAction::Drop => Action::Drop,
                    FilterAction::Reject => Action::Reject,
                })
                .collect(),
            directions: args
                .directions
                .iter()
                .map(|direction| match direction {
                    FilterDirection::Inbound => Direction::Inbound,
                    FilterDirection::Outbound => Direction::Outbound,
                    FilterDirection::Forward => Direction::Forward,
                })
                .collect(),
            protocols: args.protocols.iter().map(|proto| proto.0).collect(),
            ports: args.ports.clone(),
            hosts: args.hosts.clone(),
        }
    }

    /// True when no option was given: every event passes.
    pub fn keeps_everything(&self) -> bool {
        self.actions.is_empty()
            && self.directions.is_empty()
            && self.protocols.is_empty()
            && self.ports.is_empty()
            && self.hosts.is_empty()
    }

    pub fn matches_verdict(&self, record: &VerdictRecord) -> bool {
        self.keeps_everything()
            || self.matches_record(
                Action::from_u8(record.event.action),
                record.direction,
                Connection::of_verdict(record).as_ref(),
                record.extras,
            )
    }

    pub fn matches_flow(&self, record: &FlowRecord) -> bool {
        self.keeps_everything()
            || self.matches_record(
                Action::from_u8(record.stats.action),
                record.direction,
                Connection::of_flow(record).0.as_ref(),
                record.extras,
            )
    }

    fn matches_record(
        &self,
        action: Option<Action>,
        direction: Direction,
        connection: Option<&Connection>,
        extras: &Extras,
    ) -> bool {
        self.matches(&Candidate {
            action,
            direction: Some(direction),
            proto: connection.map(|c| c.proto),
            ports: connection.and_then(|c| c.ports),
            addrs: [connection.map(|c| c.src), connection.map(|c| c.dest)],
            hosts: [extras.src_host.as_deref(), extras.dest_host.as_deref()],
        })
    }

    /// A line read back from fwlog's JSON output (`summary`).
    pub fn matches_json(&self, line: &LogLine) -> bool {
        if self.keeps_everything() {
            return true;
        }
        let proto = line.proto.as_deref().and_then(protocol_number);
        let needs_addrs = !self.hosts.is_empty();
        let parse = |ip: &Option<std::borrow::Cow<str>>| {
            needs_addrs
                .then(|| ip.as_deref().and_then(|ip| ip.parse().ok()))
                .flatten()
        };
        self.matches(&Candidate {
            action: line.action.as_deref().and_then(action_named),
            direction: line.direction.as_deref().and_then(direction_named),
            proto,
            ports: match (line.src_port, line.dest_port) {
                (Some(src), Some(dest)) => Some((src, dest)),
                (Some(port), None) | (None, Some(port)) => Some((port, port)),
                (None, None) => None,
            },
            addrs: [parse(&line.src_ip), parse(&line.dest_ip)],
            hosts: [line.src_host.as_deref(), line.dest_host.as_deref()],
        })
    }

    fn matches(&self, candidate: &Candidate) -> bool {
        let action = self.actions.is_empty()
            || candidate
                .action
                .is_some_and(|action| self.actions.contains(&action));
        let direction = self.directions.is_empty()
            || candidate
                .direction
                .is_some_and(|direction| self.directions.contains(&direction));
        let proto = self.protocols.is_empty()
            || candidate
                .proto
                .is_some_and(|proto| self.protocols.contains(&proto));
        let port = self.ports.is_empty()
            || candidate
                .ports
                .is_some_and(|(src, dest)| self.ports.contains(&src) || self.ports.contains(&dest));
        let host = self.hosts.is_empty()
            || self.hosts.iter().any(|pattern| {
                candidate
                    .addrs
                    .iter()
                    .flatten()
                    .any(|addr| pattern.contains(*addr))
                    || candidate
                        .hosts
                        .iter()
                        .flatten()
                        .any(|host| pattern.names(host))
            });
        action && direction && proto && port && host
    }
}

/// The number of a `proto` value as fwlog writes it (`tcp`, …, or the number).
pub fn protocol_number(proto: &str) -> Option<u8> {
    PROTOCOL_NAMES
        .iter()
        .find(|(name, _)| *name == proto)
        .map(|(_, number)| *number)
        .or_else(|| proto.parse().ok())
}

pub fn action_named(name: &str) -> Option<Action> {
    Action::ALL
        .into_iter()
        .find(|action| action.as_str() == name)
}

pub fn direction_named(name: &str) -> Option<Direction> {
    [Direction::Inbound, Direction::Outbound, Direction::Forward]
        .into_iter()
        .find(|direction| direction.as_str() == name)
}

#[cfg(test)]
mod tests;
