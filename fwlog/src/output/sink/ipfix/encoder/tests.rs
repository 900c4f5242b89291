//! The encoder's messages read back with netflow_parser's parser (the kernel tests read them
//! with nfdump and libfixbuf's ipfixDump, which share no code with it).

use std::net::IpAddr;

use netflow_parser::{
    variable_versions::{
        field_value::FieldValue,
        ipfix::{lookup::IPFixField, FlowSetBody, IPFix},
    },
    NetflowPacket, NetflowParser,
};

use super::*;
use crate::record::{
    test_records::{curl_extras, outbound_flow, outbound_tcp_flow},
    Extras,
};

fn options() -> EncoderOptions {
    EncoderOptions {
        enterprise: crate::endpoints::DEFAULT_IPFIX_ENTERPRISE,
        observation_domain: 7,
        host: HostIdentity::fixed("edge-1", Some("0123456789abcdef0123456789abcdef")),
    }
}

fn curl_flow() -> ExportFlow {
    let (key, stats) = outbound_tcp_flow();
    ExportFlow::of(&outbound_flow(&key, &stats, &curl_extras())).expect("an IPv4 flow")
}

fn parse(messages: &[Message]) -> Vec<IPFix> {
    let mut parser = NetflowParser::default();
    messages
        .iter()
        .flat_map(|message| {
            let result = parser.parse_bytes(&message.bytes);
            assert!(result.error.is_none(), "{:?}", result.error);
            result.packets
        })
        .map(|packet| match packet {
            NetflowPacket::IPFix(ipfix) => ipfix,
            other => panic!("not IPFIX: {other:?}"),
        })
        .collect()
}

