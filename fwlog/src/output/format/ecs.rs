//! Elastic Common Schema lines (ECS 8.11): nested objects, never dotted keys, for Filebeat,
//! Elastic Agent and anything that speaks ECS.
//!
//! How fwlog's fields map:
//! - `event.kind` is `event` for verdicts and flows, `metric` for `lost`, `flows_evicted` and
//!   `stats` (counts at a point in time); `event.category` is `["network"]`.
//! - A verdict is `event.type: ["connection", "allowed"|"denied"]` with `event.action` the
//!   chain's action (`accept`, `drop`, `reject`) and `event.outcome` `success` for accept,
//!   `failure` for drop/reject (the attempt was made and did not get through, as ECS describes
//!   a denied access). A flow is `["connection", "end"]` (plus allowed/denied when a chain saw
//!   it) with `event.action: network_flow`, `event.reason` why it ended, `event.start`,
//!   `event.end`, `event.duration` (ns), and no outcome: a flow ending is neither.
//! - `host.name` is the line's host (the kernel's host name unless named), `host.id` the
//!   machine id when asked for.
//! - `network.direction` keeps `inbound`/`outbound`; fwlog's `forward` (neither end is this
//!   machine) becomes ECS `external`, with `fwlog.direction: forward` kept beside it.
//! - `network.transport` is the lower-case IANA name (`tcp`, `udp`, `icmp`, `ipv6-icmp`, …),
//!   `network.iana_number` the number; `source`/`destination` are client/server as in the JSON
//!   line, with `bytes`/`packets` each way for flows and `network.bytes`/`packets` the sums.
//! - The interface: a verdict's input interface is `observer.ingress.interface.name`; a flow's
//!   interface is `observer.egress` for outbound flows and `observer.ingress` otherwise.
//! - `rule.name` is the chain; `process.*`, `user.id`/`user.name`, `container.id`,
//!   `source.domain`/`destination.domain` (names learnt from DNS) and `network.community_id`
//!   appear when known. What ECS has no field for goes under `fwlog.*`: `ct_state`, `len`,
//!   `tcp_flags`, `icmp.type`/`icmp.code`, `icmp_error`, `fragment`, `malformed`,
//!   `systemd_unit`, the counts of `lost`/`flows_evicted` lines and the `stats` counters.

use std::io::Write as _;

use fwlog_common::event::Action;

use super::{json_object::JsonObject, timestamp::TimestampFormatter, EventWriter};
use crate::{
    host::HostIdentity,
    record::{Connection, Extras, FlowCounts, FlowRecord, LossSite, StatsRecord, VerdictRecord},
    values::Direction,
};

pub const ECS_VERSION: &str = "8.11.0";

pub struct EcsWriter {
    timestamps: TimestampFormatter,
    /// `,"host":{"name":…,"id":…}`, escaped once, copied into every line.
    host: Vec<u8>,
}

impl EcsWriter {
    pub fn new(host: &HostIdentity) -> Self {
        let mut fragment = Vec::new();
        let mut object = JsonObject { out: &mut fragment };
        object.open("host");
        object.escaped("name", &host.name);
        if let Some(id) = &host.id {
            object.escaped("id", id);
        }
        object.close();
        EcsWriter {
            timestamps: TimestampFormatter::default(),
            host: fragment,
        }
    }

    /// `{"@timestamp":…,"ecs":{"version":…},"host":{…},"event":{"kind":…` — the event object
    /// left open.
    fn open<'o>(&mut self, out: &'o mut Vec<u8>, unix_ns: i128, kind: &str) -> JsonObject<'o> {
        out.extend_from_slice(b"{\"@timestamp\":\"");
        self.timestamps.write(out, unix_ns);
        out.push(b'"');
        let mut object = JsonObject { out };
        object.open("ecs");
        object.str("version", ECS_VERSION);
        object.close();
        object.out.extend_from_slice(&self.host);
        object.open("event");
        object.str("kind", kind);
        object
    }

    /// A `metric` line: `event.action` and `fwlog.{event_type, where, count}`.
    fn count_line(
        &mut self,
        out: &mut Vec<u8>,
        unix_ns: i128,
        event_type: &str,
        site: Option<LossSite>,
        count: u64,
    ) {
        let mut line = self.open(out, unix_ns, "metric");
        line.event_end(event_type);
        line.open("fwlog");
        line.str("event_type", event_type);
        if let Some(site) = site {
            line.str("where", site.as_str());
        }
        line.uint("count", count);
        line.close();
        line.end_line();
    }
}

