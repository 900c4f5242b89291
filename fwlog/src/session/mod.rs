//! A running fwlog, from the resolved settings on: put in place (`setup`), stream events to
//! the chosen sinks until a signal (`stream`), and take down what this process installed.

pub mod exports;
pub mod setup;
pub mod stream;

use anyhow::{Context as _, Result};

use crate::{
    collector::{maps::CollectorMaps, Ended},
    netns::NetNs,
    pin_dir::record::Mode,
    settings::WatchSettings,
};
use setup::set_up;

/// `fwlog watch` where nothing is installed: install for the session, stream, remove on exit.
pub fn watch(settings: WatchSettings, interfaces: Vec<String>, netns: NetNs) -> Result<()> {
    runtime()?.block_on(session(settings, interfaces, netns))
}

/// `fwlog watch` where `fwlog install` left a setup: read its ring buffer, leave it in place.
pub fn read_installed(settings: WatchSettings, netns: NetNs) -> Result<()> {
    runtime()?.block_on(reader(settings, netns))
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

async fn session(settings: WatchSettings, interfaces: Vec<String>, netns: NetNs) -> Result<()> {
    // Signals are caught from here on, so Ctrl-C during set-up still cleans up.
    let stream = stream::start(&settings)?;
    let mut setup = set_up(&settings, interfaces, netns, Mode::Session)?;
    let maps = CollectorMaps::take_from(&mut setup.ebpf)?;
    let mut collector = stream::collector(&settings, maps, setup.logger.take(), stream.out)?;
    crate::pin_dir::mention_orphans(netns);
    eprintln!(
        "fwlog: watching {} (inbound NEW/RELATED: {}, outbound: {}); Ctrl-C stops and removes \
         the rules",
        setup.options.interfaces.join(", "),
        setup.options.inbound.as_str(),
        setup.options.outbound.as_str(),
    );
    let mut shutdown = stream.shutdown;
    let mut streamed = Ok(Ended::Stopped);
    if let Some(ends) = setup.installation.grace_ends() {
        // Stream while conntrack learns the connectionless flows, then apply the policy to
        // them too, unless a stop came first.
        let stopped = std::cell::Cell::new(false);
        let grace = async {
            tokio::select! {
                () = &mut shutdown => stopped.set(true),
                () = tokio::time::sleep_until(ends.into()) => {}
            }
        };
        streamed = collector.run_until(grace).await;
        if matches!(streamed, Ok(Ended::Stopped)) && !stopped.get() {
            streamed = setup.installation.end_grace().map(|()| Ended::Stopped);
        }
        if stopped.get() {
            shutdown = Box::pin(std::future::ready(()));
        }
    }
    if matches!(streamed, Ok(Ended::Stopped)) {
        streamed = collector.run_until(shutdown).await;
    }
    if let Ok(ended) = streamed {
        stream::say_ended(ended, "removing the rules, as after Ctrl-C");
    }
    // Rules and tc programs first, so nothing new arrives, then read what the kernel holds.
    let removed = setup.installation.remove();
    let detached = setup.flows.take().map_or(Ok(()), |a| a.detach());
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
async fn reader(settings: WatchSettings, netns: NetNs) -> Result<()> {
    let stream = stream::start(&settings)?;
    let maps = CollectorMaps::from_pins(&netns.pin_dir())?;
    let mut collector = stream::collector(&settings, maps, None, stream.out)?;
    eprintln!(
        "fwlog: watching the installed setup (events kept since the last reader come first); \
         Ctrl-C stops reading, the firewall stays"
    );
    let streamed = collector.run_until(stream.shutdown).await;
    if let Ok(ended) = streamed {
        stream::say_ended(ended, "stopped reading, the firewall stays");
    }
    let totals = collector.finish(false);
    if let Ok(totals) = &totals {
        stream::print_totals(totals);
    }
    streamed?;
    totals.map(|_| ())
}
