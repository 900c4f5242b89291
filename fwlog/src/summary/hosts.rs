//! Which hosts the lines came from (`host`, written by fwlog 0.1 onwards): a tally per host,
//! and for each row of the other tables the set of hosts it was seen on, so a summary of
//! several machines' logs can say where (the text shows the column only when several hosts
//! appear). The map of hosts itself is [`super::tally::Hosts`].

/// Hosts that get a bit of their own in [`HostSet`]; later ones make a set say "and more".
pub const HOSTS_NAMED: usize = 64;

/// One host's lines.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostTally {
    /// Its bit in [`HostSet`]s, if it is one of the first [`HOSTS_NAMED`].
    pub bit: Option<u8>,
    pub verdicts: u64,
    /// Verdicts with action drop or reject.
    pub dropped: u64,
    pub flows: u64,
    pub bytes: u64,
    /// Sum of its `lost` lines' counts.
    pub events_lost: u64,
}

/// The hosts a row was seen on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HostSet {
    bits: u64,
    /// Seen on a host past the first [`HOSTS_NAMED`] too.
    pub more: bool,
}

impl HostSet {
    pub fn insert(&mut self, bit: Option<u8>) {
        match bit {
            Some(bit) => self.bits |= 1 << bit,
            None => self.more = true,
        }
    }

    /// The bits set, lowest first.
    pub fn bits(&self) -> impl Iterator<Item = u8> + '_ {
        (0..HOSTS_NAMED as u8).filter(|bit| self.bits & (1 << bit) != 0)
    }
}
