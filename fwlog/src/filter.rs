//! Which events to keep (`--action`, `--dir`, `--proto`, `--port`, `--host`), for the collector's
//! records and for JSON lines read back by `summary`: the same rules on both representations.

use std::net::IpAddr;

use fwlog_common::event::Action;

use crate::{
    log_line::LogLine,
    record::{Connection, Extras, FlowRecord, VerdictRecord},
    values::{action_named, Direction, HostPattern, Protocol},
};

/// The fields every filter looks at, whichever representation they come from.
struct Candidate<'a> {
    action: Option<Action>,
    direction: Option<Direction>,
    proto: Option<Protocol>,
    /// Source and destination port, for protocols that have ports.
    ports: Option<(u16, u16)>,
    addrs: [Option<IpAddr>; 2],
    hosts: [Option<&'a str>; 2],
}

/// The filters of one command line (see `settings::filter`): values of one field are
/// alternatives, different fields must all match; the default keeps everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    pub actions: Vec<Action>,
    pub directions: Vec<Direction>,
    pub protocols: Vec<Protocol>,
    pub ports: Vec<u16>,
    pub hosts: Vec<HostPattern>,
}

impl Filter {
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
                record.action,
                record.direction,
                record.connection.as_ref(),
                &record.extras,
            )
    }

    pub fn matches_flow(&self, record: &FlowRecord) -> bool {
        self.keeps_everything()
            || self.matches_record(
                record.action,
                record.direction,
                record.connection.as_ref(),
                &record.extras,
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
            proto: connection.map(|c| c.protocol),
            ports: connection.and_then(|c| c.ports),
            addrs: [connection.map(|c| c.client), connection.map(|c| c.server)],
            hosts: [extras.src_host.as_deref(), extras.dest_host.as_deref()],
        })
    }

    /// A line read back from fwlog's JSON output (`summary`).
    pub fn matches_json(&self, line: &LogLine) -> bool {
        if self.keeps_everything() {
            return true;
        }
        let proto = line.proto.as_deref().and_then(Protocol::named);
        let needs_addrs = !self.hosts.is_empty();
        let parse = |ip: &Option<std::borrow::Cow<str>>| {
            needs_addrs
                .then(|| ip.as_deref().and_then(|ip| ip.parse().ok()))
                .flatten()
        };
        self.matches(&Candidate {
            action: line.action.as_deref().and_then(action_named),
            direction: line.direction.as_deref().and_then(Direction::named),
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
        let action = allows(&self.actions, candidate.action);
        let direction = allows(&self.directions, candidate.direction);
        let proto = allows(&self.protocols, candidate.proto);
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

/// No value asked for, or `value` is one of them.
fn allows<T: PartialEq>(wanted: &[T], value: Option<T>) -> bool {
    wanted.is_empty() || value.is_some_and(|value| wanted.contains(&value))
}

#[cfg(test)]
mod tests;
