//! Indexes of the per-CPU counters map (`COUNTERS`) the kernel side increments.

/// An event could not be written because the ring buffer was full.
pub const LOST_EVENTS: u32 = 0;
/// A packet whose headers could not be parsed (truncated or malformed); an event is still sent.
pub const MALFORMED_PACKETS: u32 = 1;
/// Verdict events written to the ring buffer.
pub const VERDICT_EVENTS: u32 = 2;

/// Number of entries in the `COUNTERS` map.
pub const COUNTER_SLOTS: u32 = 3;
