//! What an earlier install recorded and no reader read, when a new install replaces it (a
//! service restart): its ring buffer and loss counter are held open across the replacement,
//! counted once its rules and links are gone, and the count is carried into the new install's
//! counters, where the next reader reports it as a `lost` line (`where: replaced`).

use std::path::Path;

use anyhow::{Context as _, Result};
use aya::maps::{Map, MapData, PerCpuArray, PerCpuValues, RingBuf};
use fwlog_common::{
    counters::{LOST_BEFORE_REPLACEMENT, LOST_EVENTS},
    programs::{COUNTERS_MAP, EVENTS_MAP},
};

use crate::loader;

/// An earlier install's ring buffer and counters, opened before their pins make way.
pub struct EarlierRing {
    ring: RingBuf<MapData>,
    counters: PerCpuArray<MapData, u64>,
}

/// What the earlier install recorded and no reader wrote out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Unread {
    /// Records still in its ring buffer.
    pub pending: u64,
    /// What its kernel side counted lost to a full ring since it was installed, and what it
    /// had carried over from the install before it.
    pub lost: u64,
}

impl Unread {
    pub fn total(&self) -> u64 {
        self.pending + self.lost
    }
}

impl EarlierRing {
    /// The ring and counters an install pinned in `pin_dir`, if it is an install's.
    pub fn open(pin_dir: &Path) -> Result<Option<Self>> {
        if !loader::is_installed(pin_dir) {
            return Ok(None);
        }
        let ring = RingBuf::try_from(Map::RingBuf(loader::open_pinned_map(pin_dir, EVENTS_MAP)?))
            .context("opening the earlier install's ring buffer")?;
        let counters = PerCpuArray::try_from(Map::PerCpuArray(loader::open_pinned_map(
            pin_dir,
            COUNTERS_MAP,
        )?))
        .context("opening the earlier install's counters")?;
        Ok(Some(EarlierRing { ring, counters }))
    }

    /// Counts (and so empties) what is left in the ring. Call it once nothing writes into it
    /// any more: after the earlier rules and links are gone.
    pub fn count(mut self) -> Unread {
        let mut pending = 0;
        while self.ring.next().is_some() {
            pending += 1;
        }
        let sum = |index: u32| {
            self.counters
                .get(&index, 0)
                .map_or(0, |values| values.iter().sum::<u64>())
        };
        // An install of an earlier version has no LOST_BEFORE_REPLACEMENT slot: 0 then.
        Unread {
            pending,
            lost: sum(LOST_EVENTS) + sum(LOST_BEFORE_REPLACEMENT),
        }
    }
}

/// Adds `count` to the new install's carried losses (a slot only user space writes, so this
/// races with no kernel increment).
pub fn carry(pin_dir: &Path, count: u64) -> Result<()> {
    let mut counters = PerCpuArray::<_, u64>::try_from(Map::PerCpuArray(loader::open_pinned_map(
        pin_dir,
        COUNTERS_MAP,
    )?))
    .context("opening the new install's counters")?;
    let mut values: Vec<u64> = counters
        .get(&LOST_BEFORE_REPLACEMENT, 0)
        .context("reading the carried losses")?
        .iter()
        .copied()
        .collect();
    if let Some(first) = values.first_mut() {
        *first += count;
    }
    let values = PerCpuValues::try_from(values).context("the carried losses' per-CPU values")?;
    counters
        .set(LOST_BEFORE_REPLACEMENT, values, 0)
        .context("writing the carried losses")
}
