//! Turning events into lines of text.

pub mod connection;
pub mod ecs;
pub mod json;
pub mod json_object;
pub mod rotating_file;
pub mod syslog;
pub mod tee;
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
