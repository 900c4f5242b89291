//! Golden tests pinning the JSON schema (README documents the same fields).

use std::net::Ipv6Addr;

use fwlog_common::{
    event::{Action, CtState, VerdictEvent, EVENT_KIND_VERDICT, VERDICT_HAS_SOCKET},
    flow::FlowStats,
    packet::{
        PacketInfo, IPPROTO_ICMP, IPPROTO_ICMPV6, PKT_FRAGMENT, PKT_HAS_ICMP, PKT_L4_UNPARSED,
    },
};

use super::*;
use crate::record::test_records::{
    inbound_tcp_syn, outbound_flow, outbound_tcp_flow, test_host, verdict_record, T,
};
use crate::{
    output::format::tcp_flag_letters,
    record::{Extras, LossSite, ProcessView},
    values::Direction,
};

fn render(record: &VerdictRecord) -> String {
    let mut out = Vec::new();
    JsonWriter::new(&test_host()).verdict(&mut out, record);
    String::from_utf8(out).expect("UTF-8")
}

#[test]
fn inbound_drop_matches_the_documented_example() {
    let event = inbound_tcp_syn();
    let line = render(&verdict_record(
        &event,
        Direction::Inbound,
        Some("wlan0"),
        &Extras::default(),
    ));
    assert_eq!(
        line,
        r#"{"timestamp":"2026-11-25T07:09:10.123456Z","host":"edge-1","event_type":"verdict","action":"drop","ct_state":"new","direction":"inbound","in_iface":"wlan0","chain":"LOG_AND_DROP","ip_version":4,"proto":"tcp","src_ip":"203.0.113.7","src_port":51234,"dest_ip":"192.0.2.10","dest_port":22,"len":60,"tcp_flags":"S"}
"#
    );
    serde_json::from_str::<serde_json::Value>(&line).expect("valid JSON");
}

#[test]
fn outbound_icmpv6_with_a_socket_owner() {
    let mut packet = PacketInfo {
        ip_version: 6,
        proto: IPPROTO_ICMPV6,
        icmp_type: 128,
        flags: PKT_HAS_ICMP,
        ..PacketInfo::default()
    };
    packet.src_addr = "fd00:200::1".parse::<Ipv6Addr>().expect("address").octets();
    packet.dst_addr = "fd00:200::2".parse::<Ipv6Addr>().expect("address").octets();
    let event = VerdictEvent {
        kind: EVENT_KIND_VERDICT,
        action: Action::Accept as u8,
        ct_state: CtState::New as u8,
        flags: VERDICT_HAS_SOCKET,
        uid: 1000,
        len: 104,
        packet,
        ..VerdictEvent::default()
    };
    let line = render(&verdict_record(
        &event,
        Direction::Outbound,
        None,
        &Extras::default(),
    ));
    assert_eq!(
        line,
        r#"{"timestamp":"2026-11-25T07:09:10.123456Z","host":"edge-1","event_type":"verdict","action":"accept","ct_state":"new","direction":"outbound","chain":"LOG_AND_ACCEPT","ip_version":6,"proto":"icmpv6","src_ip":"fd00:200::1","dest_ip":"fd00:200::2","icmp_type":128,"icmp_code":0,"len":104,"uid":1000}
"#
    );
}

#[test]
fn related_fragment_and_unknown_protocol() {
    let mut event = inbound_tcp_syn();
    event.action = Action::Reject as u8;
    event.ct_state = CtState::Related as u8;
    event.packet.proto = 47;
    event.packet.flags = PKT_FRAGMENT;
    let line = render(&verdict_record(
        &event,
        Direction::Forward,
        Some("we\"ird"),
        &Extras::default(),
    ));
    assert_eq!(
        line,
        r#"{"timestamp":"2026-11-25T07:09:10.123456Z","host":"edge-1","event_type":"verdict","action":"reject","ct_state":"related","direction":"forward","in_iface":"we\"ird","chain":"LOG_AND_REJECT","ip_version":4,"proto":"47","src_ip":"203.0.113.7","dest_ip":"192.0.2.10","fragment":true,"len":60}
"#
    );
    serde_json::from_str::<serde_json::Value>(&line).expect("valid JSON");
}