/// The data records of `messages`, as (element number, enterprise, value) lists.
fn data_records(messages: &[IPFix]) -> Vec<Vec<(IPFixField, FieldValue)>> {
    messages
        .iter()
        .flat_map(|message| &message.flowsets)
        .filter_map(|set| match &set.body {
            FlowSetBody::Data(data) => Some(data.fields.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

/// The value of `field` in `record`, read back as the big-endian number it is on the wire
/// (the parser gives some elements types of their own: protocols, end reasons, flags).
fn number(record: &[(IPFixField, FieldValue)], field: IPFixField) -> Option<u64> {
    record.iter().find(|(f, _)| *f == field).map(|(_, value)| {
        let mut bytes = Vec::new();
        value.write_be_bytes(&mut bytes).expect("writes");
        assert!(bytes.len() <= 8, "{field:?} is not a number: {value:?}");
        bytes.iter().fold(0, |n, b| n << 8 | u64::from(*b))
    })
}

fn iana(id: u16) -> IPFixField {
    IPFixField::new(id, None)
}

#[test]
fn a_flow_reads_back_with_its_tuple_counts_times_and_extras() {
    let mut encoder = Encoder::new(options());
    let messages = encoder
        .encode(&[curl_flow()], 1400, 1_795_590_563)
        .expect("encodes");
    // The type records first, then the template with the data.
    assert_eq!(messages.len(), 2);
    assert_eq!((messages[0].flows, messages[1].flows), (0, 1));
    let parsed = parse(&messages);
    assert_eq!(parsed[0].header.observation_domain_id, 7);
    let records = data_records(&parsed);
    assert_eq!(records.len(), 1);
    let record = &records[0];
    let address = |id| {
        record
            .iter()
            .find(|(f, _)| *f == iana(id))
            .map(|(_, v)| IpAddr::try_from(v).expect("an address"))
    };
    assert_eq!(address(8), Some("192.0.2.10".parse().expect("ip")));
    assert_eq!(address(12), Some("198.51.100.4".parse().expect("ip")));
    assert_eq!(number(record, iana(7)), Some(40122));
    assert_eq!(number(record, iana(11)), Some(443));
    assert_eq!(number(record, iana(4)), Some(6));
    assert_eq!(number(record, iana(1)), Some(2210));
    assert_eq!(number(record, iana(2)), Some(14));
    let reverse = |id| IPFixField::new(id, Some(ie::REVERSE_PEN));
    assert_eq!(number(record, reverse(1)), Some(19876));
    assert_eq!(number(record, reverse(2)), Some(18));
    assert_eq!(number(record, iana(10)), Some(3));
    assert_eq!(
        number(record, iana(136)),
        Some(3),
        "fin: end of flow detected"
    );
    assert_eq!(number(record, iana(61)), Some(1), "outbound: egress");
    assert_eq!(number(record, iana(233)), Some(2), "accepted, ended");
    assert_eq!(number(record, iana(6)), Some(0x1b));
    let pen =
        |extra: Extra| IPFixField::new(extra.id, Some(crate::endpoints::DEFAULT_IPFIX_ENTERPRISE));
    assert_eq!(number(record, pen(ie::PROCESS_ID)), Some(1234));
    assert_eq!(number(record, pen(ie::PROCESS_USER_ID)), Some(1000));
}

#[test]
fn message_bytes_are_rfc_7011_framed() {
    let mut encoder = Encoder::new(options());
    let messages = encoder
        .encode(&[curl_flow()], 1400, 1_795_590_563)
        .expect("encodes");
    for message in &messages {
        let bytes = &message.bytes;
        assert_eq!(&bytes[..2], &[0, 10], "version 10");
        assert_eq!(
            usize::from(u16::from_be_bytes([bytes[2], bytes[3]])),
            bytes.len()
        );
        assert_eq!(&bytes[4..8], &1_795_590_563u32.to_be_bytes());
        // Sets tile the message exactly.
        let mut offset = 16;
        while offset < bytes.len() {
            let length = usize::from(u16::from_be_bytes([bytes[offset + 2], bytes[offset + 3]]));
            assert!(length >= 4 && length % 4 == 0, "set length {length}");
            offset += length;
        }
        assert_eq!(offset, bytes.len());
    }
    // The data message's sequence number counts the type records sent before it.
    let data = &messages[1].bytes;
    assert_eq!(
        u32::from_be_bytes([data[8], data[9], data[10], data[11]]),
        ie::EXTRAS.len() as u32
    );
}

#[test]
fn strings_travel_as_variable_length_fields() {
    let mut encoder = Encoder::new(options());
    let messages = encoder.encode(&[curl_flow()], 1400, 0).expect("encodes");
    let bytes: Vec<u8> = messages.iter().flat_map(|m| m.bytes.clone()).collect();
    for text in [
        "/usr/bin/curl",
        "alice",
        "session-2.scope",
        "1:LQU9qZlK+B5F3KDmev6m5PMibrg=",
        "example.com",
        "edge-1",
        "0123456789abcdef0123456789abcdef",
        "accept",
        "wlan0",
        "fwlogProcessExecutable",
    ] {
        let mut prefixed = vec![text.len() as u8];
        prefixed.extend_from_slice(text.as_bytes());
        assert!(
            bytes.windows(prefixed.len()).any(|w| w == prefixed),
            "{text} is not in the messages"
        );
    }
}

#[test]
fn templates_are_announced_once_per_session_and_again_after_a_refresh() {
    let mut encoder = Encoder::new(options());
    let first = encoder.encode(&[curl_flow()], 1400, 0).expect("encodes");
    let second = encoder.encode(&[curl_flow()], 1400, 0).expect("encodes");
    let has_template = |message: &Message| {
        parse(std::slice::from_ref(message)).iter().any(|m| {
            m.flowsets.iter().any(|set| {
                matches!(
                    set.body,
                    FlowSetBody::Templates(_) | FlowSetBody::Template(_)
                )
            })
        })
    };
    assert!(has_template(&first[1]));
    assert_eq!(second.len(), 1, "no type records the second time");
    assert!(!has_template(&second[0]));
    encoder.refresh_templates();
    let refresh = encoder.encode(&[], 1400, 0).expect("encodes");
    assert_eq!(refresh.len(), 2, "type records, then the templates alone");
    assert!(has_template(&refresh[1]));
    assert_eq!(refresh[1].flows, 0);
    encoder.new_session();
    let after_reconnect = encoder.encode(&[curl_flow()], 1400, 0).expect("encodes");
    assert_eq!(after_reconnect.len(), 2);
    let header = &after_reconnect[0].bytes;
    assert_eq!(&header[8..12], &[0, 0, 0, 0], "a new session counts from 0");
}

#[test]
fn flows_without_a_value_leave_its_element_out_and_get_their_own_template() {
    let (key, stats) = outbound_tcp_flow();
    let bare = ExportFlow::of(&outbound_flow(&key, &stats, &Extras::default())).expect("flow");
    let mut encoder = Encoder::new(options());
    let messages = encoder
        .encode(&[curl_flow(), bare], 1400, 0)
        .expect("encodes");
    let parsed = parse(&messages);
    let records = data_records(&parsed);
    assert_eq!(records.len(), 2);
    let pen =
        |extra: Extra| IPFixField::new(extra.id, Some(crate::endpoints::DEFAULT_IPFIX_ENTERPRISE));
    assert!(number(&records[0], pen(ie::PROCESS_ID)).is_some());
    assert!(number(&records[1], pen(ie::PROCESS_ID)).is_none());
    assert_eq!(number(&records[1], iana(1)), Some(2210));
}

#[test]
fn messages_stay_within_the_budget() {
    let flows = vec![curl_flow(); 40];
    let mut encoder = Encoder::new(options());
    let messages = encoder.encode(&flows, 1400, 0).expect("encodes");
    assert!(messages.len() > 3, "{} messages", messages.len());
    assert!(messages.iter().all(|m| m.bytes.len() <= 1400));
    assert_eq!(messages.iter().map(|m| m.flows).sum::<u32>(), 40);
    assert_eq!(data_records(&parse(&messages)).len(), 40);
}
