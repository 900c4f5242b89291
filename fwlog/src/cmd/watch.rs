//! `fwlog watch`: install for the session, stream events, remove on exit; or, where
//! `fwlog install` left a setup, read its ring buffer and leave everything in place.

use anyhow::{bail, Result};

use crate::{
    args::WatchArgs,
    interfaces, loader,
    netns::{InstanceLock, NetNs},
    preflight, session, settings,
};

pub fn run(args: WatchArgs) -> Result<()> {
    let settings = settings::watch_settings(&args, &settings::load_config(&args.rules)?);
    preflight::require_root("watch")?;
    let netns = NetNs::current()?;
    let installed = loader::is_installed(&netns.pin_dir());
    if installed && !args.rules.interfaces.is_empty() {
        bail!(
            "fwlog is installed in this network namespace: run `fwlog watch` without interfaces \
             to read it, or `fwlog uninstall` first"
        );
    }
    let interfaces = if installed {
        Vec::new()
    } else {
        interfaces::resolve(&settings.rules.interfaces)?
    };
    preflight::require_kernel()?;
    preflight::require_bpffs()?;
    if settings.install_rules && !installed {
        preflight::require_iptables()?;
    }
    // One instance (session or reader) per namespace.
    let _lock = InstanceLock::acquire(netns)?;
    if installed {
        session::read_installed(settings, netns)
    } else {
        session::watch(settings, interfaces, netns)
    }
}