#[test]
fn unreadable_ip_header_is_reported_not_guessed() {
    let mut event = inbound_tcp_syn();
    event.packet = PacketInfo::default();
    let line = render(&verdict_record(
        &event,
        Direction::Inbound,
        None,
        &Extras::default(),
    ));
    assert!(line.contains(r#""malformed":true"#));
    assert!(!line.contains("src_ip"));
}

#[test]
fn lost_line() {
    let mut out = Vec::new();
    JsonWriter::new(&test_host()).lost(&mut out, T, LossSite::Ring, 42);
    assert_eq!(
        String::from_utf8(out).expect("UTF-8"),
        "{\"timestamp\":\"2026-11-25T07:09:10.123456Z\",\"host\":\"edge-1\",\"event_type\":\"lost\",\"where\":\"ring\",\"count\":42}\n"
    );
}

#[test]
fn tcp_flag_order() {
    let letters = |flags| String::from_utf8(tcp_flag_letters(flags).collect()).expect("ASCII");
    assert_eq!(letters(0x02), "S");
    assert_eq!(letters(0x12), "SA");
    assert_eq!(letters(0x1b), "SAFP");
    assert_eq!(letters(0xff), "SAFRPUEC");
    assert_eq!(letters(0), "");
}

/// The field names in README's schema table.
fn documented_fields() -> std::collections::BTreeSet<String> {
    let readme = include_str!("../../../../../README.md");
    let start = readme
        .find("## JSON schema")
        .expect("README has a JSON schema section");
    let section = &readme[start..];
    // The schema table ends where the next heading (## or ###) begins.
    let end = section[3..].find("\n#").map_or(section.len(), |i| i + 3);
    section[..end]
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split('`').next())
        .map(str::to_string)
        .collect()
}

#[test]
fn readme_documents_exactly_the_fields_fwlog_writes() {
    let mut out = Vec::new();
    let host = crate::host::HostIdentity::fixed("edge-1", Some("0123456789abcdef0123456789abcdef"));
    let mut writer = JsonWriter::new(&host);
    let inbound = inbound_tcp_syn();
    let mut outbound_icmp = inbound_tcp_syn();
    outbound_icmp.flags = VERDICT_HAS_SOCKET;
    outbound_icmp.packet.proto = IPPROTO_ICMP;
    outbound_icmp.packet.flags = PKT_HAS_ICMP | PKT_FRAGMENT | PKT_L4_UNPARSED;
    for (event, in_iface) in [(&inbound, Some("eth0")), (&outbound_icmp, None)] {
        writer.verdict(
            &mut out,
            &verdict_record(event, Direction::Inbound, in_iface, &full_extras()),
        );
    }
    writer.lost(&mut out, T, LossSite::Ring, 1);
    writer.flows_evicted(&mut out, T, 1);
    writer.stats(&mut out, T, &StatsRecord::default());
    let (key, stats) = outbound_tcp_flow();
    let icmp_error = FlowStats {
        icmp_error_type: 3,
        ..stats
    };
    writer.flow(&mut out, &outbound_flow(&key, &icmp_error, &NO_EXTRAS));
    let mut written = std::collections::BTreeSet::new();
    for line in String::from_utf8(out).expect("UTF-8").lines() {
        let value: serde_json::Value = serde_json::from_str(line).expect("valid JSON");
        for (name, field) in value.as_object().expect("an object") {
            written.insert(name.clone());
            if let Some(nested) = field.as_object() {
                written.extend(nested.keys().map(|inner| format!("{name}.{inner}")));
            }
        }
    }
    assert_eq!(written, documented_fields());
}

static NO_EXTRAS: Extras = Extras {
    community_id: None,
    src_host: None,
    dest_host: None,
    process: None,
};

fn full_extras() -> Extras {
    Extras {
        community_id: Some("1:LQU9qZlK+B5F3KDmev6m5PMibrg=".into()),
        src_host: Some("client.test".into()),
        dest_host: Some("server.test".into()),
        process: Some(ProcessView {
            pid: 1234,
            comm: "curl".into(),
            exe: Some("/usr/bin/curl".into()),
            uid: 1000,
            user: Some("alice".into()),
            unit: Some("session-2.scope".into()),
            container: Some("4f3c".into()),
        }),
    }
}

#[test]
fn extras_follow_the_packet_fields() {
    let event = inbound_tcp_syn();
    let mut out = Vec::new();
    JsonWriter::new(&test_host()).verdict(
        &mut out,
        &verdict_record(&event, Direction::Outbound, None, &full_extras()),
    );
    let line = String::from_utf8(out).expect("UTF-8");
    assert!(line.ends_with(r#","len":60,"tcp_flags":"S","community_id":"1:LQU9qZlK+B5F3KDmev6m5PMibrg=","src_host":"client.test","dest_host":"server.test","process":{"pid":1234,"comm":"curl","exe":"/usr/bin/curl","uid":1000,"user":"alice","unit":"session-2.scope","container":"4f3c"}}
"#), "{line}");
}

#[test]
fn flow_matches_the_documented_example() {
    let (key, stats) = outbound_tcp_flow();
    let mut out = Vec::new();
    JsonWriter::new(&test_host()).flow(&mut out, &outbound_flow(&key, &stats, &NO_EXTRAS));
    assert_eq!(
        String::from_utf8(out).expect("UTF-8"),
        r#"{"timestamp":"2026-11-25T07:09:22.626530Z","host":"edge-1","event_type":"flow","direction":"outbound","in_iface":"wlan0","ip_version":4,"proto":"tcp","src_ip":"192.0.2.10","src_port":40122,"dest_ip":"198.51.100.4","dest_port":443,"action":"accept","ct_state":"new","tcp_flags":"SAFP","flow":{"start":"2026-11-25T07:09:10.123456Z","end":"2026-11-25T07:09:22.626530Z","duration_s":12.503,"pkts_toserver":14,"bytes_toserver":2210,"pkts_toclient":18,"bytes_toclient":19876,"reason":"fin"}}
"#
    );
}

#[test]
fn the_client_is_whichever_side_opened() {
    let (key, mut stats) = outbound_tcp_flow();
    stats.opener = fwlog_common::flow::SIDE_A;
    let mut out = Vec::new();
    JsonWriter::new(&test_host()).flow(&mut out, &outbound_flow(&key, &stats, &NO_EXTRAS));
    let value: serde_json::Value = serde_json::from_slice(&out).expect("valid JSON");
    assert_eq!(value["src_ip"], "198.51.100.4");
    assert_eq!(value["src_port"], 443);
    assert_eq!(value["flow"]["pkts_toserver"], 18);
    assert_eq!(value["flow"]["bytes_toclient"], 2210);
}
