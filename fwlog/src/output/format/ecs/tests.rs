//! Golden ECS lines, and their shape: valid JSON, nested objects, no dotted keys.

use serde_json::Value;

use super::*;
use crate::record::test_records::{
    curl_extras, inbound_tcp_syn, inbound_verdict, outbound_flow, outbound_tcp_flow, test_host, T,
};

fn ecs(write: impl FnOnce(&mut EcsWriter, &mut Vec<u8>)) -> String {
    let mut out = Vec::new();
    write(&mut EcsWriter::new(&test_host()), &mut out);
    String::from_utf8(out).expect("UTF-8")
}

/// Parses the line and checks every key at every depth is free of dots.
fn parsed(line: &str) -> Value {
    assert!(
        line.ends_with('\n') && line.matches('\n').count() == 1,
        "one line: {line}"
    );
    let value: Value = serde_json::from_str(line).expect("valid JSON");
    fn check(value: &Value, path: &str) {
        if let Value::Object(map) = value {
            for (key, value) in map {
                assert!(!key.contains('.'), "dotted key {path}{key}");
                check(value, &format!("{path}{key}/"));
            }
        }
    }
    check(&value, "");
    value
}

#[test]
fn verdict_golden() {
    let event = inbound_tcp_syn();
    let extras = Extras::default();
    let line = ecs(|w, out| w.verdict(out, &inbound_verdict(&event, &extras)));
    assert_eq!(
        line,
        concat!(
            r#"{"@timestamp":"2026-11-25T07:09:10.123456Z","ecs":{"version":"8.11.0"},"#,
            r#""host":{"name":"edge-1"},"#,
            r#""event":{"kind":"event","category":["network"],"type":["connection","denied"],"action":"drop","outcome":"failure","module":"fwlog","dataset":"fwlog.verdict"},"#,
            r#""rule":{"name":"LOG_AND_DROP"},"#,
            r#""observer":{"product":"fwlog","type":"firewall","ingress":{"interface":{"name":"wlan0"}}},"#,
            r#""network":{"type":"ipv4","transport":"tcp","iana_number":"6","direction":"inbound"},"#,
            r#""source":{"ip":"203.0.113.7","port":51234},"destination":{"ip":"192.0.2.10","port":22},"#,
            r#""fwlog":{"ct_state":"new","len":60,"tcp_flags":"S"}}"#,
            "\n"
        )
    );
    let value = parsed(&line);
    assert_eq!(value["source"]["ip"], "203.0.113.7");
    assert_eq!(value["observer"]["ingress"]["interface"]["name"], "wlan0");
}

#[test]
fn flow_golden_with_process_user_and_names() {
    let (key, stats) = outbound_tcp_flow();
    let extras = curl_extras();
    let line = ecs(|w, out| w.flow(out, &outbound_flow(&key, &stats, &extras)));
    assert_eq!(
        line,
        concat!(
            r#"{"@timestamp":"2026-11-25T07:09:22.626530Z","ecs":{"version":"8.11.0"},"#,
            r#""host":{"name":"edge-1"},"#,
            r#""event":{"kind":"event","category":["network"],"type":["connection","end","allowed"],"action":"network_flow","reason":"fin","#,
            r#""start":"2026-11-25T07:09:10.123456Z","end":"2026-11-25T07:09:22.626530Z","duration":12503074000,"module":"fwlog","dataset":"fwlog.flow"},"#,
            r#""rule":{"name":"LOG_AND_ACCEPT"},"#,
            r#""observer":{"product":"fwlog","type":"firewall","egress":{"interface":{"name":"wlan0"}}},"#,
            r#""network":{"type":"ipv4","transport":"tcp","iana_number":"6","direction":"outbound","bytes":22086,"packets":32,"community_id":"1:LQU9qZlK+B5F3KDmev6m5PMibrg="},"#,
            r#""source":{"ip":"192.0.2.10","port":40122,"bytes":2210,"packets":14},"#,
            r#""destination":{"ip":"198.51.100.4","port":443,"domain":"example.com","bytes":19876,"packets":18},"#,
            r#""process":{"pid":1234,"name":"curl","executable":"/usr/bin/curl"},"user":{"id":"1000","name":"alice"},"#,
            r#""fwlog":{"action":"accept","ct_state":"new","tcp_flags":"SAFP","systemd_unit":"session-2.scope"}}"#,
            "\n"
        )
    );
    let value = parsed(&line);
    assert_eq!(value["network"]["bytes"], 22086);
    assert_eq!(value["process"]["executable"], "/usr/bin/curl");
}

#[test]
fn forward_is_external_and_outside_names_are_escaped() {
    let event = inbound_tcp_syn();
    let extras = Extras::default();
    let mut record = inbound_verdict(&event, &extras);
    record.direction = Direction::Forward;
    record.in_iface = Some("we\"ird\n");
    let value = parsed(&ecs(|w, out| w.verdict(out, &record)));
    assert_eq!(value["network"]["direction"], "external");
    assert_eq!(value["fwlog"]["direction"], "forward");
    assert_eq!(
        value["observer"]["ingress"]["interface"]["name"],
        "we\"ird\n"
    );
}

#[test]
fn a_flow_with_nothing_for_fwlog_has_no_empty_object() {
    let (mut key, mut stats) = outbound_tcp_flow();
    key.proto = fwlog_common::packet::IPPROTO_UDP;
    stats.action = 0;
    stats.ct_state = 0;
    let extras = Extras::default();
    let value = parsed(&ecs(|w, out| {
        w.flow(out, &outbound_flow(&key, &stats, &extras))
    }));
    assert!(value.get("fwlog").is_none(), "{value}");
    assert_eq!(value["network"]["transport"], "udp");
    assert_eq!(
        value["event"]["type"],
        serde_json::json!(["connection", "end"])
    );
}

#[test]
fn metric_lines() {
    let lost = parsed(&ecs(|w, out| w.lost(out, T, LossSite::Export, 12)));
    assert_eq!(lost["event"]["kind"], "metric");
    assert_eq!(lost["fwlog"]["count"], 12);
    assert_eq!(lost["fwlog"]["where"], "export");
    assert_eq!(lost["host"]["name"], "edge-1");
    let evicted = parsed(&ecs(|w, out| w.flows_evicted(out, T, 3)));
    assert_eq!(evicted["event"]["dataset"], "fwlog.flows_evicted");
    let stats = StatsRecord {
        events: 5,
        flows: 2,
        lost: 1,
        flows_tracked: 7,
        flows_evicted: 0,
        malformed: 4,
    };
    let value = parsed(&ecs(|w, out| w.stats(out, T, &stats)));
    assert_eq!(value["fwlog"]["stats"]["malformed"], 4);
}

#[test]
fn host_name_and_id_are_ecs_host_fields() {
    let host = HostIdentity::fixed("edge-1", Some("0123456789abcdef0123456789abcdef"));
    let mut out = Vec::new();
    EcsWriter::new(&host).lost(&mut out, T, LossSite::Ring, 1);
    let value = parsed(&String::from_utf8(out).expect("UTF-8"));
    assert_eq!(
        value["host"],
        serde_json::json!({"name": "edge-1", "id": "0123456789abcdef0123456789abcdef"})
    );
}
