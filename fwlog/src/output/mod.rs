//! Turning events into lines of text.

pub mod connection;
pub mod ecs;
pub mod json;
#[cfg_attr(not(test), expect(dead_code, reason = "wired by cmd/watch.rs next"))]
pub mod rotating_file;
#[cfg_attr(not(test), expect(dead_code, reason = "wired by cmd/watch.rs next"))]
pub mod syslog;
#[cfg(test)]
pub mod test_records;
pub mod text;
pub mod timestamp;
pub mod writer;

/// Which way a connection goes, as seen from this machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Inbound,
    Outbound,
    Forward,
}

impl Direction {
    pub const fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
            Direction::Forward => "forward",
        }
    }
}