impl EventWriter for EcsWriter {
    fn verdict(&mut self, out: &mut Vec<u8>, record: &VerdictRecord) {
        let action = record.action;
        let connection = record.connection;
        let mut line = self.open(out, record.unix_ns, "event");
        line.raw("category", "[\"network\"]");
        line.raw(
            "type",
            match action {
                Some(Action::Accept) => "[\"connection\",\"allowed\"]",
                Some(Action::Drop | Action::Reject) => "[\"connection\",\"denied\"]",
                None => "[\"connection\"]",
            },
        );
        if let Some(action) = action {
            line.str("action", action.as_str());
            line.str(
                "outcome",
                if action == Action::Accept {
                    "success"
                } else {
                    "failure"
                },
            );
        }
        line.event_end("verdict");
        if let Some(action) = action {
            line.open("rule");
            line.str("name", action.chain());
            line.close();
        }
        line.observer(record.in_iface.map(|name| ("ingress", name)));
        line.network(connection.as_ref(), record.direction, &record.extras, None);
        line.endpoints(connection.as_ref(), &record.extras, None);
        line.process_and_user(&record.extras, record.socket_uid);

        line.open("fwlog");
        if let Some(state) = record.ct_state {
            line.str("ct_state", state.as_str());
        }
        line.uint("len", record.len.into());
        if let Some(flags) = record.tcp_flags {
            line.tcp_flags("tcp_flags", flags);
        }
        line.fwlog_common(connection.as_ref(), record.direction, &record.extras);
        line.close();
        line.end_line();
    }

    fn flow(&mut self, out: &mut Vec<u8>, record: &FlowRecord) {
        let action = record.action;
        let (connection, counts) = (record.connection, record.counts);
        let mut line = self.open(out, record.end_unix_ns, "event");
        line.raw("category", "[\"network\"]");
        line.raw(
            "type",
            match action {
                Some(Action::Accept) => "[\"connection\",\"end\",\"allowed\"]",
                Some(Action::Drop | Action::Reject) => "[\"connection\",\"end\",\"denied\"]",
                None => "[\"connection\",\"end\"]",
            },
        );
        line.str("action", "network_flow");
        line.str("reason", record.reason.as_str());
        line.key("start");
        line.out.push(b'"');
        self.timestamps.write(line.out, record.start_unix_ns);
        line.out.push(b'"');
        line.key("end");
        line.out.push(b'"');
        self.timestamps.write(line.out, record.end_unix_ns);
        line.out.push(b'"');
        let nanos = (record.end_unix_ns - record.start_unix_ns).max(0);
        line.uint("duration", u64::try_from(nanos).unwrap_or(u64::MAX));
        line.event_end("flow");
        if let Some(action) = action {
            line.open("rule");
            line.str("name", action.chain());
            line.close();
        }
        let side = if record.direction == Direction::Outbound {
            "egress"
        } else {
            "ingress"
        };
        line.observer(record.iface.map(|name| (side, name)));
        line.network(
            connection.as_ref(),
            record.direction,
            &record.extras,
            Some(&counts),
        );
        line.endpoints(connection.as_ref(), &record.extras, Some(&counts));
        line.process_and_user(&record.extras, None);

        line.open("fwlog");
        if let Some(action) = action {
            line.str("action", action.as_str());
        }
        if let Some(state) = record.ct_state {
            line.str("ct_state", state.as_str());
        }
        if let Some(flags) = record.tcp_flags {
            line.tcp_flags("tcp_flags", flags);
        }
        if let Some((icmp_type, code)) = record.icmp_error {
            line.open("icmp_error");
            line.uint("type", icmp_type.into());
            line.uint("code", code.into());
            line.close();
        }
        line.fwlog_common(connection.as_ref(), record.direction, &record.extras);
        line.close_or_drop_empty();
        line.end_line();
    }

    fn lost(&mut self, out: &mut Vec<u8>, unix_ns: i128, site: LossSite, count: u64) {
        self.count_line(out, unix_ns, "lost", Some(site), count);
    }

    fn flows_evicted(&mut self, out: &mut Vec<u8>, unix_ns: i128, count: u64) {
        self.count_line(out, unix_ns, "flows_evicted", None, count);
    }

    fn stats(&mut self, out: &mut Vec<u8>, unix_ns: i128, stats: &StatsRecord) {
        let mut line = self.open(out, unix_ns, "metric");
        line.event_end("stats");
        line.open("fwlog");
        line.str("event_type", "stats");
        line.open("stats");
        line.stats_counters(stats);
        line.close();
        line.close();
        line.end_line();
    }
}

