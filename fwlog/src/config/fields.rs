//! The serde hooks that check each value while the file is read (with the rules of
//! [`crate::values`]), so toml places an error at the value.

use std::{fmt, ops::Range, path::PathBuf};

use serde::{de, Deserialize, Deserializer};

use super::{
    FLOW_TABLE_SIZES, GRACES, IDLE_TIMEOUTS, MAX_ROTATE_KEEP, MIN_ROTATE_SIZE, TCP_IDLE_TIMEOUTS,
};
use crate::{
    endpoints::TEMPLATE_REFRESHES,
    host::check_host_name,
    values::{check_prefix, format_size, parse_ring_size, parse_size},
};

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
    parse_ring_size(&text)
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

pub(super) fn grace<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    in_range(deserializer, "grace", GRACES)
}

pub(super) fn tcp_idle_timeout<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<u64>, D::Error> {
    in_range(deserializer, "tcp_idle_timeout", TCP_IDLE_TIMEOUTS)
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

pub(super) fn template_refresh<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<u64>, D::Error> {
    in_range(deserializer, "template_refresh", TEMPLATE_REFRESHES)
}

pub(super) fn host_name<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    let name = String::deserialize(deserializer)?;
    check_host_name(&name).map_err(de::Error::custom)?;
    Ok(Some(name))
}

/// A string value read with its type's `FromStr` (addresses, collector URLs).
pub(super) fn parsed<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: std::str::FromStr<Err = String>,
{
    let text = String::deserialize(deserializer)?;
    text.parse().map(Some).map_err(de::Error::custom)
}
