//! One aligned line per event, for people watching a terminal:
//!
//! ```text
//! 07:09:10.123 drop   ↓ tcp         203.0.113.7:51234 → 192.0.2.10:22         wlan0    len=60 flags=S
//! 07:09:22.626 flow   ↑ tcp          192.0.2.10:40122 → 198.51.100.4:443      wlan0    fin 12.503s pkts=14/18 bytes=2210/19876 accept flags=SAFP curl[1234] user=alice
//! ```
//!
//! Local time of day (the machine's time zone), the host when the operator named it
//! (`--host-name`, `[host] name`: on one machine's terminal the kernel's host name is noise,
//! but text merged from several named hosts needs it, as syslog's lines carry theirs), action (`flow` for a flow that ended), the
//! direction as an arrow (`↓` inbound, `↑` outbound, `→` forwarded), protocol, client → server,
//! interface (`-` when unknown), then `key=value` extras. A flow's `pkts=` and `bytes=` are
//! "to the server/to the client". Names from outside (interfaces, processes, hosts) are
//! escaped (`printable`: control and formatting characters, backslashes, spaces), so a line
//! cannot move the cursor, recolour the terminal, break in two or add `key=value` words.

use std::{fmt::Write as _, io::Write as _};

use fwlog_common::event::{Action, CtState};
use jiff::{tz::TimeZone, Timestamp};

use super::{tcp_flag_letters, EventWriter};
use crate::{
    host::HostIdentity,
    record::{Connection, Extras, FlowRecord, LossSite, StatsRecord, VerdictRecord},
    values::Direction,
};

const ACTION_WIDTH: usize = 6;
const PROTO_WIDTH: usize = 7;
/// `255.255.255.255:65535`; IPv6 endpoints are wider and push the rest of their line right.
const ENDPOINT_WIDTH: usize = 21;
const IFACE_WIDTH: usize = 8;

const RED: &str = "\x1b[31m";
const GREEN: &str = "\x1b[32m";
const YELLOW: &str = "\x1b[33m";
const CYAN: &str = "\x1b[36m";
const BOLD_RED: &str = "\x1b[1;31m";
const DIM: &str = "\x1b[2m";
const RESET: &str = "\x1b[0m";

pub struct TextWriter {
    colour: bool,
    time_zone: TimeZone,
    /// The second whose "HH:MM:SS" is in `hms`.
    second: i64,
    hms: String,
    /// Reused for the padded columns.
    scratch: String,
    /// `NAME ` after the time, when the operator named the host.
    host: String,
}

impl TextWriter {
    /// Times in the machine's time zone; ANSI colours when `colour`.
    pub fn new(colour: bool, host: &HostIdentity) -> Self {
        Self::with_time_zone(colour, TimeZone::system(), host)
    }

    pub fn with_time_zone(colour: bool, time_zone: TimeZone, host: &HostIdentity) -> Self {
        let mut shown = String::new();
        if host.given {
            push_clean(&mut shown, &host.name);
            shown.push(' ');
        }
        TextWriter {
            colour,
            time_zone,
            second: i64::MIN,
            hms: String::new(),
            scratch: String::new(),
            host: shown,
        }
    }

    /// `HH:MM:SS.mmm ` then the label, coloured and padded to the action column's width.
    fn start(&mut self, out: &mut Vec<u8>, unix_ns: i128, label: &str, colour: &str) {
        let second = unix_ns.div_euclid(1_000_000_000) as i64;
        if second != self.second {
            self.second = second;
            self.hms.clear();
            match Timestamp::from_second(second) {
                Ok(ts) => {
                    let time = self.time_zone.to_datetime(ts);
                    let _ = write!(
                        self.hms,
                        "{:02}:{:02}:{:02}",
                        time.hour(),
                        time.minute(),
                        time.second()
                    );
                }
                // Outside jiff's range (years -9999..=9999): cannot come from a real clock.
                Err(_) => self.hms.push_str("??:??:??"),
            }
        }
        let millis = unix_ns.rem_euclid(1_000_000_000) / 1_000_000;
        let _ = write!(out, "{}.{millis:03} {}", self.hms, self.host);
        if self.colour {
            let _ = write!(out, "{colour}{label}{RESET}");
        } else {
            out.extend_from_slice(label.as_bytes());
        }
        let padding = ACTION_WIDTH.saturating_sub(label.chars().count());
        out.extend(std::iter::repeat_n(b' ', padding));
    }

