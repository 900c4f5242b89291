//! `fwlog uninstall`: remove every rule, chain and pin fwlog installed in this network
//! namespace, whether the instance that installed them exited cleanly or was killed.

use anyhow::Result;

use crate::{
    args::UninstallArgs,
    firewall::Family,
    installation::remove_rules,
    loader,
    netns::{InstanceLock, NetNs},
    preflight, systemd,
};

pub fn run(args: UninstallArgs) -> Result<()> {
    preflight::require_root("uninstall")?;
    preflight::require_iptables()?;
    let netns = NetNs::current()?;
    // A running instance removes its own rules when it stops; taking them from under it
    // would leave it logging nothing.
    let _lock = InstanceLock::acquire(netns)?;
    let mut removed = Vec::new();
    for family in Family::ALL {
        if remove_rules(family)? {
            removed.push(format!("{} rules", family.command()));
        }
    }
    if loader::remove_pins(&netns.pin_dir())? {
        removed.push(format!("pins in {}", netns.pin_dir().display()));
    }
    for orphan in loader::orphaned_pin_dirs() {
        if loader::remove_pins(&orphan)? {
            removed.push(format!(
                "pins of a vanished namespace in {}",
                orphan.display()
            ));
        }
    }
    if systemd::disable(&args.unit_dir)? {
        removed.push(format!("the systemd unit {}", systemd::UNIT_NAME));
    }
    if removed.is_empty() {
        eprintln!("fwlog: nothing of fwlog is installed here");
    } else {
        eprintln!("fwlog: removed {}", removed.join(", "));
    }
    Ok(())
}
