//! Converting the kernel's CLOCK_BOOTTIME stamps (`bpf_ktime_get_boot_ns`) to wall-clock time.
//!
//! The offset between the two clocks changes when the wall clock is set or slewed (NTP), so it
//! is measured again every [`REFRESH`], and taken when it moved by more than [`SETTLE_NS`]:
//! a measurement's own jitter (a microsecond or two, more under emulation) must not give one
//! kernel stamp two wall times, as a flow's start and its verdict, written a second apart, are
//! the same stamp and must read the same. BOOTTIME keeps counting during suspend, so an event
//! stamped just before a laptop sleeps still converts right after it wakes.

use std::time::{Duration, Instant};

use nix::time::{clock_gettime, ClockId};

const REFRESH: Duration = Duration::from_secs(1);
/// The least change of the offset that is taken: NTP slews by at most 0.5 ms per second, a
/// step moves it by more.
const SETTLE_NS: i128 = 200_000;

pub struct BootClock {
    /// Wall-clock nanoseconds minus boot-clock nanoseconds.
    offset_ns: i128,
    measured_at: Instant,
}

impl BootClock {
    pub fn new() -> Self {
        BootClock {
            offset_ns: measure_offset(),
            measured_at: Instant::now(),
        }
    }

    /// Measures the offset again if it is older than [`REFRESH`]. Called once per batch of
    /// events rather than per event: reading the clock per event showed in the collector's
    /// profile.
    pub fn refresh(&mut self) {
        if self.measured_at.elapsed() >= REFRESH {
            self.offset_ns = settled(self.offset_ns, measure_offset());
            self.measured_at = Instant::now();
        }
    }

    /// Nanoseconds since the Unix epoch for a CLOCK_BOOTTIME stamp.
    pub fn unix_ns(&self, boot_ns: u64) -> i128 {
        boot_ns as i128 + self.offset_ns
    }

    /// Now, on the wall clock, in nanoseconds since the Unix epoch.
    pub fn now_unix_ns() -> i128 {
        clock_ns(ClockId::CLOCK_REALTIME)
    }

    /// Now, on the kernel programs' clock (CLOCK_BOOTTIME).
    pub fn now_boot_ns() -> u64 {
        clock_ns(ClockId::CLOCK_BOOTTIME) as u64
    }
}

impl Default for BootClock {
    fn default() -> Self {
        Self::new()
    }
}

fn clock_ns(clock: ClockId) -> i128 {
    match clock_gettime(clock) {
        Ok(t) => t.tv_sec() as i128 * 1_000_000_000 + t.tv_nsec() as i128,
        // Both clocks exist on every kernel fwlog runs on (checked at start: Linux >= 5.8).
        Err(_) => 0,
    }
}

/// The offset to use after measuring `measured`: the `current` one unless the clocks really
/// moved apart (by more than [`SETTLE_NS`]).
fn settled(current: i128, measured: i128) -> i128 {
    if (measured - current).abs() > SETTLE_NS {
        measured
    } else {
        current
    }
}

/// Reads BOOTTIME on both sides of REALTIME and keeps the closest of a few tries, so a
/// preemption between the reads does not skew the offset.
fn measure_offset() -> i128 {
    let mut best: Option<(i128, i128)> = None;
    for _ in 0..5 {
        let before = clock_ns(ClockId::CLOCK_BOOTTIME);
        let wall = clock_ns(ClockId::CLOCK_REALTIME);
        let after = clock_ns(ClockId::CLOCK_BOOTTIME);
        let gap = after - before;
        let offset = wall - (before + gap / 2);
        if best.is_none_or(|(best_gap, _)| gap < best_gap) {
            best = Some((gap, offset));
        }
    }
    best.map_or(0, |(_, offset)| offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_keeps_the_offset_and_a_step_moves_it() {
        let offset = 1_764_000_000_000_000_000;
        assert_eq!(settled(offset, offset + 1_000), offset);
        assert_eq!(settled(offset, offset - SETTLE_NS), offset);
        assert_eq!(
            settled(offset, offset + SETTLE_NS + 1),
            offset + SETTLE_NS + 1
        );
        assert_eq!(
            settled(offset, offset - 3_600_000_000_000),
            offset - 3_600_000_000_000
        );
    }

    #[test]
    fn a_stamp_taken_now_converts_to_now() {
        let clock = BootClock::new();
        let boot_now = clock_ns(ClockId::CLOCK_BOOTTIME) as u64;
        let converted = clock.unix_ns(boot_now);
        let wall = BootClock::now_unix_ns();
        assert!(
            (wall - converted).abs() < 50_000_000,
            "off by {} ns",
            wall - converted
        );
    }
}
