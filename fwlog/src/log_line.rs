//! One of fwlog's JSON lines read back, borrowing from the line's buffer: only the fields
//! `summary` and the filters (`filter.rs`) use (serde skips the rest). Below both, so that
//! neither reaches into the other.

use std::borrow::Cow;

use serde::{Deserialize, Deserializer};

/// The fields of a `verdict`, `flow`, `lost`, `flows_evicted` or `stats` line that `summary`
/// reads. Strings are borrowed unless they hold escapes.
#[derive(Debug, Default, Deserialize)]
pub struct LogLine<'a> {
    #[serde(borrow, default, deserialize_with = "text")]
    pub timestamp: Option<Cow<'a, str>>,
    /// The machine the line came from (absent in lines of older fwlog versions).
    #[serde(borrow, default, deserialize_with = "text")]
    pub host: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "text")]
    pub event_type: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "text")]
    pub action: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "text")]
    pub direction: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "text")]
    pub proto: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "text")]
    pub src_ip: Option<Cow<'a, str>>,
    pub src_port: Option<u16>,
    #[serde(borrow, default, deserialize_with = "text")]
    pub dest_ip: Option<Cow<'a, str>>,
    pub dest_port: Option<u16>,
    #[serde(borrow, default, deserialize_with = "text")]
    pub src_host: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "text")]
    pub dest_host: Option<Cow<'a, str>>,
    /// `lost`, `flows_evicted`.
    pub count: Option<u64>,
    /// `lost`: `ring` (also when absent, as older fwlog versions wrote it) or `export`.
    #[serde(borrow, default, deserialize_with = "text", rename = "where")]
    pub lost_at: Option<Cow<'a, str>>,
    pub flow: Option<FlowPart>,
    #[serde(borrow)]
    pub process: Option<ProcessPart<'a>>,
}

/// The `flow` object of a flow line.
#[derive(Debug, Default, Deserialize)]
pub struct FlowPart {
    pub bytes_toserver: Option<u64>,
    pub bytes_toclient: Option<u64>,
}

/// The `process` object: who owned the socket.
#[derive(Debug, Default, Deserialize)]
pub struct ProcessPart<'a> {
    #[serde(borrow, default, deserialize_with = "text")]
    pub comm: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "text")]
    pub exe: Option<Cow<'a, str>>,
}

/// An optional string, borrowed from the line unless it holds escapes. (serde borrows a
/// `Cow<str>` field only when it is not inside an `Option`, hence the newtype.)
fn text<'de: 'a, 'a, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Cow<'a, str>>, D::Error> {
    #[derive(Deserialize)]
    struct Text<'a>(#[serde(borrow)] Cow<'a, str>);
    Ok(Option::<Text>::deserialize(deserializer)?.map(|text| text.0))
}

impl LogLine<'_> {
    /// Parses one line; `None` for anything that is not a JSON object with these fields' types.
    pub fn parse(bytes: &[u8]) -> Option<LogLine<'_>> {
        // serde would also accept a JSON array for a struct; a fwlog line is an object.
        let first = bytes.iter().find(|b| !b.is_ascii_whitespace())?;
        if *first != b'{' {
            return None;
        }
        serde_json::from_slice(bytes).ok()
    }

    /// Bytes both ways of a flow line.
    pub fn flow_bytes(&self) -> u64 {
        self.flow.as_ref().map_or(0, |flow| {
            flow.bytes_toserver
                .unwrap_or(0)
                .saturating_add(flow.bytes_toclient.unwrap_or(0))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn borrowed_unless_escaped() {
        let line = br#"{"timestamp":"2026-11-25T07:09:10Z","event_type":"flow","dest_host":"ex\u0061mple.com","src_ip":"10.0.0.1","src_port":53,"unknown":{"nested":[1,2]},"process":{"comm":"curl","pid":1},"flow":{"bytes_toserver":10,"bytes_toclient":5,"reason":"fin"}}"#;
        let parsed = LogLine::parse(line).expect("a fwlog line");
        assert!(matches!(parsed.src_ip, Some(Cow::Borrowed("10.0.0.1"))));
        assert_eq!(parsed.dest_host.as_deref(), Some("example.com"));
        assert_eq!(parsed.src_port, Some(53));
        assert_eq!(parsed.flow_bytes(), 15);
        let process = parsed.process.expect("process");
        assert_eq!((process.comm.as_deref(), process.exe), (Some("curl"), None));
    }

    #[test]
    fn not_objects_or_wrong_types_are_refused() {
        for line in [
            &b"[1,2]"[..],
            b"\"text\"",
            b"42",
            b"",
            b"{\"src_port\":70000}",
            b"{\"src_port\":\"22\"}",
            b"{\"flow\":3}",
            b"{\"timestamp\":\"x\"} trailing",
            b"\xff\xfe",
        ] {
            assert!(
                LogLine::parse(line).is_none(),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
        assert!(LogLine::parse(b"  {}  ").is_some());
    }
}
