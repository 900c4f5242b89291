//! `summary` on logs of known content: exact counts per table, gzip input, garbage lines, time
//! ranges, filters and the key limits.

use std::{
    io::{Cursor, Write as _},
    path::PathBuf,
};

use clap::Parser as _;
use flate2::{write::GzEncoder, Compression};

use super::{
    input::{decompressed, Input},
    render::render_text,
    report::{FileReport, Report},
    tally::{Limits, Tally},
    tally_input, tally_inputs, tally_lines,
    time::parse_timestamp_micros,
    Selection,
};
use crate::args::{Cli, Command};

/// Two sources knocking, one accepted inbound connection, two outbound connections (one by
/// curl to example.com), their flows, the kernel's counters, and garbage.
const LOG: &str = r#"{"timestamp":"2026-11-25T07:09:10.123456Z","event_type":"verdict","action":"drop","ct_state":"new","direction":"inbound","in_iface":"wlan0","chain":"LOG_AND_DROP","ip_version":4,"proto":"tcp","src_ip":"203.0.113.7","src_port":51234,"dest_ip":"192.0.2.10","dest_port":22,"len":60,"tcp_flags":"S"}
{"timestamp":"2026-11-25T07:30:00.000000Z","event_type":"verdict","action":"drop","ct_state":"new","direction":"inbound","in_iface":"wlan0","ip_version":4,"proto":"tcp","src_ip":"203.0.113.7","src_port":51235,"dest_ip":"192.0.2.10","dest_port":23}
not json at all