    /// ` ↓ tcp     client → server  iface` of a verdict or flow.
    fn tuple(
        &mut self,
        out: &mut Vec<u8>,
        direction: Direction,
        connection: Option<&Connection>,
        iface: Option<&str>,
    ) {
        let arrow = match direction {
            Direction::Inbound => "↓",
            Direction::Outbound => "↑",
            Direction::Forward => "→",
        };
        let proto = connection.map_or_else(
            || "?".to_string(),
            |c| {
                c.protocol
                    .name()
                    .map_or_else(|| c.protocol.0.to_string(), str::to_string)
            },
        );
        let _ = write!(out, " {arrow} {proto:<PROTO_WIDTH$} ");
        self.scratch.clear();
        match connection {
            Some(c) => endpoint(&mut self.scratch, c.client, c.ports.map(|p| p.0)),
            None => self.scratch.push('?'),
        }
        let _ = write!(out, "{:>ENDPOINT_WIDTH$} → ", self.scratch);
        self.scratch.clear();
        match connection {
            Some(c) => endpoint(&mut self.scratch, c.server, c.ports.map(|p| p.1)),
            None => self.scratch.push('?'),
        }
        let _ = write!(out, "{:<ENDPOINT_WIDTH$} ", self.scratch);
        self.scratch.clear();
        push_clean(&mut self.scratch, iface.unwrap_or("-"));
        let _ = write!(out, "{:<IFACE_WIDTH$}", self.scratch);
    }

    /// Extras after the interface: ICMP type, fragment, malformed, process, host names.
    fn connection_extras(&mut self, out: &mut Vec<u8>, connection: Option<&Connection>) {
        match connection {
            None => out.extend_from_slice(b" malformed"),
            Some(c) => {
                if let Some((icmp_type, code)) = c.icmp {
                    let _ = write!(out, " icmp={icmp_type}/{code}");
                }
                if c.fragment {
                    out.extend_from_slice(b" fragment");
                }
                if c.malformed {
                    out.extend_from_slice(b" malformed");
                }
            }
        }
    }

    fn enrichment(&mut self, out: &mut Vec<u8>, extras: &Extras, socket_uid: Option<u32>) {
        self.scratch.clear();
        if let Some(process) = &extras.process {
            self.scratch.push(' ');
            push_clean(&mut self.scratch, &process.comm);
            let _ = write!(self.scratch, "[{}]", process.pid);
            match &process.user {
                Some(user) => {
                    self.scratch.push_str(" user=");
                    push_clean(&mut self.scratch, user);
                }
                None => {
                    let _ = write!(self.scratch, " uid={}", process.uid);
                }
            }
        } else if let Some(uid) = socket_uid {
            let _ = write!(self.scratch, " uid={uid}");
        }
        for (key, host) in [
            ("src_host", &extras.src_host),
            ("dest_host", &extras.dest_host),
        ] {
            if let Some(host) = host {
                let _ = write!(self.scratch, " {key}=");
                push_clean(&mut self.scratch, host);
            }
        }
        out.extend_from_slice(self.scratch.as_bytes());
    }

    fn end(&mut self, out: &mut Vec<u8>) {
        while out.last() == Some(&b' ') {
            out.pop();
        }
        out.push(b'\n');
    }
}

