//! `fwlog rules`: print what `watch` would install, change nothing.

use std::collections::BTreeSet;

use anyhow::Result;

use crate::{
    args::RuleArgs,
    firewall::{iptables, plan::install_script, Family},
    interfaces,
    netns::NetNs,
    settings,
};

pub fn run(args: RuleArgs) -> Result<()> {
    let settings = settings::rule_settings(&args, &settings::load_config(&args)?);
    let interfaces = interfaces::resolve(&settings.interfaces)?;
    let netns = NetNs::current()?;
    let options = settings.options(interfaces, netns);
    let root = nix::unistd::geteuid().is_root();
    if !root {
        eprintln!(
            "fwlog: not root, so the current tables cannot be read: showing the rules for \
             tables without LOG_AND_* chains"
        );
    }
    for family in Family::ALL {
        let existing = if root {
            iptables::save(family)?.chains
        } else {
            BTreeSet::new()
        };
        println!("# {}-restore --noflush", family.command());
        print!("{}", install_script(&options, &existing));
    }
    Ok(())
}
