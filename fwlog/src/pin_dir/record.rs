//! The record at the head of a pin directory: which namespace and which fwlog instance made it,
//! and how far it got. bpffs holds only BPF objects, so the record is a JSON document in a
//! one-entry array map pinned as `record`, created before anything else and removed last.

use std::path::Path;

use anyhow::{bail, Context as _, Result};
use aya::maps::{Array, Map, MapData};
use serde::{Deserialize, Serialize};

use crate::netns::NetNs;

/// The record's pin, in the pin directory.
pub const RECORD_PIN: &str = "record";
/// The map value: a little-endian `u32` length, then that many bytes of JSON.
const RECORD_BYTES: usize = 8192;
type RecordValue = [u8; RECORD_BYTES];

/// What kind of instance made the directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// `fwlog watch`: removed when it stops.
    Session,
    /// `fwlog install`: stays until `fwlog uninstall`.
    Installed,
}

/// How far the instance got.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// From the first pin until everything (pins, rules, links) is in place.
    Installing,
    /// In place.
    Active,
    /// From the first removal step until the directory is gone.
    Removing,
}

impl Mode {
    pub const fn as_str(self) -> &'static str {
        match self {
            Mode::Session => "session",
            Mode::Installed => "installed",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub version: u32,
    /// Random, per instance; also in the comment of the rules the instance adds.
    pub id: String,
    pub netns_inode: u64,
    /// `SO_NETNS_COOKIE` (Linux 5.14+): unique for the whole boot, unlike the inode.
    pub netns_cookie: Option<u64>,
    pub pid: u32,
    pub mode: Mode,
    pub state: Phase,
    #[serde(default)]
    pub interfaces: Vec<String>,
    /// Fields of newer fwlog versions, kept as they are when this version rewrites the record.
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

impl Record {
    pub fn new(netns: NetNs, mode: Mode) -> Result<Self> {
        Ok(Record {
            version: 1,
            id: creation_id()?,
            netns_inode: netns.inode,
            netns_cookie: netns.cookie,
            pid: std::process::id(),
            mode,
            state: Phase::Installing,
            interfaces: Vec::new(),
            other: serde_json::Map::new(),
        })
    }

    /// Creates the record's map in `dir` (which must exist) and pins it.
    pub fn create(&self, dir: &Path) -> Result<()> {
        let mut map = Array::<MapData, RecordValue>::create(1, 0)
            .context("creating the pin directory's record (a BPF array map)")?;
        map.set(0, self.encode()?, 0)
            .context("writing the pin directory's record")?;
        let path = dir.join(RECORD_PIN);
        map.pin(&path)
            .with_context(|| format!("pinning {}", path.display()))
    }

    /// Rewrites the record pinned in `dir`.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let mut map = open(dir)?;
        map.set(0, self.encode()?, 0)
            .with_context(|| format!("writing {}", dir.join(RECORD_PIN).display()))
    }

    /// The record pinned in `dir`: `None` when there is none (a directory made by an fwlog
    /// older than records, or one whose removal got past the record).
    pub fn read(dir: &Path) -> Result<Option<Record>> {
        if !dir.join(RECORD_PIN).exists() {
            return Ok(None);
        }
        let map = open(dir)?;
        // A writer holds the namespace's lock, a reader does not: a torn read is possible
        // while an instance changes phase, so read again before calling the record bad.
        let mut last_error = None;
        for _ in 0..3 {
            let value = map
                .get(&0, 0)
                .with_context(|| format!("reading {}", dir.join(RECORD_PIN).display()))?;
            match decode(&value) {
                Ok(record) => return Ok(Some(record)),
                Err(error) => last_error = Some(error),
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("no record")))
            .with_context(|| format!("{} is not an fwlog record", dir.join(RECORD_PIN).display()))
    }

    /// The comment of the rules this instance adds.
    pub fn rule_tag(&self) -> String {
        crate::firewall::rule_tag(&self.id)
    }

    fn encode(&self) -> Result<RecordValue> {
        let json = serde_json::to_vec(self).context("encoding the record")?;
        let mut value = [0u8; RECORD_BYTES];
        let Some(body) = value.get_mut(4..4 + json.len()) else {
            bail!(
                "the record is {} bytes, more than its {RECORD_BYTES}-byte map holds",
                json.len()
            );
        };
        body.copy_from_slice(&json);
        value[..4].copy_from_slice(&(json.len() as u32).to_le_bytes());
        Ok(value)
    }
}

fn open(dir: &Path) -> Result<Array<MapData, RecordValue>> {
    let path = dir.join(RECORD_PIN);
    let data = MapData::from_pin(&path).with_context(|| format!("opening {}", path.display()))?;
    Array::try_from(Map::Array(data))
        .with_context(|| format!("{} is not an fwlog record map", path.display()))
}

fn decode(value: &RecordValue) -> Result<Record> {
    let mut length = [0u8; 4];
    length.copy_from_slice(&value[..4]);
    let length = u32::from_le_bytes(length) as usize;
    let body = value
        .get(4..4 + length)
        .context("the record's length is past its end")?;
    serde_json::from_slice(body).context("the record is not JSON fwlog wrote")
}

/// 16 random hex digits, from the kernel's UUID generator (no crate needed for 64 random bits).
fn creation_id() -> Result<String> {
    let uuid = std::fs::read_to_string("/proc/sys/kernel/random/uuid")
        .context("reading /proc/sys/kernel/random/uuid")?;
    let id: String = uuid
        .chars()
        .filter(char::is_ascii_hexdigit)
        .take(16)
        .collect();
    if id.len() != 16 {
        bail!("/proc/sys/kernel/random/uuid gave {uuid:?}, not a UUID");
    }
    Ok(id.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Record {
        Record {
            version: 1,
            id: "1a2b3c4d5e6f7081".into(),
            netns_inode: 4_026_532_289,
            netns_cookie: Some(4097),
            pid: 42,
            mode: Mode::Installed,
            state: Phase::Active,
            interfaces: vec!["eth0".into()],
            other: serde_json::Map::new(),
        }
    }

    #[test]
    fn encodes_and_decodes() {
        let record = record();
        let value = record.encode().expect("fits");
        assert_eq!(decode(&value).expect("decodes"), record);
        let json = String::from_utf8_lossy(&value[4..])
            .trim_end_matches('\0')
            .to_string();
        assert!(
            json.contains("\"mode\":\"installed\",\"state\":\"active\""),
            "{json}"
        );
    }

    #[test]
    fn keeps_fields_it_does_not_know() {
        let json = br#"{"version":1,"id":"1a2b3c4d5e6f7081","netns_inode":7,"netns_cookie":null,"pid":1,"mode":"session","state":"installing","tc_filters":[{"ifindex":2}]}"#;
        let mut value = [0u8; RECORD_BYTES];
        value[..4].copy_from_slice(&(json.len() as u32).to_le_bytes());
        value[4..4 + json.len()].copy_from_slice(json);
        let record = decode(&value).expect("decodes");
        assert_eq!(record.mode, Mode::Session);
        assert!(record.interfaces.is_empty());
        let again = record.encode().expect("fits");
        assert!(String::from_utf8_lossy(&again).contains("\"tc_filters\":[{\"ifindex\":2}]"));
    }

    #[test]
    fn refuses_what_is_not_a_record() {
        let mut value = [0u8; RECORD_BYTES];
        assert!(decode(&value).is_err(), "empty");
        value[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode(&value).is_err(), "length past the end");
        let big = Record {
            interfaces: vec!["x".repeat(RECORD_BYTES)],
            ..record()
        };
        assert!(big.encode().is_err());
    }

    #[test]
    fn creation_ids_are_16_hex_digits_and_differ() {
        let one = creation_id().expect("an id");
        assert_eq!(one.len(), 16);
        assert!(one.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(one, creation_id().expect("another"));
    }
}
