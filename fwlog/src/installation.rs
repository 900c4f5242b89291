//! What one fwlog instance puts in place and takes away again. Its pin directory comes first,
//! with a record of whose it is and how far it got; then the pins; then the rules. Removal goes
//! in reverse, on exit, on error and on panic, and never takes away pins that remaining rules
//! name: a failed removal leaves everything for `fwlog uninstall` to finish.

use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{anyhow, Context as _, Result};
use aya::Ebpf;
use fwlog_common::event::Action;

use crate::{
    firewall::{
        iptables,
        plan::{grace_end_script, install_script, joining_script, Grace, RuleOptions},
        removal::FilterTable,
        Family,
    },
    interrupt,
    loader::{self, LoadOptions},
    netns::{NetNs, PIN_ROOT},
    pin_dir::{
        self,
        record::{Mode, Phase, Record, RECORD_PIN},
        NETNS_LINK_PIN,
    },
    unread::EarlierRing,
};

pub struct Installation {
    netns: NetNs,
    pin_dir: PathBuf,
    mode: Mode,
    /// Set once the pin directory and its record exist: this instance removes them.
    record: Option<Record>,
    /// Families whose rules may be in place (pushed before each restore, see `install_rules`).
    rules: Vec<Family>,
    /// A rule removal failed: the pins stay for `fwlog uninstall`.
    pins_needed: bool,
    /// Families whose connectionless attempts are accepted until `grace_ends`.
    grace: Vec<(Family, RuleOptions)>,
    grace_ends: Option<Instant>,
    /// An earlier install's ring and counters, held open across its replacement.
    earlier_ring: Option<EarlierRing>,
    /// The earlier instance's record, when this one replaces it.
    replaced: Option<Record>,
}

impl Installation {
    pub fn new(netns: NetNs, mode: Mode) -> Self {
        Installation {
            netns,
            pin_dir: netns.pin_dir(),
            mode,
            record: None,
            rules: Vec::new(),
            pins_needed: false,
            grace: Vec::new(),
            grace_ends: None,
            earlier_ring: None,
            replaced: None,
        }
    }

    /// Makes the pin directory with its record, attaches the namespace link and pins the
    /// verdict programs. Where an earlier instance of this namespace left its directory
    /// (`inspect_slot` proved it this namespace's), its pins make way for these: its rules,
    /// which hold their own programs, keep enforcing until `install_rules` replaces them.
    pub fn pin(&mut self, ebpf: &mut Ebpf) -> Result<()> {
        let record = Record::new(self.netns, self.mode)?;
        if self.pin_dir.exists() {
            self.replaced = Record::read(&self.pin_dir).ok().flatten();
            self.earlier_ring = EarlierRing::open(&self.pin_dir)?;
            pin_dir::unpin_for_replacement(&self.pin_dir)?;
            if record.save(&self.pin_dir).is_err() {
                let _ = fs::remove_file(self.pin_dir.join(RECORD_PIN));
                record.create(&self.pin_dir)?;
            }
        } else {
            create_pin_dir(&self.pin_dir)?;
            if let Err(error) = record.create(&self.pin_dir) {
                let _ = fs::remove_dir(&self.pin_dir);
                return Err(error);
            }
        }
        self.record = Some(record);
        if !self.pin_dir.join(NETNS_LINK_PIN).exists() {
            loader::pin_netns_link(ebpf, &self.pin_dir)?;
        }
        loader::pin_verdict_programs(ebpf, &self.pin_dir)
    }

    /// The earlier install's ring and counters, if this instance replaced an install: count
    /// them once the earlier rules are gone.
    pub fn take_earlier_ring(&mut self) -> Option<EarlierRing> {
        self.earlier_ring.take()
    }

    /// The record, to add what this instance attached (interfaces, tc filters).
    pub fn record_mut(&mut self) -> Option<&mut Record> {
        self.record.as_mut()
    }

    /// The comment of this instance's rules.
    pub fn rule_tag(&self) -> String {
        self.record
            .as_ref()
            .map_or_else(|| crate::firewall::RULE_COMMENT.into(), Record::rule_tag)
    }

