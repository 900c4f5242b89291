//! What an earlier install recorded and no reader read, when a new install replaces it (a
//! service restart): its ring buffers and loss counter are held open across the replacement,
//! counted once its rules and links are gone, and the count is carried into the new install's
//! counters, where the next reader reports it as a `lost` line (`where: replaced`).

use std::path::Path;

use anyhow::{Context as _, Result};
use aya::maps::{Map, MapData, PerCpuArray, PerCpuValues, RingBuf};
use fwlog_common::{
    counters::{
        LOST_BEFORE_REPLACEMENT, LOST_BEFORE_REPLACEMENT_REPORTED, LOST_EVENTS,
        LOST_EVENTS_REPORTED,
    },
    programs::{COUNTERS_MAP, EVENTS_MAP, EVENT_RINGS_MAP},
};

use crate::{cpu_rings, loader};

/// An earlier install's ring buffers and counters, opened before their pins make way.
pub struct EarlierRing {
    ring: RingBuf<MapData>,
    /// Its CPUs' rings of verdicts (none for an install of a version without them).
    cpu_rings: Vec<RingBuf<MapData>>,
    counters: PerCpuArray<MapData, u64>,
}

/// What the earlier install recorded and no reader wrote out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Unread {
    /// Records still in its ring buffer.
    pub pending: u64,
    /// What its kernel side counted lost to a full ring, and what it had carried over from
    /// the install before it, that no reader reported.
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
        let cpu_rings = match loader::open_pinned_map(pin_dir, EVENT_RINGS_MAP) {
            Ok(map) => cpu_rings::open(Map::ArrayOfMaps(map))
                .context("opening the earlier install's CPU ring buffers")?,
            Err(_) => Vec::new(),
        };
        let counters = PerCpuArray::try_from(Map::PerCpuArray(loader::open_pinned_map(
            pin_dir,
            COUNTERS_MAP,
        )?))
        .context("opening the earlier install's counters")?;
        Ok(Some(EarlierRing {
            ring,
            cpu_rings,
            counters,
        }))
    }

    /// Counts (and so empties) what is left in the rings. Call it once nothing writes into
    /// them any more: after the earlier rules and links are gone.
    pub fn count(mut self) -> Unread {
        let mut pending = 0;
        for ring in std::iter::once(&mut self.ring).chain(&mut self.cpu_rings) {
            while ring.next().is_some() {
                pending += 1;
            }
        }
        let sum = |index: u32| {
            self.counters
                .get(&index, 0)
                .map_or(0, |values| values.iter().sum::<u64>())
        };
        // An install of an earlier version has none of the later slots: 0 then. What its
        // readers reported is no longer unread.
        Unread {
            pending,
            lost: sum(LOST_EVENTS).saturating_sub(sum(LOST_EVENTS_REPORTED))
                + sum(LOST_BEFORE_REPLACEMENT)
                    .saturating_sub(sum(LOST_BEFORE_REPLACEMENT_REPORTED)),
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
    let carried: u64 = counters
        .get(&LOST_BEFORE_REPLACEMENT, 0)
        .context("reading the carried losses")?
        .iter()
        .sum();
    set_user_counter(&mut counters, LOST_BEFORE_REPLACEMENT, carried + count)
        .context("writing the carried losses")
}

/// Sets a counter slot only user space writes to `value` (on the first CPU, 0 on the others).
pub fn set_user_counter(
    counters: &mut PerCpuArray<MapData, u64>,
    index: u32,
    value: u64,
) -> Result<()> {
    let cpus = counters.get(&index, 0)?.len();
    let mut values = vec![0; cpus];
    if let Some(first) = values.first_mut() {
        *first = value;
    }
    counters.set(index, PerCpuValues::try_from(values)?, 0)?;
    Ok(())
}