/// ECS's field groups (the primitives are in `json_object`).
impl JsonObject<'_> {
    /// `module` and `dataset`, then closes `event`.
    fn event_end(&mut self, event_type: &str) {
        self.str("module", "fwlog");
        self.key("dataset");
        let _ = write!(self.out, "\"fwlog.{event_type}\"");
        self.close();
    }

    fn observer(&mut self, interface: Option<(&str, &str)>) {
        self.open("observer");
        self.str("product", "fwlog");
        self.str("type", "firewall");
        if let Some((side, name)) = interface {
            self.open(side);
            self.open("interface");
            self.escaped("name", name);
            self.close();
            self.close();
        }
        self.close();
    }

    fn network(
        &mut self,
        connection: Option<&Connection>,
        direction: Direction,
        extras: &Extras,
        counts: Option<&FlowCounts>,
    ) {
        self.open("network");
        if let Some(c) = connection {
            self.str("type", if c.client.is_ipv4() { "ipv4" } else { "ipv6" });
            if let Some(transport) = c.protocol.iana_keyword() {
                self.str("transport", transport);
            }
            self.uint_string("iana_number", c.protocol.0.into());
        }
        self.str(
            "direction",
            match direction {
                Direction::Inbound => "inbound",
                Direction::Outbound => "outbound",
                Direction::Forward => "external",
            },
        );
        if let Some(counts) = counts {
            let bytes = counts.bytes_toserver.saturating_add(counts.bytes_toclient);
            let packets = counts.pkts_toserver.saturating_add(counts.pkts_toclient);
            self.uint("bytes", bytes);
            self.uint("packets", packets);
        }
        if let Some(id) = &extras.community_id {
            // fwlog's own text ("1:" and base64): nothing in it needs escaping.
            self.str("community_id", id);
        }
        self.close();
    }

    fn endpoints(
        &mut self,
        connection: Option<&Connection>,
        extras: &Extras,
        counts: Option<&FlowCounts>,
    ) {
        let Some(c) = connection else {
            return;
        };
        let sides = [
            ("source", c.client, c.ports.map(|p| p.0), &extras.src_host),
            (
                "destination",
                c.server,
                c.ports.map(|p| p.1),
                &extras.dest_host,
            ),
        ];
        for (index, (key, address, port, host)) in sides.into_iter().enumerate() {
            self.open(key);
            self.ip("ip", address);
            if let Some(port) = port {
                self.uint("port", port.into());
            }
            if let Some(host) = host {
                self.escaped("domain", host);
            }
            if let Some(counts) = counts {
                let (bytes, packets) = if index == 0 {
                    (counts.bytes_toserver, counts.pkts_toserver)
                } else {
                    (counts.bytes_toclient, counts.pkts_toclient)
                };
                self.uint("bytes", bytes);
                self.uint("packets", packets);
            }
            self.close();
        }
    }

    fn process_and_user(&mut self, extras: &Extras, socket_uid: Option<u32>) {
        let process = extras.process.as_ref();
        if let Some(process) = process {
            self.open("process");
            self.uint("pid", process.pid.into());
            self.escaped("name", &process.comm);
            if let Some(exe) = &process.exe {
                self.escaped("executable", exe);
            }
            self.close();
        }
        let uid = process.map(|p| p.uid).or(socket_uid);
        if let Some(uid) = uid {
            self.open("user");
            self.uint_string("id", uid.into());
            if let Some(name) = process.and_then(|p| p.user.as_deref()) {
                self.escaped("name", name);
            }
            self.close();
        }
        if let Some(container) = process.and_then(|p| p.container.as_deref()) {
            self.open("container");
            self.escaped("id", container);
            self.close();
        }
    }

    /// The `fwlog.*` fields verdicts and flows share.
    fn fwlog_common(
        &mut self,
        connection: Option<&Connection>,
        direction: Direction,
        extras: &Extras,
    ) {
        match connection {
            None => {
                self.key("malformed");
                self.out.extend_from_slice(b"true");
            }
            Some(c) => {
                if let Some((icmp_type, code)) = c.icmp {
                    self.open("icmp");
                    self.uint("type", icmp_type.into());
                    self.uint("code", code.into());
                    self.close();
                }
                for (flag, key) in [(c.fragment, "fragment"), (c.malformed, "malformed")] {
                    if flag {
                        self.key(key);
                        self.out.extend_from_slice(b"true");
                    }
                }
            }
        }
        if direction == Direction::Forward {
            self.str("direction", "forward");
        }
        if let Some(unit) = extras.process.as_ref().and_then(|p| p.unit.as_deref()) {
            self.escaped("systemd_unit", unit);
        }
    }
}

#[cfg(test)]
mod tests;
