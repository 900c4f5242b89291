//! JSON lines in Suricata EVE's field names (`timestamp`, `event_type`, `src_ip`, `dest_port`, …),
//! flat, no dots in keys.
//!
//! Hand-written rather than serde_json: this is the collector's hot path (every event of a
//! 100k flows/s flood passes here), and writing straight into one reused buffer with itoa
//! avoids building a value or a `String` per event.

use super::{json_object::JsonObject, timestamp::TimestampFormatter, EventWriter};
use crate::{
    host::HostIdentity,
    record::{Connection, Extras, FlowRecord, LossSite, StatsRecord, VerdictRecord},
};

/// Writes JSON lines into a buffer the caller drains (one write per batch, not per line).
pub struct JsonWriter {
    timestamps: TimestampFormatter,
    /// `,"host":"NAME"` (and `,"host_id":"ID"`), escaped once, copied into every line.
    host: Vec<u8>,
}

impl JsonWriter {
    pub fn new(host: &HostIdentity) -> Self {
        let mut fragment = Vec::new();
        let mut object = JsonObject { out: &mut fragment };
        object.escaped("host", &host.name);
        if let Some(id) = &host.id {
            object.escaped("host_id", id);
        }
        JsonWriter {
            timestamps: TimestampFormatter::default(),
            host: fragment,
        }
    }

    /// `{"timestamp":…,"event_type":"verdict",…}` and a newline.
    pub fn verdict(&mut self, out: &mut Vec<u8>, record: &VerdictRecord) {
        let mut line = self.open(out, record.unix_ns, "verdict");
        if let Some(action) = record.action {
            line.str("action", action.as_str());
        }
        if let Some(state) = record.ct_state {
            line.str("ct_state", state.as_str());
        }
        line.str("direction", record.direction.as_str());
        if let Some(name) = record.in_iface {
            line.escaped("in_iface", name);
        }
        if let Some(action) = record.action {
            line.str("chain", action.chain());
        }
        line.connection(record.connection.as_ref());
        line.uint("len", record.len.into());
        if let Some(flags) = record.tcp_flags {
            line.tcp_flags("tcp_flags", flags);
        }
        if let Some(uid) = record.socket_uid {
            line.uint("uid", uid.into());
        }
        line.extras(&record.extras);
        line.end_line();
    }

    /// `{"timestamp":…,"event_type":"flow",…,"flow":{…}}`: how a flow went, once it ended.
    pub fn flow(&mut self, out: &mut Vec<u8>, record: &FlowRecord) {
        let mut line = self.open(out, record.end_unix_ns, "flow");
        line.str("direction", record.direction.as_str());
        if let Some(name) = record.iface {
            line.escaped("in_iface", name);
        }
        line.connection(record.connection.as_ref());
        if let Some(action) = record.action {
            line.str("action", action.as_str());
        }
        if let Some(state) = record.ct_state {
            line.str("ct_state", state.as_str());
        }
        if let Some(flags) = record.tcp_flags {
            line.tcp_flags("tcp_flags", flags);
        }
        line.extras(&record.extras);
        line.open("flow");
        line.out.extend_from_slice(b"\"start\":\"");
        self.timestamps.write(line.out, record.start_unix_ns);
        line.out.extend_from_slice(b"\",\"end\":\"");
        self.timestamps.write(line.out, record.end_unix_ns);
        line.out.push(b'"');
        line.key("duration_s");
        write_seconds(line.out, record.end_unix_ns - record.start_unix_ns);
        let counts = &record.counts;
        line.uint("pkts_toserver", counts.pkts_toserver);
        line.uint("bytes_toserver", counts.bytes_toserver);
        line.uint("pkts_toclient", counts.pkts_toclient);
        line.uint("bytes_toclient", counts.bytes_toclient);
        if let Some((icmp_type, code)) = record.icmp_error {
            line.uint("icmp_error_type", icmp_type.into());
            line.uint("icmp_error_code", code.into());
        }
        line.str("reason", record.reason.as_str());
        line.close();
        line.end_line();
    }

    /// `{"timestamp":…,"event_type":"stats",…}`: the counters so far.
    pub fn stats(&mut self, out: &mut Vec<u8>, unix_ns: i128, stats: &StatsRecord) {
        let mut line = self.open(out, unix_ns, "stats");
        line.stats_counters(stats);
        line.end_line();
    }

    /// `{"timestamp":…,"event_type":"flows_evicted","count":N}`: flows the kernel's table
    /// dropped, full, before they ended (their records are lost; the count is not).
    pub fn flows_evicted(&mut self, out: &mut Vec<u8>, unix_ns: i128, count: u64) {
        let mut line = self.open(out, unix_ns, "flows_evicted");
        line.uint("count", count);
        line.end_line();
    }