impl EventWriter for TextWriter {
    fn verdict(&mut self, out: &mut Vec<u8>, record: &VerdictRecord) {
        let (label, colour) = match record.action {
            Some(Action::Accept) => ("accept", GREEN),
            Some(Action::Drop) => ("drop", RED),
            Some(Action::Reject) => ("reject", YELLOW),
            None => ("?", ""),
        };
        self.start(out, record.unix_ns, label, colour);
        let connection = record.connection.as_ref();
        self.tuple(out, record.direction, connection, record.in_iface);
        if record.ct_state == Some(CtState::Related) {
            out.extend_from_slice(b" related");
        }
        let _ = write!(out, " len={}", record.len);
        if let Some(flags) = record.tcp_flags {
            out.extend_from_slice(b" flags=");
            out.extend(tcp_flag_letters(flags));
        }
        self.connection_extras(out, connection);
        self.enrichment(out, &record.extras, record.socket_uid);
        self.end(out);
    }

    fn flow(&mut self, out: &mut Vec<u8>, record: &FlowRecord) {
        self.start(out, record.end_unix_ns, "flow", CYAN);
        let (connection, counts) = (record.connection.as_ref(), &record.counts);
        self.tuple(out, record.direction, connection, record.iface);
        let millis = (record.end_unix_ns - record.start_unix_ns).max(0) / 1_000_000;
        let _ = write!(
            out,
            " {} {}.{:03}s pkts={}/{} bytes={}/{}",
            record.reason.as_str(),
            millis / 1000,
            millis % 1000,
            counts.pkts_toserver,
            counts.pkts_toclient,
            counts.bytes_toserver,
            counts.bytes_toclient,
        );
        if let Some(action) = record.action {
            let _ = write!(out, " {}", action.as_str());
        }
        if record.ct_state == Some(CtState::Related) {
            out.extend_from_slice(b" related");
        }
        if let Some(flags) = record.tcp_flags {
            out.extend_from_slice(b" flags=");
            out.extend(tcp_flag_letters(flags));
        }
        self.connection_extras(out, connection);
        if let Some((icmp_type, code)) = record.icmp_error {
            let _ = write!(out, " icmp_error={icmp_type}/{code}");
        }
        self.enrichment(out, &record.extras, None);
        self.end(out);
    }

    fn lost(&mut self, out: &mut Vec<u8>, unix_ns: i128, site: LossSite, count: u64) {
        self.start(out, unix_ns, "LOST", BOLD_RED);
        let _ = match site {
            LossSite::Ring => write!(out, " {count} events the kernel could not queue"),
            LossSite::Export => write!(out, " {count} flows the IPFIX exporter could not send"),
            LossSite::Replaced => write!(
                out,
                " {count} events an earlier install recorded and no reader read before it was replaced"
            ),
            LossSite::Output => write!(out, " {count} events that could not be written here"),
        };
        self.end(out);
    }

    fn flows_evicted(&mut self, out: &mut Vec<u8>, unix_ns: i128, count: u64) {
        self.start(out, unix_ns, "EVICT", BOLD_RED);
        let _ = write!(out, " {count} flows dropped by the full kernel flow table");
        self.end(out);
    }

    fn stats(&mut self, out: &mut Vec<u8>, unix_ns: i128, stats: &StatsRecord) {
        self.start(out, unix_ns, "stats", DIM);
        let _ = write!(
            out,
            " events={} flows={} lost={} flows_tracked={} flows_evicted={} malformed={}",
            stats.events,
            stats.flows,
            stats.lost,
            stats.flows_tracked,
            stats.flows_evicted,
            stats.malformed
        );
        self.end(out);
    }
}

/// `1.2.3.4:80`, `[fd00::1]:80`, or the bare address without a port.
fn endpoint(text: &mut String, address: std::net::IpAddr, port: Option<u16>) {
    let _ = match (address, port) {
        (std::net::IpAddr::V6(v6), Some(port)) => write!(text, "[{v6}]:{port}"),
        (address, Some(port)) => write!(text, "{address}:{port}"),
        (address, None) => write!(text, "{address}"),
    };
}

/// `value` escaped (`printable`): control and formatting characters, backslashes and spaces.
fn push_clean(text: &mut String, value: &str) {
    crate::printable::push_escaped_word(text, value);
}

#[cfg(test)]
mod tests;