    /// Installs the rules for IPv4 then IPv6. A failure or a stop request takes away what is
    /// in place (by `remove` or on drop), so the firewall is left as it was.
    ///
    /// The default outbound policy follows OUTPUT's own: where that is DROP, new outbound
    /// connections are logged and dropped, not opened. Where the namespace has connectionless
    /// sockets (UDP, raw) and a chain's policy is ACCEPT, new connectionless attempts are first
    /// accepted and logged for `grace_seconds`: conntrack, which fwlog's rules start, learns the
    /// flows the host already has from their next packet either way, and those then stay
    /// established when the policy applies. Without it, a flow the host opened before fwlog
    /// would meet the inbound policy with the peer's next datagram (conntrack calls it NEW).
    /// The caller ends the grace: [`Installation::wait_for_grace`], or, streaming meanwhile,
    /// [`Installation::end_grace`] at [`Installation::grace_ends`].
    pub fn install_rules(&mut self, options: &RuleOptions) -> Result<()> {
        let connectionless = has_connectionless_sockets();
        for family in Family::ALL {
            interrupt::check(0)?;
            let table = iptables::save(family)?;
            // An earlier fwlog's rules are replaced in the same transaction; conntrack, which
            // they used, already knows the flows: no grace then.
            let replacing = table.has_fwlog_rules();
            let family_options =
                self.family_options(options, family, &table, connectionless && !replacing);
            // Before the restore: one that is stopped after its commit is taken away too.
            self.rules.push(family);
            if replacing {
                self.replace_rules(family, &table, &family_options)?;
            } else {
                let script = install_script(&family_options, &table.chains);
                iptables::restore(family, &script, 0)?;
            }
            if family_options.grace != Grace::default() {
                self.grace.push((family, family_options));
            }
        }
        if !self.grace.is_empty() {
            eprintln!(
                "fwlog: new connectionless (UDP, …) attempts are accepted and logged for {} s, \
                 so that conntrack learns the flows this host already has; then the policy \
                 applies (`--grace 0`: at once)",
                options.grace_seconds
            );
            self.grace_ends = Some(Instant::now() + Duration::from_secs(options.grace_seconds));
        }
        Ok(())
    }

    /// Takes over from the rules an earlier fwlog left in `table`, with no moment without
    /// rules: one transaction adds the new ones after the old (both enforce the same way for
    /// a moment), the next takes the old ones away. Done in the opposite order, or in one
    /// transaction, the new logging rules would not open their pins as the same descriptors as a
    /// later removal does (see `FilterTable::removal`), and could never be deleted.
    fn replace_rules(
        &mut self,
        family: Family,
        table: &FilterTable,
        options: &RuleOptions,
    ) -> Result<()> {
        let id = self
            .record
            .as_ref()
            .map(|r| r.id.clone())
            .unwrap_or_default();
        let placeholders = Placeholders::pin(&table.pinned_programs())?;
        let script = joining_script(options, &table.chains, &table.previous());
        iptables::restore(family, &script, 0)?;
        let joined = iptables::save(family)?;
        for script in joined.previous_removal(table, &id) {
            iptables::restore(family, &script, 0).with_context(|| {
                format!(
                    "removing the {} rules an earlier fwlog left",
                    family.command()
                )
            })?;
        }
        drop(placeholders);
        let whose = match &self.replaced {
            Some(r) if r.mode == Mode::Installed && r.state == Phase::Active => {
                "of the earlier install"
            }
            _ => "an earlier fwlog left",
        };
        eprintln!(
            "fwlog: replaced the {} rules {whose}, never leaving the table without them",
            family.command()
        );
        Ok(())
    }

    /// When the connectionless grace ends, if one is running (a session streams meanwhile).
    pub fn grace_ends(&self) -> Option<Instant> {
        self.grace_ends
    }

    /// Waits for the end of the grace (or a stop request), then ends it (`fwlog install`).
    pub fn wait_for_grace(&mut self) -> Result<()> {
        if let Some(ends) = self.grace_ends {
            wait(ends.saturating_duration_since(Instant::now()))?;
        }
        self.end_grace()
    }

    /// The policy applies to connectionless attempts too, in one transaction per family.
    pub fn end_grace(&mut self) -> Result<()> {
        self.grace_ends = None;
        let graced = std::mem::take(&mut self.grace);
        if graced.is_empty() {
            return Ok(());
        }
        for (family, family_options) in graced {
            if let Some(script) = grace_end_script(&family_options) {
                iptables::restore(family, &script, 0)
                    .context("applying the policy after the grace")?;
            }
        }
        eprintln!("fwlog: the policy applies to new connectionless attempts too");
        Ok(())
    }