    /// `{"timestamp":…,"event_type":"lost","where":"ring","count":N}`: events lost at `site`.
    pub fn lost(&mut self, out: &mut Vec<u8>, unix_ns: i128, site: LossSite, count: u64) {
        let mut line = self.open(out, unix_ns, "lost");
        line.str("where", site.as_str());
        line.uint("count", count);
        line.end_line();
    }

    fn open<'o>(
        &mut self,
        out: &'o mut Vec<u8>,
        unix_ns: i128,
        event_type: &str,
    ) -> JsonObject<'o> {
        out.extend_from_slice(b"{\"timestamp\":\"");
        self.timestamps.write(out, unix_ns);
        out.push(b'"');
        out.extend_from_slice(&self.host);
        let mut line = JsonObject { out };
        line.str("event_type", event_type);
        line
    }
}

/// fwlog's own field groups (the primitives are in `json_object`).
impl JsonObject<'_> {
    /// The counters of a `stats` line (also in ECS's `fwlog.stats`).
    pub fn stats_counters(&mut self, stats: &StatsRecord) {
        self.uint("events", stats.events);
        self.uint("flows", stats.flows);
        self.uint("lost", stats.lost);
        self.uint("flows_tracked", stats.flows_tracked);
        self.uint("flows_evicted", stats.flows_evicted);
        self.uint("malformed", stats.malformed);
    }

    /// The connection's fields, client first; `"malformed":true` alone when there is none.
    fn connection(&mut self, connection: Option<&Connection>) {
        let Some(c) = connection else {
            self.bool_true("malformed");
            return;
        };
        self.uint("ip_version", c.ip_version().into());
        self.key("proto");
        self.out.push(b'"');
        match c.protocol.name() {
            Some(name) => self.out.extend_from_slice(name.as_bytes()),
            None => self
                .out
                .extend_from_slice(itoa::Buffer::new().format(c.protocol.0).as_bytes()),
        }
        self.out.push(b'"');
        self.ip("src_ip", c.client);
        if let Some((port, _)) = c.ports {
            self.uint("src_port", port.into());
        }
        self.ip("dest_ip", c.server);
        if let Some((_, port)) = c.ports {
            self.uint("dest_port", port.into());
        }
        if let Some((icmp_type, code)) = c.icmp {
            self.uint("icmp_type", icmp_type.into());
            self.uint("icmp_code", code.into());
        }
        if c.fragment {
            self.bool_true("fragment");
        }
        if c.malformed {
            self.bool_true("malformed");
        }
    }

    /// `community_id`, `src_host`, `dest_host`, `process` — each only when known.
    fn extras(&mut self, extras: &Extras) {
        if let Some(id) = &extras.community_id {
            // fwlog's own text ("1:" and base64): nothing in it needs escaping.
            self.str("community_id", id);
        }
        if let Some(host) = &extras.src_host {
            self.escaped("src_host", host);
        }
        if let Some(host) = &extras.dest_host {
            self.escaped("dest_host", host);
        }
        if let Some(process) = &extras.process {
            self.open("process");
            self.uint("pid", process.pid.into());
            self.escaped("comm", &process.comm);
            if let Some(exe) = &process.exe {
                self.escaped("exe", exe);
            }
            self.uint("uid", process.uid.into());
            if let Some(user) = &process.user {
                self.escaped("user", user);
            }
            if let Some(unit) = &process.unit {
                self.escaped("unit", unit);
            }
            if let Some(container) = &process.container {
                self.escaped("container", container);
            }
            self.close();
        }
    }
}

/// Nanoseconds as seconds with three decimals (`12.503`).
fn write_seconds(out: &mut Vec<u8>, nanos: i128) {
    let millis = nanos.max(0) / 1_000_000;
    out.extend_from_slice(itoa::Buffer::new().format(millis / 1000).as_bytes());
    let fraction = (millis % 1000) as u32;
    out.extend_from_slice(&[
        b'.',
        b'0' + (fraction / 100) as u8,
        b'0' + (fraction / 10 % 10) as u8,
        b'0' + (fraction % 10) as u8,
    ]);
}

impl EventWriter for JsonWriter {
    fn verdict(&mut self, out: &mut Vec<u8>, record: &VerdictRecord) {
        JsonWriter::verdict(self, out, record);
    }

    fn flow(&mut self, out: &mut Vec<u8>, record: &FlowRecord) {
        JsonWriter::flow(self, out, record);
    }

    fn lost(&mut self, out: &mut Vec<u8>, unix_ns: i128, site: LossSite, count: u64) {
        JsonWriter::lost(self, out, unix_ns, site, count);
    }

    fn flows_evicted(&mut self, out: &mut Vec<u8>, unix_ns: i128, count: u64) {
        JsonWriter::flows_evicted(self, out, unix_ns, count);
    }

    fn stats(&mut self, out: &mut Vec<u8>, unix_ns: i128, stats: &StatsRecord) {
        JsonWriter::stats(self, out, unix_ns, stats);
    }
}

#[cfg(test)]
mod tests;
