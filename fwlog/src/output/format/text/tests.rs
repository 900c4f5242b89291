//! Golden lines of the text format (UTC, so they do not depend on the machine's time zone).

use jiff::tz::TimeZone;

use super::*;
use crate::record::test_records::{
    curl_extras, inbound_tcp_syn, inbound_verdict, outbound_flow, outbound_tcp_flow, test_host, T,
};

/// The kernel's host name, not named by the operator: text lines leave it out.
fn writer(colour: bool) -> TextWriter {
    let host = HostIdentity {
        given: false,
        ..test_host()
    };
    TextWriter::with_time_zone(colour, TimeZone::UTC, &host)
}

fn text(write: impl FnOnce(&mut TextWriter, &mut Vec<u8>), colour: bool) -> String {
    let mut out = Vec::new();
    write(&mut writer(colour), &mut out);
    String::from_utf8(out).expect("UTF-8")
}

#[test]
fn verdict_line() {
    let event = inbound_tcp_syn();
    let extras = Extras::default();
    let line = text(
        |w, out| w.verdict(out, &inbound_verdict(&event, &extras)),
        false,
    );
    assert_eq!(
        line,
        "07:09:10.123 drop   ↓ tcp         203.0.113.7:51234 → 192.0.2.10:22         wlan0    len=60 flags=S\n"
    );
}

#[test]
fn flow_line_with_process_and_host() {
    let (key, stats) = outbound_tcp_flow();
    let extras = curl_extras();
    let line = text(
        |w, out| w.flow(out, &outbound_flow(&key, &stats, &extras)),
        false,
    );
    assert_eq!(
        line,
        "07:09:22.626 flow   ↑ tcp          192.0.2.10:40122 → 198.51.100.4:443      wlan0    \
         fin 12.503s pkts=14/18 bytes=2210/19876 accept flags=SAFP curl[1234] user=alice dest_host=example.com\n"
    );
}

#[test]
fn colour_only_when_asked() {
    let event = inbound_tcp_syn();
    let extras = Extras::default();
    let plain = text(
        |w, out| w.verdict(out, &inbound_verdict(&event, &extras)),
        false,
    );
    let coloured = text(
        |w, out| w.verdict(out, &inbound_verdict(&event, &extras)),
        true,
    );
    assert!(!plain.contains('\x1b'));
    assert!(
        coloured.starts_with("07:09:10.123 \x1b[31mdrop\x1b[0m   ↓ tcp"),
        "{coloured}"
    );
    assert_eq!(
        coloured.replace("\x1b[31m", "").replace("\x1b[0m", ""),
        plain
    );
}

#[test]
fn counters_and_names_from_outside() {
    let lost = text(|w, out| w.lost(out, T, LossSite::Ring, 12), false);
    assert_eq!(
        lost,
        "07:09:10.123 LOST   12 events the kernel could not queue\n"
    );
    let evicted = text(|w, out| w.flows_evicted(out, T, 3), false);
    assert_eq!(
        evicted,
        "07:09:10.123 EVICT  3 flows dropped by the full kernel flow table\n"
    );
    let stats = StatsRecord {
        events: 5,
        flows: 2,
        lost: 1,
        flows_tracked: 7,
        flows_evicted: 0,
        malformed: 0,
    };
    let line = text(|w, out| w.stats(out, T, &stats), false);
    assert_eq!(
        line,
        "07:09:10.123 stats  events=5 flows=2 lost=1 flows_tracked=7 flows_evicted=0 malformed=0\n"
    );

    let event = inbound_tcp_syn();
    let extras = Extras::default();
    let mut record = inbound_verdict(&event, &extras);
    record.in_iface = Some("evil\x1b[2J");
    let line = text(|w, out| w.verdict(out, &record), false);
    assert!(line.contains(" evil\\u{1b}[2J "), "{line}");
}

#[test]
fn a_named_host_follows_the_time() {
    let event = inbound_tcp_syn();
    let extras = Extras::default();
    let mut out = Vec::new();
    TextWriter::with_time_zone(false, TimeZone::UTC, &test_host())
        .verdict(&mut out, &inbound_verdict(&event, &extras));
    assert_eq!(
        String::from_utf8(out).expect("UTF-8"),
        "07:09:10.123 edge-1 drop   ↓ tcp         203.0.113.7:51234 → 192.0.2.10:22         wlan0    len=60 flags=S\n"
    );
}

/// What a hostile peer (a DNS name) or process (its comm) could put in a line: a terminal
/// title, a screen clear, a forged second line, a bidi override, extra `key=value` words.
pub const HOSTILE: &str = "x\x1b]0;owned\x07\x1b[2J\n07:09:10.123 accept \u{202e}gnp user=root";

#[test]
fn names_from_the_wire_and_processes_are_escaped() {
    let (key, stats) = outbound_tcp_flow();
    let mut extras = curl_extras();
    if let Some(process) = &mut extras.process {
        process.comm = HOSTILE.to_string();
    }
    extras.dest_host = Some(HOSTILE.into());
    let line = text(
        |w, out| w.flow(out, &outbound_flow(&key, &stats, &extras)),
        false,
    );
    assert_eq!(line.matches('\n').count(), 1, "one line: {line}");
    assert!(
        !line.trim_end().chars().any(crate::printable::is_unsafe),
        "{line:?}"
    );
    let escaped = "x\\u{1b}]0;owned\\u{7}\\u{1b}[2J\\u{a}07:09:10.123\\u{20}accept\\u{20}\\u{202e}gnp\\u{20}user=root";
    assert!(
        line.contains(&format!(" {escaped}[1234] user=alice")),
        "{line}"
    );
    assert!(line.ends_with(&format!(" dest_host={escaped}\n")), "{line}");
}
