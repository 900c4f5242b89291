//! `fwlog watch`: install for the session, stream events, remove on exit; or, where
//! `fwlog install` left a setup, read its ring buffer and leave everything in place.

use anyhow::{bail, Context as _, Result};

use super::{
    setup::set_up,
    stream::{self, CollectorMaps},
};
use crate::{
    args::WatchArgs,
    interfaces, loader,
    netns::{InstanceLock, NetNs},
    preflight,
    settings::{self, WatchSettings},
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
    if !args.no_rules && !installed {
        preflight::require_iptables()?;
    }
    // One instance (session or reader) per namespace.
    let _lock = InstanceLock::acquire(netns)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    if installed {
        runtime.block_on(read_installed(args, settings, netns))
    } else {
        runtime.block_on(session(args, settings, interfaces, netns))
    }
}

async fn session(
    args: WatchArgs,
    settings: WatchSettings,
    interfaces: Vec<String>,
    netns: NetNs,
) -> Result<()> {
    // Signals are caught from here on, so Ctrl-C during set-up still cleans up.
    let stream = stream::start(&settings)?;
    let mut setup = set_up(&args, &settings, interfaces, netns)?;
    let maps = CollectorMaps::take_from(&mut setup.ebpf)?;
    let mut collector = stream::collector(&args, &settings, maps, setup.logger.take(), stream.out)?;
    eprintln!(
        "fwlog: watching {} (inbound NEW/RELATED: {}, outbound: {}); Ctrl-C stops and removes \
         the rules",
        setup.options.interfaces.join(", "),
        setup.options.inbound.as_str(),
        setup.options.outbound.as_str(),
    );
    let streamed = collector.run_until(stream.shutdown).await;
    // Rules and tc programs first, so nothing new arrives, then read what the kernel holds.
    let removed = setup.installation.remove();
    let detached = setup
        .flows
        .take()
        .map_or(Ok(()), |a| a.detach(&mut setup.ebpf));
    let totals = collector.finish(true);
    if let Ok(totals) = &totals {
        stream::print_totals(totals);
    }
    streamed?;
    removed?;
    detached?;
    totals.map(|_| ())
}

/// Reads what an installed setup records; leaves the firewall, the hooks and open flows be.
async fn read_installed(args: WatchArgs, settings: WatchSettings, netns: NetNs) -> Result<()> {
    let stream = stream::start(&settings)?;
    let maps = CollectorMaps::from_pins(&netns.pin_dir())?;
    let mut collector = stream::collector(&args, &settings, maps, None, stream.out)?;
    eprintln!(
        "fwlog: watching the installed setup (events kept since the last reader come first); \
         Ctrl-C stops reading, the firewall stays"
    );
    let streamed = collector.run_until(stream.shutdown).await;
    let totals = collector.finish(false);
    if let Ok(totals) = &totals {
        stream::print_totals(totals);
    }
    streamed?;
    totals.map(|_| ())
}
