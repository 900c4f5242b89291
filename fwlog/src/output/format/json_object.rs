//! One JSON object written straight into a byte buffer: the primitives the JSON and ECS writers
//! share. Keys are fwlog's own ASCII names and need no escaping; values from outside go
//! through [`write_escaped`]. Each writer adds its own field groups in an `impl` of its own.

use std::{io::Write as _, net::IpAddr};

use super::tcp_flag_letters;

pub struct JsonObject<'o> {
    pub out: &'o mut Vec<u8>,
}

// The primitives are `#[inline]`: each line calls them some twenty times with constant keys,
// and inlined, a key's copy is a few fixed-size moves instead of calls to memcpy (perf on
// `cargo xtask bench` put `key` alone at a tenth of the collector's time).
impl JsonObject<'_> {
    /// `"key":`, after a comma unless an object was just opened.
    #[inline]
    pub fn key(&mut self, key: &str) {
        if self.out.last() != Some(&b'{') {
            self.out.push(b',');
        }
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    /// `"key":{`; [`JsonObject::close`] ends it.
    #[inline]
    pub fn open(&mut self, key: &str) {
        self.key(key);
        self.out.push(b'{');
    }

    #[inline]
    pub fn close(&mut self) {
        self.out.push(b'}');
    }

    /// Closes an object, or removes it (`,"key":{`) if nothing was written into it.
    pub fn close_or_drop_empty(&mut self) {
        if self.out.last() != Some(&b'{') {
            return self.close();
        }
        // Back to the `,` before `"key":{` (keys never contain a comma).
        if let Some(comma) = self.out.iter().rposition(|&b| b == b',') {
            self.out.truncate(comma);
        }
    }

    /// Ends the top-level object and its line.
    pub fn end_line(self) {
        self.out.extend_from_slice(b"}\n");
    }

    /// A value known to need no escaping (fwlog's own words).
    #[inline]
    pub fn str(&mut self, key: &str, value: &str) {
        self.key(key);
        self.out.push(b'"');
        self.out.extend_from_slice(value.as_bytes());
        self.out.push(b'"');
    }

    /// A value from outside (an interface, a process, a host name), escaped.
    #[inline]
    pub fn escaped(&mut self, key: &str, value: &str) {
        self.key(key);
        write_escaped(self.out, value);
    }

    #[inline]
    pub fn uint(&mut self, key: &str, value: u64) {
        self.key(key);
        self.out
            .extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
    }

    /// A number as a JSON string (ECS keeps ids such as `user.id` as keywords).
    #[inline]
    pub fn uint_string(&mut self, key: &str, value: u64) {
        self.key(key);
        self.out.push(b'"');
        self.out
            .extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
        self.out.push(b'"');
    }

    /// Already-formatted JSON.
    #[inline]
    pub fn raw(&mut self, key: &str, json: &str) {
        self.key(key);
        self.out.extend_from_slice(json.as_bytes());
    }

    #[inline]
    pub fn bool_true(&mut self, key: &str) {
        self.key(key);
        self.out.extend_from_slice(b"true");
    }

    #[inline]
    pub fn ip(&mut self, key: &str, addr: IpAddr) {
        self.key(key);
        self.out.push(b'"');
        match addr {
            IpAddr::V4(v4) => write_ipv4(self.out, v4.octets()),
            IpAddr::V6(v6) => {
                let _ = write!(self.out, "{v6}");
            }
        }
        self.out.push(b'"');
    }

    /// TCP flags as letters (see [`tcp_flag_letters`]).
    #[inline]
    pub fn tcp_flags(&mut self, key: &str, flags: u8) {
        self.key(key);
        self.out.push(b'"');
        self.out.extend(tcp_flag_letters(flags));
        self.out.push(b'"');
    }
}

/// Dotted decimal, as `Ipv4Addr`'s `Display` writes it. By hand: `Display` goes through the
/// formatting machinery once per octet, which `cargo xtask bench` showed as a tenth of the
/// collector's time at full speed.
pub fn write_ipv4(out: &mut Vec<u8>, octets: [u8; 4]) {
    for (i, octet) in octets.into_iter().enumerate() {
        if i > 0 {
            out.push(b'.');
        }
        if octet >= 100 {
            out.push(b'0' + octet / 100);
        }
        if octet >= 10 {
            out.push(b'0' + octet / 10 % 10);
        }
        out.push(b'0' + octet % 10);
    }
}

/// Bytes a JSON string cannot hold as they are, and the start of every non-ASCII character
/// (which may be one a terminal acts on: C1 controls, bidi overrides; see `printable`).
fn needs_escape(byte: u8) -> bool {
    byte < 0x20 || byte == b'"' || byte == b'\\' || byte >= 0x7f
}

/// A JSON string, quoted and escaped.
pub fn write_escaped(out: &mut Vec<u8>, value: &str) {
    out.push(b'"');
    if !value.bytes().any(needs_escape) {
        // Interface names, process names, host names: almost always nothing to escape.
        out.extend_from_slice(value.as_bytes());
        out.push(b'"');
        return;
    }
    for c in value.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            // Control characters JSON requires escaped, and those `printable` escapes for a
            // terminal (DEL, C1, bidi and invisible ones): a line read with `cat` or shipped
            // to syslog shows them as text.
            c if crate::printable::is_unsafe(c) => {
                let mut utf16 = [0u16; 2];
                for unit in c.encode_utf16(&mut utf16) {
                    let _ = write!(out, "\\u{:04x}", *unit);
                }
            }
            c => {
                let mut utf8 = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
            }
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    #[test]
    fn ipv4_addresses_read_as_display_writes_them() {
        for octets in [[0, 0, 0, 0], [10, 0, 9, 99], [100, 101, 199, 200], [255; 4]] {
            let mut out = Vec::new();
            write_ipv4(&mut out, octets);
            assert_eq!(out, Ipv4Addr::from(octets).to_string().as_bytes());
        }
        for n in (0..=u32::MAX).step_by(65_521) {
            let mut out = Vec::new();
            write_ipv4(&mut out, n.to_be_bytes());
            assert_eq!(out, Ipv4Addr::from(n).to_string().as_bytes());
        }
    }

    #[test]
    fn strings_are_escaped_only_where_json_needs_it() {
        let escaped = |value: &str| {
            let mut out = Vec::new();
            write_escaped(&mut out, value);
            String::from_utf8(out).expect("UTF-8 in, UTF-8 out")
        };
        assert_eq!(escaped("eth0"), "\"eth0\"");
        assert_eq!(escaped("naïve 名前"), "\"naïve 名前\"");
        assert_eq!(escaped("a\"b\\c\nd\u{1}"), "\"a\\\"b\\\\c\\u000ad\\u0001\"");
        assert_eq!(
            escaped("\u{7f}\u{9b}31m\u{202e}\u{e0041}"),
            "\"\\u007f\\u009b31m\\u202e\\udb40\\udc41\""
        );
    }
}