{"timestamp":"2026-11-25T08:05:00.000000Z","event_type":"verdict","action":"reject","ct_state":"new","direction":"inbound","in_iface":"wlan0","ip_version":4,"proto":"tcp","src_ip":"203.0.113.7","src_port":51236,"dest_ip":"192.0.2.10","dest_port":22}
{"timestamp":"2026-11-25T08:10:00.000000Z","event_type":"verdict","action":"drop","ct_state":"new","direction":"inbound","in_iface":"wlan0","ip_version":4,"proto":"tcp","src_ip":"198.51.100.9","src_port":40000,"dest_ip":"192.0.2.10","dest_port":3389}
[1,2,3]
{"timestamp":"2026-11-25T08:11:00.000000Z","event_type":"verdict","action":"accept","ct_state":"new","direction":"inbound","in_iface":"wlan0","ip_version":4,"proto":"tcp","src_ip":"198.51.100.9","src_port":40001,"dest_ip":"192.0.2.10","dest_port":22}
{"timestamp":"2026-11-25T09:00:00.000000Z","event_type":"verdict","action":"accept","ct_state":"new","direction":"outbound","ip_version":4,"proto":"tcp","src_ip":"192.0.2.10","src_port":40122,"dest_ip":"198.51.100.4","dest_port":443,"dest_host":"example.com","process":{"pid":1234,"comm":"curl","exe":"/usr/bin/curl","uid":1000}}
{"timestamp":"2026-11-25T09:00:12.000000Z","event_type":"flow","direction":"outbound","in_iface":"wlan0","ip_version":4,"proto":"tcp","src_ip":"192.0.2.10","src_port":40122,"dest_ip":"198.51.100.4","dest_port":443,"action":"accept","dest_host":"example.com","process":{"pid":1234,"comm":"curl","exe":"/usr/bin/curl","uid":1000},"flow":{"start":"2026-11-25T09:00:00.000000Z","end":"2026-11-25T09:00:12.000000Z","duration_s":12.0,"pkts_toserver":14,"bytes_toserver":2210,"pkts_toclient":18,"bytes_toclient":19876,"reason":"fin"}}
{"timestamp":"2026-11-25T09:10:00.000000Z","event_type":"verdict","action":"accept","ct_state":"new","direction":"outbound","ip_version":4,"proto":"udp","src_ip":"192.0.2.10","src_port":5353,"dest_ip":"198.51.100.5","dest_port":53,"process":{"pid":99,"comm":"systemd-resolve","exe":"/usr/lib/systemd/systemd-resolved"}}
{"timestamp":"2026-11-25T09:10:01.000000Z","event_type":"flow","direction":"outbound","in_iface":"wlan0","ip_version":4,"proto":"udp","src_ip":"192.0.2.10","src_port":5353,"dest_ip":"198.51.100.5","dest_port":53,"flow":{"pkts_toserver":1,"bytes_toserver":60,"pkts_toclient":1,"bytes_toclient":120,"reason":"idle"}}
{"timestamp":"2026-11-25T09:20:00.000000Z","event_type":"lost","count":12}
{"timestamp":"2026-11-25T09:21:00.000000Z","event_type":"flows_evicted","count":3}
{"timestamp":"2026-11-25T09:22:00.000000Z","event_type":"stats","events":7,"flows":2,"lost":12,"flows_tracked":0,"flows_evicted":3,"malformed":0}
{"event_type":"verdict","action":"drop"}
{"timestamp":"2026-11-25T09:23:00Z","event_type":"verdict","dest_port":"twenty-two"}
{broken
42
"#;

fn micros(text: &str) -> i64 {
    parse_timestamp_micros(text).expect("valid timestamp")
}

fn tally_of(bytes: Vec<u8>, selection: &Selection, limits: Limits) -> Tally {
    let mut tally = Tally::new(limits);
    let mut reader = decompressed(Cursor::new(bytes)).expect("in memory");
    tally_lines(&mut *reader, &mut tally, selection).expect("in memory");
    tally
}

fn report_of(bytes: Vec<u8>, selection: &Selection) -> Report {
    let tally = tally_of(bytes, selection, Limits::default());
    Report::new(
        &tally,
        vec![FileReport {
            name: "test".into(),
            ..FileReport::default()
        }],
        (selection.since, selection.until),
        10,
    )
}

fn gzip(text: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(text).expect("in memory");
    encoder.finish().expect("in memory")
}

#[test]
fn exact_counts_of_a_known_log() {
    let report = report_of(LOG.as_bytes().to_vec(), &Selection::default());
    let lines = report.lines;
    assert_eq!((lines.read, lines.skipped), (18, 6), "{lines:?}");
    assert_eq!(
        (
            lines.verdict,
            lines.flow,
            lines.lost,
            lines.flows_evicted,
            lines.stats
        ),
        (7, 2, 1, 1, 1)
    );
    assert_eq!(
        (lines.outside_time_range, lines.filtered_out, lines.other),
        (0, 0, 0)
    );
    assert_eq!((report.events_lost, report.flows_evicted), (12, 3));
    assert_eq!(
        report.first_event,
        Some(micros("2026-11-25T07:09:10.123456Z"))
    );
    assert_eq!(report.last_event, Some(micros("2026-11-25T09:10:01Z")));

    let sources = &report.blocked_sources;
    assert_eq!((sources.distinct, sources.rows.len()), (2, 2));
    let first = &sources.rows[0];
    assert_eq!(first.src_ip, "203.0.113.7");
    assert_eq!((first.attempts, first.distinct_dest_ports), (3, 2));
    assert_eq!(first.dest_ports, vec![22, 23]);
    assert_eq!(first.first_seen, micros("2026-11-25T07:09:10.123456Z"));
    assert_eq!(first.last_seen, micros("2026-11-25T08:05:00Z"));
    let second = &sources.rows[1];
    assert_eq!(
        (second.src_ip.as_str(), second.attempts),
        ("198.51.100.9", 1)
    );
    assert_eq!(second.dest_ports, vec![3389]);

    let destinations: Vec<_> = report
        .outbound_destinations
        .rows
        .iter()
        .map(|row| {
            (
                row.destination.as_str(),
                row.connections,
                row.flows,
                row.bytes,
            )
        })
        .collect();
    assert_eq!(
        destinations,
        vec![("example.com", 1, 1, 22086), ("198.51.100.5", 1, 1, 180)]
    );

    let processes: Vec<_> = report
        .processes
        .rows
        .iter()
        .map(|row| {
            (
                row.comm.as_deref(),
                row.exe.as_deref(),
                row.connections,
                row.flows,
                row.bytes,
            )
        })
        .collect();
    assert_eq!(
        processes,
        vec![
            (Some("curl"), Some("/usr/bin/curl"), 1, 1, 22086),
            (
                Some("systemd-resolve"),
                Some("/usr/lib/systemd/systemd-resolved"),
                1,
                0,
                0
            ),
        ]
    );

    let ports: Vec<_> = report
        .local_ports
        .rows
        .iter()
        .map(|row| {
            (
                row.port,
                row.proto.as_str(),
                row.attempts,
                row.accepted,
                row.dropped,
            )
        })
        .collect();
    assert_eq!(
        ports,
        vec![
            (22, "tcp", 3, 1, 2),
            (23, "tcp", 1, 0, 1),
            (3389, "tcp", 1, 0, 1)
        ]
    );

    let hours: Vec<_> = report
        .timeline
        .rows
        .iter()
        .map(|row| (row.hour, row.inbound, row.outbound, row.dropped, row.flows))
        .collect();
    assert_eq!(
        hours,
        vec![
            (Some(micros("2026-11-25T07:00:00Z")), 2, 0, 2, 0),
            (Some(micros("2026-11-25T08:00:00Z")), 3, 0, 2, 0),
            (Some(micros("2026-11-25T09:00:00Z")), 0, 2, 0, 2),
        ]
    );
}

#[test]
fn gzip_and_plain_inputs_add_up() {
    let dir = std::env::temp_dir().join(format!("fwlog-summary-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let plain = dir.join("fw.jsonl");
    let compressed = dir.join("fw.jsonl.1.gz");
    std::fs::write(&plain, LOG).expect("write");
    std::fs::write(&compressed, gzip(LOG.as_bytes())).expect("write");

    let mut tally = Tally::new(Limits::default());
    for path in [&plain, &compressed] {
        let input = Input::from_arg(path);
        let mut reader = input.open().expect("open");
        tally_lines(&mut *reader, &mut tally, &Selection::default()).expect("read");
    }
    let report = Report::new(&tally, vec![], (None, None), 10);
    assert_eq!((report.lines.verdict, report.lines.skipped), (14, 12));
    assert_eq!(report.blocked_sources.rows[0].attempts, 6);
    assert_eq!(report.blocked_sources.rows[0].distinct_dest_ports, 2);
    assert_eq!(report.outbound_destinations.rows[0].bytes, 2 * 22086);
    assert!(Input::from_arg(&dir.join("missing.jsonl")).open().is_err());
    assert_eq!(Input::from_arg(&PathBuf::from("-")), Input::Stdin);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn since_and_until_keep_a_half_open_range() {
    let selection = Selection {
        since: Some(micros("2026-11-25T08:00:00Z")),
        until: Some(micros("2026-11-25T08:11:00Z")),
        ..Selection::default()
    };
    let report = report_of(LOG.as_bytes().to_vec(), &selection);
    // 08:05 and 08:10 are in; 08:11 (until) is out, like everything before 08:00.
    assert_eq!(report.lines.verdict, 2);
    assert_eq!(report.lines.flow, 0);
    assert_eq!(report.lines.outside_time_range, 18 - 6 - 2);
    let sources: Vec<_> = report
        .blocked_sources
        .rows
        .iter()
        .map(|r| (r.src_ip.as_str(), r.attempts))
        .collect();
    assert_eq!(sources, vec![("198.51.100.9", 1), ("203.0.113.7", 1)]);
}

#[test]
fn filters_from_the_command_line() {
    let cli = Cli::try_parse_from([
        "fwlog", "summary", "--dir", "outbound", "--proto", "udp", "x.jsonl",
    ])
    .expect("valid command line");
    let Command::Summary(args) = cli.command else {
        panic!("not summary");
    };
    let selection = Selection {
        filter: crate::settings::filter(&args.filter),
        ..Selection::default()
    };
    let report = report_of(LOG.as_bytes().to_vec(), &selection);
    assert_eq!(
        (
            report.lines.verdict,
            report.lines.flow,
            report.lines.filtered_out
        ),
        (1, 1, 7)
    );
    assert!(report.blocked_sources.rows.is_empty());
    assert_eq!(report.outbound_destinations.rows.len(), 1);
    assert_eq!(
        report.outbound_destinations.rows[0].destination,
        "198.51.100.5"
    );
}

#[test]
fn key_limits_count_the_rest_as_other() {
    let mut log = String::new();
    for (i, port) in [
        (1, 22),
        (1, 23),
        (1, 80),
        (2, 22),
        (3, 22),
        (4, 22),
        (4, 25),
    ] {
        log.push_str(&format!(
            r#"{{"timestamp":"2026-11-25T07:00:0{i}Z","event_type":"verdict","action":"drop","direction":"inbound","proto":"tcp","src_ip":"10.0.0.{i}","dest_port":{port}}}"#
        ));
        log.push('\n');
    }
    let limits = Limits {
        keys: 2,
        source_ports: 4,
    };
    let tally = tally_of(log.into_bytes(), &Selection::default(), limits);
    let report = Report::new(&tally, vec![], (None, None), 1);
    let sources = &report.blocked_sources;
    assert_eq!((sources.distinct, sources.rows.len()), (2, 1));
    assert_eq!(
        (sources.rows[0].src_ip.as_str(), sources.rows[0].attempts),
        ("10.0.0.1", 3)
    );
    let other = sources.other.as_ref().expect("an other row");
    assert_eq!((other.src_ip.as_str(), other.attempts), ("other", 3));
    // The (source, port) set filled up at 4 pairs: 10.0.0.4's ports were counted, estimated.
    assert_eq!(other.distinct_dest_ports, 2);
    assert!(other.dest_ports_estimated);
    assert!(!sources.rows[0].dest_ports_estimated);

    let text = render_text(&report);
    assert!(text.contains("more than 2 sources"), "{text}");
    let json = serde_json::to_value(&report).expect("serialisable");
    assert_eq!(json["blocked_sources"]["other"]["attempts"], 3);
    assert_eq!(json["key_limit"], 2);
}

#[test]
fn text_and_json_output() {
    let report = report_of(LOG.as_bytes().to_vec(), &Selection::default());
    let text = render_text(&report);
    for expected in [
        "18 lines: 7 verdict, 2 flow, 1 lost, 1 flows_evicted, 1 stats, 0 other",
        "6 lines skipped",
        "the kernel lost 12 events and evicted 3 flows",
        "203.0.113.7",
        "22, 23",
        "2026-11-25 07:09:10",
        "example.com",
        "21.6 KiB",
        "/usr/bin/curl",
        "22/tcp",
        "2026-11-25 08:00",
    ] {
        assert!(text.contains(expected), "no {expected:?} in\n{text}");
    }
    let json = serde_json::to_value(&report).expect("serialisable");
    assert_eq!(json["lines"]["skipped"], 6);
    assert_eq!(
        json["blocked_sources"]["rows"][0]["first_seen"],
        "2026-11-25T07:09:10.123456Z"
    );
    assert_eq!(
        json["blocked_sources"]["rows"][0]["dest_ports"],
        serde_json::json!([22, 23])
    );
    assert_eq!(json["outbound_destinations"]["rows"][0]["bytes"], 22086);
    assert_eq!(
        json["timeline"]["rows"][2]["hour"],
        "2026-11-25T09:00:00.000000Z"
    );
    assert!(json["blocked_sources"].get("other").is_none());
}

/// The same knock seen by two hosts, one of them twice, and a loss on each side.
const FLEET_LOG: &str = r#"{"timestamp":"2026-11-25T07:09:10.000000Z","host":"edge-1","event_type":"verdict","action":"drop","direction":"inbound","proto":"tcp","src_ip":"203.0.113.7","src_port":1,"dest_ip":"192.0.2.10","dest_port":22}
{"timestamp":"2026-11-25T07:09:11.000000Z","host":"edge-1","event_type":"verdict","action":"drop","direction":"inbound","proto":"tcp","src_ip":"203.0.113.7","src_port":2,"dest_ip":"192.0.2.10","dest_port":22}
{"timestamp":"2026-11-25T07:09:12.000000Z","host":"edge-2","event_type":"verdict","action":"drop","direction":"inbound","proto":"tcp","src_ip":"203.0.113.7","src_port":3,"dest_ip":"192.0.2.11","dest_port":22}
{"timestamp":"2026-11-25T07:09:13.000000Z","host":"edge-2","event_type":"flow","direction":"outbound","proto":"udp","src_ip":"192.0.2.11","src_port":5353,"dest_ip":"198.51.100.5","dest_port":53,"flow":{"bytes_toserver":60,"bytes_toclient":120,"reason":"idle"}}
{"timestamp":"2026-11-25T07:09:14.000000Z","host":"edge-2","event_type":"lost","where":"ring","count":4}
{"timestamp":"2026-11-25T07:09:15.000000Z","host":"edge-1","event_type":"lost","where":"export","count":9}
"#;

#[test]
fn several_hosts_get_a_table_and_a_column() {
    let report = report_of(FLEET_LOG.as_bytes().to_vec(), &Selection::default());
    assert!(report.several_hosts());
    let json = serde_json::to_value(&report).expect("serialisable");
    assert_eq!(json["hosts"]["rows"][0]["host"], "edge-1");
    assert_eq!(json["hosts"]["rows"][0]["verdicts"], 2);
    assert_eq!(json["hosts"]["rows"][1]["host"], "edge-2");
    assert_eq!(json["hosts"]["rows"][1]["flows"], 1);
    assert_eq!(json["hosts"]["rows"][1]["bytes"], 180);
    assert_eq!(json["hosts"]["rows"][1]["events_lost"], 4);
    assert_eq!((report.events_lost, report.flows_lost_to_export), (4, 9));
    assert_eq!(
        json["blocked_sources"]["rows"][0]["hosts"],
        serde_json::json!(["edge-1", "edge-2"])
    );
    assert_eq!(json["local_ports"]["rows"][0]["attempts"], 3);
    let text = render_text(&report);
    for expected in [
        "\nHosts\n",
        "edge-1, edge-2",
        "the IPFIX exporter lost 9 flows",
        "hosts",
    ] {
        assert!(text.contains(expected), "no {expected:?} in\n{text}");
    }
}

#[test]
fn one_host_gets_no_host_column() {
    let one: String = FLEET_LOG
        .lines()
        .take(2)
        .map(|l| format!("{l}\n"))
        .collect();
    let report = report_of(one.into_bytes(), &Selection::default());
    assert!(!report.several_hosts());
    let text = render_text(&report);
    assert!(!text.contains("hosts"), "{text}");
    assert!(!text.contains("Hosts"), "{text}");
}

#[test]
fn a_corrupt_input_is_reported_and_the_others_still_count() {
    let dir = std::env::temp_dir().join(format!("fwlog-summary-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let good = dir.join("fw.jsonl");
    let corrupt = dir.join("fw.jsonl.1.gz");
    std::fs::write(&good, LOG).expect("write");
    // A whole log compressed, then a run of its deflate stream overwritten mid-way.
    let mut bytes = gzip(LOG.repeat(20).as_bytes());
    let middle = bytes.len() / 2;
    bytes[middle..middle + 64].fill(0xa5);
    std::fs::write(&corrupt, bytes).expect("write");
    let inputs: Vec<Input> = [&corrupt, &dir.join("missing.jsonl"), &good]
        .into_iter()
        .map(|path| Input::from_arg(path))
        .collect();

    let mut tally = Tally::new(Limits::default());
    let files = tally_inputs(&inputs, &mut tally, &Selection::default());
    assert_eq!(files.len(), 3);
    let (bad, missing, fine) = (&files[0], &files[1], &files[2]);
    assert!(bad.error.is_some(), "{bad:?}");
    assert!(bad.lines < 20 * 18, "stopped early: {bad:?}");
    assert!(
        missing
            .error
            .as_deref()
            .is_some_and(|e| e.contains("missing.jsonl")),
        "{missing:?}"
    );
    assert_eq!(missing.lines, 0);
    assert_eq!(
        (fine.lines, fine.skipped, fine.error.as_deref()),
        (18, 6, None)
    );
    // The good file is counted whole, after the bad ones.
    assert_eq!(tally.lines.read, bad.lines + 18);

    let report = Report::new(&tally, files, (None, None), 10);
    let text = render_text(&report);
    assert!(
        text.contains(&format!("  {}: 18 lines (6 skipped)\n", good.display())),
        "{text}"
    );
    assert!(text.contains(", then UNREADABLE: "), "{text}");
    let json = serde_json::to_value(&report).expect("serialisable");
    assert_eq!(json["files"][2]["lines"], 18);
    assert!(json["files"][0]["error"].is_string());
    assert!(json["files"][2].get("error").is_none());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn names_from_the_lines_cannot_drive_the_terminal_or_forge_rows() {
    let hostile = "evil\\u001b]0;owned\\u0007\\u001b[2J\\n| 6.6.6.6 | 999 |\\u009b31m\\u202e";
    let log = format!(
        r#"{{"timestamp":"2026-11-25T09:00:00.000000Z","event_type":"verdict","action":"accept","direction":"outbound","proto":"tcp","src_ip":"192.0.2.10","src_port":1,"dest_ip":"198.51.100.4","dest_port":443,"dest_host":"{hostile}","process":{{"pid":1,"comm":"{hostile}","exe":"/x/{hostile}"}}}}
{{"timestamp":"2026-11-25T09:00:01.000000Z","host":"{hostile}","event_type":"verdict","action":"drop","direction":"inbound","proto":"tcp","src_ip":"203.0.113.7","src_port":1,"dest_ip":"192.0.2.10","dest_port":22}}
{{"timestamp":"2026-11-25T09:00:02.000000Z","host":"edge-1","event_type":"verdict","action":"drop","direction":"inbound","proto":"tcp","src_ip":"203.0.113.7","src_port":2,"dest_ip":"192.0.2.10","dest_port":22}}
"#
    );
    let mut tally = Tally::new(Limits::default());
    let file = tally_input(
        "bad\u{1b}[2Jname".to_string(),
        || Ok(decompressed(Cursor::new(log.into_bytes()))?),
        &mut tally,
        &Selection::default(),
    );
    assert_eq!((file.lines, file.skipped), (3, 0), "{file:?}");
    let text = render_text(&Report::new(&tally, vec![file], (None, None), 10));
    assert!(
        !text
            .chars()
            .any(|c| c != '\n' && crate::printable::is_unsafe(c)),
        "{text:?}"
    );
    assert!(
        text.contains("evil\\u{1b}]0;owned"),
        "escaped, still there: {text}"
    );
    assert!(text.contains("bad\\u{1b}[2Jname"), "{text}");
    assert!(!text.contains("\n| 6.6.6.6"), "no forged row: {text}");
}