    /// What goes into one family's table.
    fn family_options(
        &self,
        options: &RuleOptions,
        family: Family,
        table: &FilterTable,
        connectionless: bool,
    ) -> RuleOptions {
        let mut family_options = options.clone();
        family_options.tag = self.rule_tag();
        let policy_drops = |chain: &str| table.policies.get(chain).is_some_and(|p| p == "DROP");
        if options.outbound_default && options.outbound == Action::Accept && policy_drops("OUTPUT")
        {
            eprintln!(
                "fwlog: the {} OUTPUT policy is DROP: new outbound connections are logged and \
                 dropped, as that policy does (`--outbound accept` would open them)",
                family.command()
            );
            family_options.outbound = Action::Drop;
        }
        if connectionless && options.grace_seconds > 0 {
            family_options.grace = Grace {
                inbound: options.inbound != Action::Accept && !policy_drops("INPUT"),
                outbound: family_options.outbound != Action::Accept && !policy_drops("OUTPUT"),
            };
        }
        family_options
    }

    /// Everything is in place.
    pub fn activate(&mut self) -> Result<()> {
        self.set_phase(Phase::Active)
    }

    /// Leaves everything in place for good (`fwlog install`): nothing is removed on drop.
    pub fn keep(mut self) -> Result<()> {
        if let Some(record) = &mut self.record {
            record.mode = Mode::Installed;
        }
        self.set_phase(Phase::Active)?;
        self.record = None;
        self.rules.clear();
        Ok(())
    }

    fn set_phase(&mut self, phase: Phase) -> Result<()> {
        if let Some(record) = &mut self.record {
            record.state = phase;
            record.save(&self.pin_dir)?;
        }
        Ok(())
    }

    /// Removes the rules, then, if that worked, the pins. Safe to call twice. A stop request
    /// that arrives while it runs cuts a blocked iptables-restore short (the pins then stay).
    pub fn remove(&mut self) -> Result<()> {
        if self.record.is_some() && !self.pins_needed {
            let _ = self.set_phase(Phase::Removing);
        }
        self.grace.clear();
        self.grace_ends = None;
        let stops = interrupt::stops();
        let mut failed = Vec::new();
        while let Some(family) = self.rules.pop() {
            if let Err(error) = remove_rules(family, stops) {
                failed.push(format!("{error:#}"));
            }
        }
        if !failed.is_empty() {
            self.pins_needed = true;
        }
        if self.pins_needed {
            return Err(anyhow!(
                "{}; the pins in {} stay, since those rules name them: run {} to finish",
                failed.join("; "),
                self.pin_dir.display(),
                self.netns.run_hint("uninstall")
            ));
        }
        if self.record.take().is_some() {
            pin_dir::remove_pin_dir(&self.pin_dir)?;
        }
        Ok(())
    }
}

impl Drop for Installation {
    fn drop(&mut self) {
        if self.pins_needed || (self.record.is_none() && self.rules.is_empty()) {
            return;
        }
        if let Err(error) = self.remove() {
            eprintln!("fwlog: cleaning up: {error:#}");
        }
    }
}

/// What [`remove_rules`] took away from one family.
#[derive(Debug, Default)]
pub struct RemovedRules {
    pub any: bool,
}

/// Removes every fwlog rule (and the chains fwlog created and nobody else uses) of `family`.
/// Rules that name pins no longer there get placeholders pinned at those paths for the time
/// of the removal, since iptables-restore opens them to read the rules it deletes.
pub fn remove_rules(family: Family, stops_seen: usize) -> Result<RemovedRules> {
    let table = iptables::save(family)?;
    let removal = table.removal();
    if removal.scripts.is_empty() {
        return Ok(RemovedRules::default());
    }
    let placeholders = Placeholders::pin(&table.pinned_programs())?;
    for script in &removal.scripts {
        iptables::restore(family, script, stops_seen)
            .with_context(|| format!("removing fwlog's {} rules", family.command()))?;
    }
    drop(placeholders);
    for (chain, action) in &removal.kept {
        eprintln!(
            "fwlog: kept {chain} ({}), since your rules use it, with its final {action}, now \
             yours (comment fwlog-kept)",
            family.command()
        );
    }
    Ok(RemovedRules { any: true })
}

/// Stand-ins for pinned programs that fwlog's rules name but that are gone (someone removed
/// them): any socket filter at the path lets iptables-restore read the rule. Removed on drop.
struct Placeholders {
    pins: Vec<PathBuf>,
    dirs: Vec<PathBuf>,
}

