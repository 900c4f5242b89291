//! One JSON object written straight into a byte buffer: the primitives the JSON and ECS writers
//! share. Keys are fwlog's own ASCII names and need no escaping; values from outside go
//! through [`write_escaped`]. Each writer adds its own field groups in an `impl` of its own.

use std::{io::Write as _, net::IpAddr};

use super::json::tcp_flag_letters;

pub struct JsonObject<'o> {
    pub out: &'o mut Vec<u8>,
}

impl JsonObject<'_> {
    /// `"key":`, after a comma unless an object was just opened.
    pub fn key(&mut self, key: &str) {
        if self.out.last() != Some(&b'{') {
            self.out.push(b',');
        }
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    /// `"key":{`; [`JsonObject::close`] ends it.
    pub fn open(&mut self, key: &str) {
        self.key(key);
        self.out.push(b'{');
    }

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
    pub fn str(&mut self, key: &str, value: &str) {
        self.key(key);
        self.out.push(b'"');
        self.out.extend_from_slice(value.as_bytes());
        self.out.push(b'"');
    }

    /// A value from outside (an interface, a process, a host name), escaped.
    pub fn escaped(&mut self, key: &str, value: &str) {
        self.key(key);
        write_escaped(self.out, value);
    }

    pub fn uint(&mut self, key: &str, value: u64) {
        self.key(key);
        self.out
            .extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
    }

    /// A number as a JSON string (ECS keeps ids such as `user.id` as keywords).
    pub fn uint_string(&mut self, key: &str, value: u64) {
        self.key(key);
        self.out.push(b'"');
        self.out
            .extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
        self.out.push(b'"');
    }

    /// Already-formatted JSON.
    pub fn raw(&mut self, key: &str, json: &str) {
        self.key(key);
        self.out.extend_from_slice(json.as_bytes());
    }

    pub fn bool_true(&mut self, key: &str) {
        self.key(key);
        self.out.extend_from_slice(b"true");
    }

    pub fn ip(&mut self, key: &str, addr: IpAddr) {
        self.key(key);
        self.out.push(b'"');
        let _ = write!(self.out, "{addr}");
        self.out.push(b'"');
    }

    /// TCP flags as letters (see [`tcp_flag_letters`]).
    pub fn tcp_flags(&mut self, key: &str, flags: u8) {
        self.key(key);
        self.out.push(b'"');
        self.out.extend(tcp_flag_letters(flags));
        self.out.push(b'"');
    }
}

/// A JSON string, quoted and escaped.
pub fn write_escaped(out: &mut Vec<u8>, value: &str) {
    out.push(b'"');
    for c in value.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => {
                let mut utf8 = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
            }
        }
    }
    out.push(b'"');
}
