//! What one fwlog instance puts in place (pins, then rules) and takes away again, in reverse
//! order, on exit, on error and on panic.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use aya::Ebpf;

use crate::{
    firewall::{
        iptables,
        plan::{install_script, RuleOptions},
        Family,
    },
    loader,
    netns::NetNs,
};

pub struct Installation {
    pin_dir: PathBuf,
    pinned: bool,
    rules: Vec<Family>,
}

impl Installation {
    pub fn new(netns: NetNs) -> Self {
        Installation {
            pin_dir: netns.pin_dir(),
            pinned: false,
            rules: Vec::new(),
        }
    }

    pub fn pin(&mut self, ebpf: &mut Ebpf) -> Result<()> {
        self.pinned = true;
        loader::pin_verdict_programs(ebpf, &self.pin_dir)
    }

    /// Installs the rules for IPv4 then IPv6; if IPv6 fails, IPv4's are taken away again
    /// (by `remove` or on drop), so the firewall is left as it was.
    pub fn install_rules(&mut self, options: &RuleOptions) -> Result<()> {
        for family in Family::ALL {
            let existing = iptables::save(family)?.chains;
            iptables::restore(family, &install_script(options, &existing))?;
            self.rules.push(family);
        }
        Ok(())
    }

    /// Leaves everything in place for good (`fwlog install`): nothing is removed on drop.
    pub fn keep(mut self) {
        self.pinned = false;
        self.rules.clear();
    }

    /// Removes the rules, then the pins. Safe to call twice.
    pub fn remove(&mut self) -> Result<()> {
        let mut first_error = None;
        while let Some(family) = self.rules.pop() {
            if let Err(error) = remove_rules(family) {
                first_error.get_or_insert(error);
            }
        }
        if self.pinned {
            self.pinned = false;
            if let Err(error) = loader::remove_pins(&self.pin_dir) {
                first_error.get_or_insert(error);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl Drop for Installation {
    fn drop(&mut self) {
        if let Err(error) = self.remove() {
            eprintln!("fwlog: cleaning up: {error:#}");
        }
    }
}

/// Removes every fwlog rule (and the chains fwlog created) of `family`. Returns whether there
/// were any.
pub fn remove_rules(family: Family) -> Result<bool> {
    let table = iptables::save(family)?;
    match table.removal_script() {
        Some(script) => {
            iptables::restore(family, &script)
                .with_context(|| format!("removing fwlog's {} rules", family.command()))?;
            Ok(true)
        }
        None => Ok(false),
    }
}