impl Placeholders {
    fn pin(paths: &BTreeSet<String>) -> Result<Self> {
        let mut placeholders = Placeholders {
            pins: Vec::new(),
            dirs: Vec::new(),
        };
        let missing: Vec<&Path> = paths
            .iter()
            .map(Path::new)
            .filter(|path| !path.exists())
            .collect();
        if missing.is_empty() {
            return Ok(placeholders);
        }
        eprintln!(
            "fwlog: {} pinned programs that fwlog's rules name are missing: pinning stand-ins \
             to remove the rules",
            missing.len()
        );
        let mut ebpf = loader::load(&LoadOptions {
            ring_bytes: 4096,
            flow_table: None,
            dns: false,
            processes: false,
        })?;
        for path in missing {
            if let Some(dir) = path.parent().filter(|dir| !dir.exists()) {
                fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
                placeholders.dirs.push(dir.to_path_buf());
            }
            let wanted = path.file_name().and_then(|n| n.to_str());
            let name = loader::verdict_program_names()
                .find(|name| Some(*name) == wanted)
                .unwrap_or("verdict_accept_new");
            loader::pin_verdict_program(&mut ebpf, name, path)?;
            placeholders.pins.push(path.to_path_buf());
        }
        Ok(placeholders)
    }
}

impl Drop for Placeholders {
    fn drop(&mut self) {
        for pin in &self.pins {
            let _ = fs::remove_file(pin);
        }
        for dir in self.dirs.iter().rev() {
            let _ = fs::remove_dir(dir);
        }
    }
}

/// Whether this namespace has sockets that connectionless flows use (UDP, UDP-Lite, raw): the
/// first line of each of these files is a header.
fn has_connectionless_sockets() -> bool {
    ["udp", "udp6", "udplite", "udplite6", "raw", "raw6"]
        .iter()
        .any(|table| {
            fs::read_to_string(format!("/proc/net/{table}"))
                .is_ok_and(|text| text.lines().nth(1).is_some())
        })
}

/// Sleeps for `duration`, or until a stop request.
fn wait(duration: Duration) -> Result<()> {
    let deadline = Instant::now() + duration;
    while Instant::now() < deadline {
        interrupt::check(0)?;
        let left = deadline.saturating_duration_since(Instant::now());
        std::thread::sleep(Duration::from_millis(20).min(left));
    }
    interrupt::check(0)
}

/// What this namespace's pin slot holds, for `watch` and `install` (holding the namespace lock).
pub enum Slot {
    Empty,
    /// `fwlog install`'s setup, in place.
    Installed,
    /// What an instance that did not finish (killed, or a failed removal) left.
    Leftover,
}

/// Looks at this namespace's slot; a directory a dead namespace left there (the kernel gave its
/// inode to this one) is not this namespace's: it is removed, and said so, instead of adopted.
pub fn inspect_slot(netns: NetNs) -> Result<Slot> {
    let Some(dir) = pin_dir::PinDir::of(netns) else {
        return Ok(Slot::Empty);
    };
    match dir.owner(netns, &mut None) {
        pin_dir::Owner::Here => {}
        pin_dir::Owner::Gone(why) => {
            dir.remove()?;
            eprintln!(
                "fwlog: removed {}, not this namespace's: {why}",
                dir.path.display()
            );
            return Ok(Slot::Empty);
        }
        pin_dir::Owner::Alive | pin_dir::Owner::Unknown(_) => {
            anyhow::bail!(
                "{} belongs to another network namespace (its namespace link says so): not \
                 touching it",
                dir.path.display()
            )
        }
    }
    let installed = match &dir.record {
        Some(record) => record.mode == Mode::Installed && record.state == Phase::Active,
        None => loader::is_installed(&dir.path),
    };
    Ok(if installed {
        Slot::Installed
    } else {
        Slot::Leftover
    })
}

/// With `--no-rules` fwlog leaves iptables alone: pins that an earlier fwlog's rules here still
/// name must then stay, so it refuses to replace them.
pub fn refuse_leftover_rules(netns: NetNs) -> Result<()> {
    if !netns.pin_dir().exists() {
        return Ok(());
    }
    for family in Family::ALL {
        if iptables::save(family).is_ok_and(|table| table.has_fwlog_rules()) {
            anyhow::bail!(
                "{} has rules an earlier fwlog left here, which name its pins: run {} first",
                family.command(),
                netns.run_hint("uninstall")
            );
        }
    }
    Ok(())
}

/// Creates `dir` under [`PIN_ROOT`]. The last fwlog of another namespace to remove its directory
/// removes the empty shared parent too, which can happen between this one's two steps: then
/// the parent is made again.
fn create_pin_dir(dir: &Path) -> Result<()> {
    let mut tries = 0;
    loop {
        fs::create_dir_all(PIN_ROOT).with_context(|| format!("creating {PIN_ROOT}"))?;
        match fs::create_dir(dir) {
            Err(error) if error.kind() == std::io::ErrorKind::NotFound && tries < 5 => tries += 1,
            result => return result.with_context(|| format!("creating {}", dir.display())),
        }
    }
}
