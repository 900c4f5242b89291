//! Rules for single values (interface names, prefixes, sizes, ranges) and the serde hooks
//! that apply them while the file is read, so toml places an error at the value.

use std::{fmt, ops::Range, path::PathBuf};

use serde::{de, Deserialize, Deserializer};

use super::{
    FLOW_TABLE_SIZES, IDLE_TIMEOUTS, MAX_INTERFACE_NAME_LEN, MAX_ROTATE_KEEP, MIN_ROTATE_SIZE,
};
use crate::firewall::plan::MAX_PREFIX_LEN;

/// A Linux interface name, as the kernel's `dev_valid_name` (net/core/dev.c) and iptables'
/// `-i` accept it, minus characters that have no business in a configuration file.
pub fn check_interface_name(name: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "._@:-".contains(c);
    if name.is_empty() || name.len() > MAX_INTERFACE_NAME_LEN {
        Err(format!(
            "interface name {name:?} must be 1 to {MAX_INTERFACE_NAME_LEN} characters long"
        ))
    } else if !name.chars().all(allowed) {
        Err(format!(
            "interface name {name:?} may only hold letters, digits and . _ @ : -"
        ))
    } else if name.starts_with('-') || name == "." || name == ".." {
        Err(format!(
            "{name:?} is not an interface name (it starts with '-' or is . or ..)"
        ))
    } else {
        Ok(())
    }
}

/// The rule of `--prefix`: it goes into iptables' `--log-prefix '[PREFIX-A]:'`.
pub fn check_prefix(prefix: &str) -> Result<(), String> {
    let valid = !prefix.is_empty()
        && prefix.len() <= MAX_PREFIX_LEN
        && prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "prefix {prefix:?} must be 1 to {MAX_PREFIX_LEN} letters, digits, '-' or '_'"
        ))
    }
}

/// "100M" → 104857600; K, M and G are powers of 1024, and a plain number is bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let (digits, multiplier) = match trimmed.char_indices().last() {
        Some((i, 'K' | 'k')) => (&trimmed[..i], 1u64 << 10),
        Some((i, 'M' | 'm')) => (&trimmed[..i], 1 << 20),
        Some((i, 'G' | 'g')) => (&trimmed[..i], 1 << 30),
        _ => (trimmed, 1),
    };
    digits
        .parse::<u64>()
        .ok()
        .filter(|_| !digits.starts_with('+'))
        .and_then(|n| n.checked_mul(multiplier))
        .ok_or_else(|| format!("{text:?} is not a size (e.g. 100M, 512K, 1G, 65536)"))
}

/// The shortest exact spelling of a size: 4194304 → "4M".
pub fn format_size(bytes: u64) -> String {
    match bytes {
        0 => "0".to_string(),
        _ if bytes.is_multiple_of(1 << 30) => format!("{}G", bytes >> 30),
        _ if bytes.is_multiple_of(1 << 20) => format!("{}M", bytes >> 20),
        _ if bytes.is_multiple_of(1 << 10) => format!("{}K", bytes >> 10),
        _ => bytes.to_string(),
    }
}

/// A size written as `"4M"` or as a plain integer of bytes.
struct SizeText(String);

impl<'de> Deserialize<'de> for SizeText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SizeVisitor;
        impl de::Visitor<'_> for SizeVisitor {
            type Value = SizeText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size such as \"4M\" or a number of bytes")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<SizeText, E> {
                Ok(SizeText(text.to_string()))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<SizeText, E> {
                Ok(SizeText(n.to_string()))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<SizeText, E> {
                Ok(SizeText(n.to_string()))
            }
        }
        deserializer.deserialize_any(SizeVisitor)
    }
}

pub(super) fn ring_size<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<u32>, D::Error> {
    let SizeText(text) = SizeText::deserialize(deserializer)?;
    crate::args::parse_ring_size(&text)
        .map(Some)
        .map_err(|reason| de::Error::custom(format!("ring_size: {reason}")))
}

pub(super) fn rotate_size<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<u64>, D::Error> {
    let SizeText(text) = SizeText::deserialize(deserializer)?;
    let bytes = parse_size(&text).map_err(de::Error::custom)?;
    if bytes < MIN_ROTATE_SIZE {
        return Err(de::Error::custom(format!(
            "rotate_size {text:?} is below the minimum of {}",
            format_size(MIN_ROTATE_SIZE)
        )));
    }
    Ok(Some(bytes))
}

pub(super) fn rotate_keep<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<u32>, D::Error> {
    in_range(deserializer, "rotate_keep", 0..MAX_ROTATE_KEEP + 1)
}

pub(super) fn flow_table_size<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<u32>, D::Error> {
    in_range(deserializer, "flow_table_size", FLOW_TABLE_SIZES)
}

pub(super) fn idle_timeout<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<u64>, D::Error> {
    in_range(deserializer, "idle_timeout", IDLE_TIMEOUTS)
}

fn in_range<'de, D, T>(deserializer: D, key: &str, range: Range<T>) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + PartialOrd + fmt::Display + Copy + std::ops::Sub<Output = T> + From<u8>,
{
    let value = T::deserialize(deserializer)?;
    if range.contains(&value) {
        Ok(Some(value))
    } else {
        Err(de::Error::custom(format!(
            "{key} = {value} is out of range: use {} to {}",
            range.start,
            range.end - T::from(1)
        )))
    }
}

pub(super) fn prefix<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    let prefix = String::deserialize(deserializer)?;
    check_prefix(&prefix).map_err(de::Error::custom)?;
    Ok(Some(prefix))
}

pub(super) fn non_empty_path<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<PathBuf>, D::Error> {
    let path = String::deserialize(deserializer)?;
    if path.trim().is_empty() {
        return Err(de::Error::custom("file = \"\" names no file"));
    }
    Ok(Some(PathBuf::from(path)))
}
