//! Times for `summary`: fwlog's timestamps parsed fast (microseconds since the Unix epoch),
//! and the `--since`/`--until` bounds.

use std::str::FromStr;

use anyhow::{Context as _, Result};
use jiff::{civil, tz::TimeZone, Span, Timestamp};

pub const MICROS_PER_HOUR: i64 = 3_600_000_000;

/// Microseconds since the Unix epoch of an RFC 3339 timestamp. fwlog's own form
/// (`2026-11-25T07:09:10.123456Z`) is read by hand, which is several times faster than a
/// general parser on the hot path; anything else (offsets, lower-case) goes through jiff.
pub fn parse_timestamp_micros(text: &str) -> Option<i64> {
    parse_utc_fast(text.as_bytes())
        .or_else(|| text.parse::<Timestamp>().ok().map(|ts| ts.as_microsecond()))
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction]Z`, or `None` (the caller falls back to jiff).
fn parse_utc_fast(bytes: &[u8]) -> Option<i64> {
    if bytes.len() < 20 || *bytes.last()? != b'Z' {
        return None;
    }
    let digits = |range: std::ops::Range<usize>| -> Option<i64> {
        bytes[range].iter().try_fold(0i64, |value, b| {
            b.is_ascii_digit().then(|| value * 10 + i64::from(b - b'0'))
        })
    };
    let separators = [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')];
    if separators.iter().any(|(i, c)| bytes[*i] != *c) {
        return None;
    }
    let (year, month, day) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    let (hour, minute, second) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    if !(1..=12).contains(&month)
        || !(1..=days_in_month(year, month)).contains(&day)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let micros = match &bytes[19..bytes.len() - 1] {
        [] => 0,
        [b'.', fraction @ ..]
            if (1..=9).contains(&fraction.len()) && fraction.iter().all(u8::is_ascii_digit) =>
        {
            // Microseconds: the first six digits, padded with zeros; nanoseconds are dropped.
            (0..6).fold(0i64, |micros, i| {
                micros * 10 + fraction.get(i).map_or(0, |d| i64::from(d - b'0'))
            })
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3_600 + minute * 60 + second;
    Some(seconds * 1_000_000 + micros)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// `--since`/`--until`: a point in time, or a span before now (resolved when the command runs).
#[derive(Clone, Debug)]
pub enum TimeBound {
    At(Timestamp),
    Ago(Span),
}

impl FromStr for TimeBound {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if let Ok(ts) = text.parse::<Timestamp>() {
            return Ok(TimeBound::At(ts));
        }
        // A civil date or date-time without an offset: taken as UTC, like fwlog's timestamps.
        if let Ok(datetime) = text.parse::<civil::DateTime>() {
            if let Ok(zoned) = datetime.to_zoned(TimeZone::UTC) {
                return Ok(TimeBound::At(zoned.timestamp()));
            }
        }
        if let Ok(span) = text.parse::<Span>() {
            if span.is_positive() {
                return Ok(TimeBound::Ago(span));
            }
        }
        Err(format!(
            "{text:?} is not a time: use RFC 3339 (2026-11-25T07:00:00Z), a date (2026-11-25, UTC) \
             or a span before now (30m, 2h, 7d)"
        ))
    }
}

impl TimeBound {
    /// Microseconds since the Unix epoch, spans counted back from `now` in UTC (a day is 24 h).
    pub fn resolve(&self, now: Timestamp) -> Result<i64> {
        match self {
            TimeBound::At(ts) => Ok(ts.as_microsecond()),
            TimeBound::Ago(span) => now
                .to_zoned(TimeZone::UTC)
                .checked_sub(*span)
                .map(|then| then.timestamp().as_microsecond())
                .with_context(|| format!("{span} before now is out of range")),
        }
    }
}

/// `2026-11-25T07:09:10.123456Z` (RFC 3339, UTC), for JSON output.
pub fn rfc3339(micros: i64) -> String {
    match Timestamp::from_microsecond(micros) {
        Ok(ts) => ts.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
        Err(_) => micros.to_string(),
    }
}

/// `2026-11-25 07:09:10` (UTC), for tables.
pub fn table_time(micros: i64) -> String {
    match Timestamp::from_microsecond(micros) {
        Ok(ts) => ts.strftime("%Y-%m-%d %H:%M:%S").to_string(),
        Err(_) => micros.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fwlog_timestamps_parse_by_hand_like_jiff() {
        for text in [
            "2026-11-25T07:09:10.123456Z",
            "1970-01-01T00:00:00.000000Z",
            "2024-02-29T23:59:59.999999Z",
            "2026-11-25T07:09:10Z",
            "2026-11-25T07:09:10.1Z",
            "2026-11-25T07:09:10.123456789Z",
            "1969-12-31T23:59:59.5Z",
        ] {
            let expected = text.parse::<Timestamp>().expect("valid").as_microsecond();
            assert_eq!(parse_utc_fast(text.as_bytes()), Some(expected), "{text}");
        }
    }

    #[test]
    fn other_forms_fall_back_to_jiff_and_garbage_is_rejected() {
        assert_eq!(
            parse_timestamp_micros("2026-11-25T08:09:10.5+01:00"),
            parse_timestamp_micros("2026-11-25T07:09:10.5Z")
        );
        for garbage in [
            "",
            "yesterday",
            "2026-02-30T00:00:00Z",
            "2026-11-25T24:00:00Z",
            "2026-11-25T07:09:10.Z",
            "2026-11-25T07:09:1x.0Z",
        ] {
            assert_eq!(parse_timestamp_micros(garbage), None, "{garbage}");
        }
    }

    #[test]
    fn bounds_absolute_dates_and_spans() {
        let now: Timestamp = "2026-11-25T12:00:00Z".parse().expect("valid");
        let resolve = |text: &str| {
            text.parse::<TimeBound>()
                .and_then(|bound| bound.resolve(now).map_err(|e| e.to_string()))
                .map(rfc3339)
        };
        assert_eq!(resolve("2h").as_deref(), Ok("2026-11-25T10:00:00.000000Z"));
        assert_eq!(resolve("7d").as_deref(), Ok("2026-11-18T12:00:00.000000Z"));
        assert_eq!(
            resolve("1 week").as_deref(),
            Ok("2026-11-18T12:00:00.000000Z")
        );
        assert_eq!(
            resolve("2026-11-20").as_deref(),
            Ok("2026-11-20T00:00:00.000000Z")
        );
        assert_eq!(
            resolve("2026-11-20T01:02:03+01:00").as_deref(),
            Ok("2026-11-20T00:02:03.000000Z")
        );
        assert!(resolve("soon").is_err());
        assert!(resolve("-2h").is_err());
    }
}
