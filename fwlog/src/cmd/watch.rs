//! `fwlog watch`: install for the session, stream events, remove on exit; or, where
//! `fwlog install` left a setup, read its ring buffer and leave everything in place.

use anyhow::{bail, Result};

use crate::{
    args::WatchArgs,
    installation::{self, Slot},
    interfaces, interrupt,
    netns::{InstanceLock, NetNs},
    preflight, session, settings,
};

pub fn run(args: WatchArgs) -> Result<()> {
    let mut settings = settings::watch_settings(&args, &settings::load_config(&args.rules)?);
    preflight::require_root("watch")?;
    interrupt::catch()?;
    let netns = NetNs::current()?;
    preflight::require_kernel()?;
    preflight::require_bpffs()?;
    // One instance (session or reader) per namespace, and what is installed is looked at only
    // under the lock: an install that finishes meanwhile is never taken for a leftover.
    let _lock = InstanceLock::acquire(netns)?;
    let installed = matches!(installation::inspect_slot(netns)?, Slot::Installed);
    if installed && !args.rules.interfaces.is_empty() {
        bail!(
            "fwlog is installed in this network namespace: run `fwlog watch` without interfaces \
             to read it, or `fwlog uninstall` first"
        );
    }
    // A reader needs only what every mode needs; a session what its events need too.
    if !installed {
        settings.name_processes =
            preflight::require_kernel_for(settings.flows, settings.name_processes)?;
    }
    let interfaces = if installed {
        Vec::new()
    } else {
        interfaces::resolve(&settings.rules.interfaces)?
    };
    if settings.install_rules && !installed {
        preflight::require_iptables()?;
    }
    if installed {
        session::read_installed(settings, netns)
    } else {
        session::watch(settings, interfaces, netns)
    }
}
