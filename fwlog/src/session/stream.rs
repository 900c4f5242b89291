//! Streaming events to the user, shared by a `watch` session and the reader of an installed
//! setup: the collector as the settings say, where its lines go, and which signals stop it or
//! reopen its file.

use std::{future::Future, io::IsTerminal as _, sync::atomic::Ordering, time::Duration};

use anyhow::{bail, Context as _, Result};
use aya::maps::{HashMap, Map, PerCpuArray, RingBuf};
use fwlog_common::flow::flows_held;
use tokio::signal::unix::{signal, SignalKind};

use super::exports;
use crate::{
    collector::{
        flow_filter::MappedFilter, flows::FlowTable, maps::CollectorMaps, Collector,
        CollectorOptions, Ended, KernelLogger, Totals,
    },
    cpu_rings,
    host::HostIdentity,
    output::{
        destination::{self, Destination, Outputs},
        spool::say,
        writer::{colour_wanted, FormatWriter},
    },
    settings::WatchSettings,
    values::OutputFormat,
};

/// Where lines go, the stop signal, and (with an output file) SIGHUP reopening it.
pub struct Stream {
    pub out: Outputs,
    pub shutdown: std::pin::Pin<Box<dyn Future<Output = ()>>>,
}

/// Opens the output and catches the signals: from here on Ctrl-C is a clean stop.
pub fn start(settings: &WatchSettings) -> Result<Stream> {
    let (out, reopen) = destination::open(&Destination {
        file: settings.output.as_deref(),
        rotate_size: settings.rotate_size,
        rotate_keep: settings.rotate_keep,
        syslog_prefix: settings.syslog.then_some(settings.rules.prefix.as_str()),
    })?;
    let shutdown = Box::pin(shutdown_signal(reopen.is_none())?);
    if let Some(reopen) = reopen {
        let mut hangup = signal(SignalKind::hangup()).context("catching SIGHUP")?;
        tokio::spawn(async move {
            while hangup.recv().await.is_some() {
                reopen.store(true, Ordering::Relaxed);
            }
        });
    }
    Ok(Stream { out, shutdown })
}

/// The collector for `maps`, printing as `settings` say.
pub fn collector(
    settings: &WatchSettings,
    maps: CollectorMaps,
    logger: Option<KernelLogger>,
    out: Outputs,
) -> Result<Collector> {
    let host = HostIdentity::resolve(settings.host_name.as_deref(), settings.host_id)?;
    let ring = RingBuf::try_from(maps.events).context("opening the EVENTS ring buffer")?;
    let cpu_rings = maps
        .cpu_rings
        .map(cpu_rings::open)
        .transpose()?
        .unwrap_or_default();
    // The map has room for what each CPU may hold back besides the flows asked for (see
    // `fwlog_common::flow::flow_table_entries`).
    let capacity = match &maps.flows {
        Some(Map::LruHashMap(data)) => data.info().map(|info| info.max_entries()).ok(),
        _ => None,
    }
    .zip(aya::util::nr_cpus().ok())
    .map(|(entries, cpus)| flows_held(entries, cpus as u32))
    .unwrap_or(settings.flow_table_size);
    let exports = exports::start(settings, &host, &ring, &cpu_rings, &maps.counters, capacity)?;
    let counters = PerCpuArray::try_from(maps.counters).context("opening the COUNTERS map")?;
    let flows = match maps.flows {
        Some(map) if settings.flows => {
            let map = HashMap::try_from(map).context("opening the FLOWS map")?;
            let new_flows = maps
                .new_flows
                .map(PerCpuArray::try_from)
                .transpose()
                .context("opening the NEW_FLOW map")?;
            let filter = match maps.flow_filter {
                Some(Map::Array(data)) => Some(MappedFilter::new(data)?),
                Some(_) => bail!("the FLOW_FILTER map is not an array"),
                None => None,
            };
            Some(FlowTable::new(
                map,
                new_flows,
                filter,
                capacity,
                Duration::from_secs(settings.idle_timeout),
                Duration::from_secs(settings.tcp_idle_timeout),
            ))
        }
        _ => None,
    };
    let stdout_is_terminal = std::io::stdout().is_terminal();
    let format = settings
        .format
        .unwrap_or(if stdout_is_terminal && settings.output.is_none() {
            OutputFormat::Text
        } else {
            OutputFormat::Json
        });
    let colour = colour_wanted(
        settings.colour,
        stdout_is_terminal,
        std::env::var_os("NO_COLOR").as_deref(),
    );
    let options = CollectorOptions {
        writer: FormatWriter::new(format, colour, &host),
        filter: settings.filter.clone(),
        verdicts: settings.verdicts,
        name_processes: settings.name_processes,
        flows,
        stats_every: settings.stats_every,
        metrics: exports.metrics,
        exporter: exports.exporter,
    };
    Collector::new(ring, cpu_rings, counters, logger, options, out)
}

/// The summary on stderr (never a panic, even when stderr fails too). `lost` counts the
/// ring's losses and the events a sink never got, and says which when the output lost any.
pub fn print_totals(totals: &Totals) {
    let mut export = match totals.lost_export {
        0 => String::new(),
        lost => format!(", {lost} flows lost to IPFIX export"),
    };
    if totals.lost_replaced > 0 {
        export += &format!(
            ", {} events an earlier install recorded and no reader read",
            totals.lost_replaced
        );
    }
    let lost = match totals.lost_output {
        0 => format!("{} lost", totals.lost),
        output => format!(
            "{} lost ({} in the ring, {output} not written to the output)",
            totals.lost + output,
            totals.lost
        ),
    };
    say(&format!(
        "fwlog: {} events, {} flows, {lost}, {} flows evicted, {} malformed packets{export}",
        totals.events, totals.flows, totals.evicted, totals.malformed
    ));
}

/// Says why the stream ended when stdout's reader went away.
pub fn say_ended(ended: Ended, what_follows: &str) {
    if ended == Ended::OutputClosed {
        say(&format!(
            "fwlog: standard output was closed (its reader exited); {what_follows}"
        ));
    }
}

/// Completes on SIGINT, SIGTERM, and SIGHUP when `hangup_stops`.
fn shutdown_signal(hangup_stops: bool) -> Result<impl Future<Output = ()>> {
    let mut interrupt = signal(SignalKind::interrupt()).context("catching SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("catching SIGTERM")?;
    let mut hangup = if hangup_stops {
        Some(signal(SignalKind::hangup()).context("catching SIGHUP")?)
    } else {
        None
    };
    Ok(async move {
        let hangup = async {
            match &mut hangup {
                Some(hangup) => hangup.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
            _ = hangup => {}
        }
    })
}
