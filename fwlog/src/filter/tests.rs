//! Every filter on the three representations of the same two events: the collector's verdict
//! and flow records, and the JSON lines fwlog writes for them (what `summary` reads back).

use clap::Parser;

use super::*;
use crate::{
    args::FilterArgs,
    record::{
        test_records::{
            curl_extras, inbound_tcp_syn, inbound_verdict, outbound_flow, outbound_tcp_flow,
        },
        Extras,
    },
};

/// The README's verdict example: 203.0.113.7:51234 → 192.0.2.10:22, tcp, inbound, drop.
const VERDICT_LINE: &str = r#"{"timestamp":"2026-11-25T07:09:10.123456Z","event_type":"verdict","action":"drop","ct_state":"new","direction":"inbound","in_iface":"wlan0","chain":"LOG_AND_DROP","ip_version":4,"proto":"tcp","src_ip":"203.0.113.7","src_port":51234,"dest_ip":"192.0.2.10","dest_port":22,"len":60,"tcp_flags":"S"}"#;
/// The README's flow example: 192.0.2.10:40122 → 198.51.100.4:443, tcp, outbound, accept, to
/// example.com by curl.
const FLOW_LINE: &str = r#"{"timestamp":"2026-11-25T07:09:22.626530Z","event_type":"flow","direction":"outbound","in_iface":"wlan0","ip_version":4,"proto":"tcp","src_ip":"192.0.2.10","src_port":40122,"dest_ip":"198.51.100.4","dest_port":443,"action":"accept","ct_state":"new","tcp_flags":"SAFP","dest_host":"example.com","process":{"pid":1234,"comm":"curl","exe":"/usr/bin/curl"},"flow":{"bytes_toserver":2210,"bytes_toclient":19876,"reason":"fin"}}"#;

#[derive(Parser)]
struct FilterCli {
    #[command(flatten)]
    filter: FilterArgs,
}

fn filter(args: &[&str]) -> Filter {
    let cli = FilterCli::try_parse_from(std::iter::once("fwlog").chain(args.iter().copied()))
        .unwrap_or_else(|error| panic!("{args:?}: {error}"));
    crate::settings::filter(&cli.filter)
}

/// (arguments, keeps the verdict, keeps the flow)
const CASES: &[(&[&str], bool, bool)] = &[
    (&[], true, true),
    (&["--action", "drop"], true, false),
    (&["--action", "accept,reject"], false, true),
    (&["--action", "reject"], false, false),
    (&["--dir", "inbound"], true, false),
    (&["--dir", "outbound"], false, true),
    (&["--dir", "forward"], false, false),
    (&["--dir", "inbound", "--dir", "outbound"], true, true),
    (&["--proto", "tcp"], true, true),
    (&["--proto", "6"], true, true),
    (&["--proto", "UDP"], false, false),
    (&["--proto", "udp,icmp"], false, false),
    (&["--port", "22"], true, false),
    (&["--port", "51234"], true, false),
    (&["--port", "443"], false, true),
    (&["--port", "40122"], false, true),
    (&["--port", "80,22"], true, false),
    (&["--port", "80"], false, false),
    (&["--host", "203.0.113.7"], true, false),
    (&["--host", "203.0.113.0/24"], true, false),
    (&["--host", "192.0.2.10"], true, true),
    (&["--host", "198.51.100.0/22"], false, true),
    (&["--host", "0.0.0.0/0"], true, true),
    (&["--host", "2001:db8::/32"], false, false),
    (&["--host", "example.com"], false, true),
    (&["--host", "EXAMPLE.com."], false, true),
    (&["--host", "example.org"], false, false),
    (
        &["--host", "example.org", "--host", "203.0.113.7"],
        true,
        false,
    ),
    (&["--action", "drop", "--port", "443"], false, false),
    (
        &[
            "--dir",
            "outbound",
            "--host",
            "example.com",
            "--proto",
            "tcp",
        ],
        false,
        true,
    ),
];

#[test]
fn filters_on_records() {
    let event = inbound_tcp_syn();
    let no_extras = Extras::default();
    let verdict = inbound_verdict(&event, &no_extras);
    let (key, stats) = outbound_tcp_flow();
    let extras = curl_extras();
    let flow = outbound_flow(&key, &stats, &extras);
    for (args, keeps_verdict, keeps_flow) in CASES {
        let filter = filter(args);
        assert_eq!(
            filter.matches_verdict(&verdict),
            *keeps_verdict,
            "verdict {args:?}"
        );
        assert_eq!(filter.matches_flow(&flow), *keeps_flow, "flow {args:?}");
    }
}

#[test]
fn filters_on_json_lines() {
    let verdict = LogLine::parse(VERDICT_LINE.as_bytes()).expect("verdict line");
    let flow = LogLine::parse(FLOW_LINE.as_bytes()).expect("flow line");
    for (args, keeps_verdict, keeps_flow) in CASES {
        let filter = filter(args);
        assert_eq!(
            filter.matches_json(&verdict),
            *keeps_verdict,
            "verdict {args:?}"
        );
        assert_eq!(filter.matches_json(&flow), *keeps_flow, "flow {args:?}");
    }
}

#[test]
fn lines_without_the_field_do_not_match_its_filter() {
    let icmp = r#"{"timestamp":"2026-11-25T07:09:10Z","event_type":"verdict","direction":"inbound","proto":"icmp","src_ip":"10.0.0.1","dest_ip":"10.0.0.2","icmp_type":8,"icmp_code":0}"#;
    let icmp = LogLine::parse(icmp.as_bytes()).expect("line");
    assert!(!filter(&["--port", "8"]).matches_json(&icmp));
    assert!(!filter(&["--action", "accept"]).matches_json(&icmp));
    assert!(filter(&["--proto", "icmp"]).matches_json(&icmp));
    assert!(filter(&["--host", "10.0.0.0/8"]).matches_json(&icmp));
    let gre = r#"{"timestamp":"2026-11-25T07:09:10Z","event_type":"verdict","proto":"47"}"#;
    assert!(filter(&["--proto", "47"]).matches_json(&LogLine::parse(gre.as_bytes()).expect("line")));

    let mut event = inbound_tcp_syn();
    event.packet.flags = 0;
    let extras = Extras::default();
    assert!(!filter(&["--port", "22"]).matches_verdict(&inbound_verdict(&event, &extras)));
}

#[test]
fn bad_values_are_refused_with_a_hint() {
    for args in [
        &["--proto", "bogus"][..],
        &["--proto", "256"],
        &["--host", "10.0.0.0/33"],
        &["--host", "fd00::/129"],
        &["--host", "not a name"],
        &["--host", "10.0.0.1/x"],
        &["--port", "65536"],
        &["--action", "allow"],
        &["--dir", "in"],
    ] {
        let parsed =
            FilterCli::try_parse_from(std::iter::once("fwlog").chain(args.iter().copied()));
        assert!(parsed.is_err(), "{args:?} was accepted");
    }
    assert_eq!(
        "10.1.2.3/8".parse::<HostPattern>().map(|p| p.to_string()),
        Ok("10.1.2.3/8".to_string())
    );
    assert_eq!(
        "Example.COM.".parse::<HostPattern>(),
        Ok(HostPattern::Name("example.com".into()))
    );
}
