//! RFC 3339 UTC timestamps with microseconds, formatted without allocating per event: the
//! date and time up to the second is formatted once per second (with jiff) and reused.

use std::io::Write as _;

pub struct TimestampFormatter {
    second: i64,
    /// "YYYY-MM-DDTHH:MM:SS" of `second`.
    prefix: Vec<u8>,
}

impl Default for TimestampFormatter {
    fn default() -> Self {
        TimestampFormatter {
            second: i64::MIN,
            prefix: Vec::with_capacity(32),
        }
    }
}

impl TimestampFormatter {
    /// Appends e.g. `2026-11-25T07:09:10.123456Z` for nanoseconds since the Unix epoch.
    pub fn write(&mut self, out: &mut Vec<u8>, unix_ns: i128) {
        let second = unix_ns.div_euclid(1_000_000_000) as i64;
        let micros = (unix_ns.rem_euclid(1_000_000_000) / 1_000) as u32;
        if second != self.second {
            self.prefix.clear();
            match jiff::Timestamp::from_second(second) {
                Ok(ts) => {
                    let _ = write!(self.prefix, "{}", ts.strftime("%Y-%m-%dT%H:%M:%S"));
                }
                // Outside jiff's range (years -9999..=9999): cannot come from a real clock.
                Err(_) => self.prefix.extend_from_slice(b"1970-01-01T00:00:00"),
            }
            self.second = second;
        }
        out.extend_from_slice(&self.prefix);
        out.push(b'.');
        let digits = [
            micros / 100_000,
            micros / 10_000 % 10,
            micros / 1_000 % 10,
            micros / 100 % 10,
            micros / 10 % 10,
            micros % 10,
        ];
        out.extend(digits.iter().map(|d| b'0' + *d as u8));
        out.push(b'Z');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn format(unix_ns: i128) -> String {
        let mut out = Vec::new();
        TimestampFormatter::default().write(&mut out, unix_ns);
        String::from_utf8(out).expect("ASCII")
    }

    #[test]
    fn microseconds_and_utc() {
        // 2026-11-25T07:09:10.123456789Z
        assert_eq!(
            format(1_795_590_550_123_456_789),
            "2026-11-25T07:09:10.123456Z"
        );
        assert_eq!(format(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(format(1_000), "1970-01-01T00:00:00.000001Z");
    }

    #[test]
    fn the_cached_second_is_replaced() {
        let mut formatter = TimestampFormatter::default();
        let mut out = Vec::new();
        formatter.write(&mut out, 1_000_000_000);
        out.push(b' ');
        formatter.write(&mut out, 61_500_000_000);
        assert_eq!(
            String::from_utf8(out).expect("ASCII"),
            "1970-01-01T00:00:01.000000Z 1970-01-01T00:01:01.500000Z"
        );
    }
}
