//! `fwlog uninstall`: remove every rule, chain and pin fwlog installed in this network
//! namespace, whether the instance that installed them exited cleanly or was killed; with
//! `--orphans`, also the pin directories of namespaces that are provably gone.
//!
//! Rules go first and pins only once every rule is gone (the rules name the pins), so a removal
//! that fails half-way leaves what the next `fwlog uninstall` needs to finish.

use anyhow::{bail, Result};

use crate::{
    args::UninstallArgs,
    firewall::Family,
    installation::remove_rules,
    interrupt,
    netns::{InstanceLock, NetNs},
    pin_dir::{self, human_bytes, record::Phase, Owner, PinDir},
    preflight, systemd,
};

pub fn run(args: UninstallArgs) -> Result<()> {
    preflight::require_root("uninstall")?;
    preflight::require_iptables()?;
    preflight::require_bpffs()?;
    interrupt::catch()?;
    let netns = NetNs::current()?;
    // A running instance removes its own rules when it stops; taking them from under it
    // would leave it logging nothing.
    let _lock = InstanceLock::acquire(netns)?;
    let mut removed = Vec::new();
    let own = match PinDir::of(netns) {
        Some(dir) => match dir.owner(netns, &mut None) {
            Owner::Here => Some(dir),
            Owner::Gone(why) => {
                if dir.remove()? {
                    removed.push(format!(
                        "the pins in {} of a namespace that no longer exists ({why})",
                        dir.path.display()
                    ));
                }
                None
            }
            Owner::Alive | Owner::Unknown(_) => None,
        },
        None => None,
    };
    if let Some(dir) = &own {
        if let Some(mut record) = dir.record.clone() {
            record.state = Phase::Removing;
            let _ = record.save(&dir.path);
        }
    }
    let mut failures = Vec::new();
    for family in Family::ALL {
        match remove_rules(family, 0) {
            Ok(rules) if rules.any => removed.push(format!("{} rules", family.command())),
            Ok(_) => {}
            Err(error) => failures.push(format!("{error:#}")),
        }
    }
    if !failures.is_empty() {
        let pins = own
            .as_ref()
            .map(|dir| {
                format!(
                    "the pins in {} stay, since those rules name them; ",
                    dir.path.display()
                )
            })
            .unwrap_or_default();
        let done = if removed.is_empty() {
            String::new()
        } else {
            format!(" (removed {})", removed.join(", "))
        };
        bail!(
            "{}{done}; {pins}run {} again to finish",
            failures.join("; "),
            netns.run_hint("uninstall")
        );
    }
    if let Some(dir) = &own {
        if dir.remove()? {
            removed.push(format!("pins in {}", dir.path.display()));
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
    orphans(netns, args.orphans)
}

/// Removes (with `remove`) or points out the pin directories of namespaces that are gone.
fn orphans(netns: NetNs, remove: bool) -> Result<()> {
    if !remove {
        pin_dir::mention_orphans(netns);
        return Ok(());
    }
    let (gone, unknown) = pin_dir::orphans(netns);
    for orphan in gone {
        let path = &orphan.dir.path;
        // Under that inode's lock, and judged again: a namespace that got the inode since may
        // have an fwlog starting there.
        let Ok(_lock) = InstanceLock::acquire(NetNs {
            inode: orphan.dir.inode,
            cookie: None,
        }) else {
            eprintln!(
                "fwlog: kept {}: an fwlog runs for its inode",
                path.display()
            );
            continue;
        };
        let again = PinDir::open(path).map(|dir| dir.owner(netns, &mut None));
        if !matches!(again, Some(Owner::Gone(_))) {
            continue;
        }
        let hooks = orphan.dir.cgroup_hooks().len();
        orphan.dir.remove()?;
        let hooks = if hooks > 0 {
            format!(", {hooks} cgroup hooks")
        } else {
            String::new()
        };
        eprintln!(
            "fwlog: removed the orphaned {} ({}{hooks}): {}",
            path.display(),
            human_bytes(orphan.memory),
            orphan.why
        );
    }
    for orphan in unknown {
        eprintln!(
            "fwlog: kept {} ({}): {}",
            orphan.dir.path.display(),
            human_bytes(orphan.memory),
            orphan.why
        );
    }
    Ok(())
}
