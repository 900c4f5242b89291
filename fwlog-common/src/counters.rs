//! Indexes of the per-CPU counters map (`COUNTERS`) the kernel side increments.

/// An event could not be written because the ring buffer was full.
pub const LOST_EVENTS: u32 = 0;
/// A packet whose headers could not be parsed (truncated or malformed). The verdict program
/// still sends an event; the flow program leaves the packet out of the flow table.
pub const MALFORMED_PACKETS: u32 = 1;
/// Verdict events written to the ring buffer.
pub const VERDICT_EVENTS: u32 = 2;
/// Flows the tc programs added to the flow table.
pub const FLOWS_CREATED: u32 = 3;
/// Flows the kernel ended and removed: FIN or RST (reported, or counted as lost), and attempts
/// the firewall refused (their verdict event is their record).
pub const FLOWS_ENDED: u32 = 4;
/// Non-first fragments whose first fragment was not seen (no flow to count them to).
pub const FRAGMENTS_UNMATCHED: u32 = 5;

/// Events an earlier install recorded and no reader read before a new install replaced it
/// (written by `fwlog install` only, never by the kernel side).
pub const LOST_BEFORE_REPLACEMENT: u32 = 6;

/// How much of `LOST_EVENTS` readers have written `lost` lines for (user space only): the next
/// reader of an installed setup reports only the rest.
pub const LOST_EVENTS_REPORTED: u32 = 7;
/// The same for `LOST_BEFORE_REPLACEMENT`.
pub const LOST_BEFORE_REPLACEMENT_REPORTED: u32 = 8;

/// Number of entries in the `COUNTERS` map.
pub const COUNTER_SLOTS: u32 = 9;
