//! Names from the wire and from processes, through every line format and on to syslog: no
//! byte a terminal acts on arrives raw, and a line stays one line.

use std::{os::unix::net::UnixDatagram, time::Duration};

use jiff::tz::TimeZone;

use super::{ecs::EcsWriter, json::JsonWriter, text::TextWriter, EventWriter};
use crate::{
    output::sink::syslog::SyslogSink,
    printable::is_unsafe,
    record::test_records::{curl_extras, outbound_flow, outbound_tcp_flow, test_host},
};

/// A terminal title, a screen clear, a forged second line, a C1 CSI, a bidi override.
const HOSTILE: &str = "x\x1b]0;owned\x07\x1b[2J\n07:09:10.123 accept\u{9b}31m \u{202e}gnp";

fn lines() -> Vec<(&'static str, Vec<u8>)> {
    let (key, stats) = outbound_tcp_flow();
    let mut extras = curl_extras();
    if let Some(process) = &mut extras.process {
        process.comm = HOSTILE.to_string();
    }
    extras.dest_host = Some(HOSTILE.into());
    let record = outbound_flow(&key, &stats, &extras);
    let host = test_host();
    let mut writers: Vec<(&str, Box<dyn EventWriter>)> = vec![
        ("json", Box::new(JsonWriter::new(&host))),
        ("ecs", Box::new(EcsWriter::new(&host))),
        (
            "text",
            Box::new(TextWriter::with_time_zone(false, TimeZone::UTC, &host)),
        ),
    ];
    writers
        .iter_mut()
        .map(|(format, writer)| {
            let mut out = Vec::new();
            writer.flow(&mut out, &record);
            (*format, out)
        })
        .collect()
}

#[test]
fn every_format_escapes_them_and_syslog_gets_them_escaped() {
    let path = std::env::temp_dir().join(format!("fwlog-hostile-devlog-{}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let daemon = UnixDatagram::bind(&path).expect("bind a stand-in /dev/log");
    daemon
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("a read timeout");
    let mut sink = SyslogSink::connect_to(&path, "FW").expect("connect to it");
    for (format, line) in lines() {
        let text = String::from_utf8(line.clone()).expect("UTF-8");
        let body = text.strip_suffix('\n').expect("ends its line");
        assert!(!body.contains('\n'), "{format}: one line: {text}");
        assert!(!body.chars().any(is_unsafe), "{format}: {body:?}");
        assert!(
            body.contains("owned"),
            "{format}: the name is there, escaped: {body}"
        );
        sink.send_lines(&line).expect("send");
        let mut datagram = vec![0; 16 << 10];
        let len = daemon.recv(&mut datagram).expect("one datagram per line");
        let datagram = String::from_utf8(datagram[..len].to_vec()).expect("UTF-8");
        assert!(datagram.ends_with(body), "{format}: {datagram}");
        assert!(!datagram.chars().any(is_unsafe), "{format}: {datagram:?}");
    }
    let _ = std::fs::remove_file(&path);
}
