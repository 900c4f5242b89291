//! Streaming events to the user, shared by a `watch` session and the reader of an installed
//! setup: where lines go, in which format, and which signals stop or reopen.

use std::{
    future::Future,
    io::{IsTerminal as _, Write},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use anyhow::{bail, Context as _, Result};
use aya::maps::{HashMap, Map, PerCpuArray, RingBuf};
use fwlog_common::programs::{COUNTERS_MAP, EVENTS_MAP, FLOWS_MAP, FLOW_FILTER_MAP, NEW_FLOW_MAP};
use tokio::signal::unix::{signal, SignalKind};

use crate::{
    args::{EventKind, OutputFormat, WatchArgs},
    collector::{Collector, CollectorOptions, KernelLogger, Totals},
    filter::Filter,
    flow_filter::MappedFilter,
    flows::FlowTable,
    loader,
    output::{
        rotating_file::RotatingFile,
        syslog::SyslogSink,
        tee::Tee,
        writer::{colour_wanted, FormatWriter},
    },
    settings::WatchSettings,
};

/// The maps the collector reads, however they were obtained (loaded now, or pinned).
pub struct CollectorMaps {
    pub events: Map,
    pub counters: Map,
    pub flows: Option<Map>,
    /// Flows proposed by tc ingress and not in the table yet; only for a setup this process
    /// loaded (it flushes them at exit).
    pub new_flows: Option<Map>,
    /// The kernel's count of tracked flows per key slot (absent from setups installed by
    /// fwlog versions without it).
    pub flow_filter: Option<Map>,
}

impl CollectorMaps {
    /// The maps of an object loaded by this process.
    pub fn take_from(ebpf: &mut aya::Ebpf) -> Result<Self> {
        Ok(CollectorMaps {
            events: ebpf.take_map(EVENTS_MAP).context("no EVENTS map")?,
            counters: ebpf.take_map(COUNTERS_MAP).context("no COUNTERS map")?,
            flows: ebpf.take_map(FLOWS_MAP),
            new_flows: ebpf.take_map(NEW_FLOW_MAP),
            flow_filter: ebpf.take_map(FLOW_FILTER_MAP),
        })
    }

    /// The maps an installed setup pinned.
    pub fn from_pins(pin_dir: &std::path::Path) -> Result<Self> {
        Ok(CollectorMaps {
            events: Map::RingBuf(loader::open_pinned_map(pin_dir, EVENTS_MAP)?),
            counters: Map::PerCpuArray(loader::open_pinned_map(pin_dir, COUNTERS_MAP)?),
            flows: loader::open_pinned_map(pin_dir, FLOWS_MAP)
                .ok()
                .map(Map::LruHashMap),
            new_flows: None,
            flow_filter: loader::open_pinned_map(pin_dir, FLOW_FILTER_MAP)
                .ok()
                .map(Map::Array),
        })
    }
}

/// Where lines go, the stop signal, and (with an output file) SIGHUP reopening it.
pub struct Stream {
    pub out: Box<dyn Write>,
    pub shutdown: std::pin::Pin<Box<dyn Future<Output = ()>>>,
}

/// Opens the output and catches the signals: from here on Ctrl-C is a clean stop.
pub fn start(settings: &WatchSettings) -> Result<Stream> {
    let (out, reopen) = open_output(settings)?;
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

/// The collector for `maps`, printing as `args` and `settings` say.
pub fn collector(
    args: &WatchArgs,
    settings: &WatchSettings,
    maps: CollectorMaps,
    logger: Option<KernelLogger>,
    out: Box<dyn Write>,
) -> Result<Collector<Box<dyn Write>>> {
    let ring = RingBuf::try_from(maps.events).context("opening the EVENTS ring buffer")?;
    let counters = PerCpuArray::try_from(maps.counters).context("opening the COUNTERS map")?;
    let flows = match maps.flows {
        Some(map) if args.events.contains(&EventKind::Flow) => {
            let capacity = match &map {
                Map::LruHashMap(data) => data.info().map(|info| info.max_entries()).ok(),
                _ => None,
            }
            .unwrap_or(settings.flow_table_size);
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
        args.format.color,
        stdout_is_terminal,
        std::env::var_os("NO_COLOR").as_deref(),
    );
    let options = CollectorOptions {
        writer: FormatWriter::new(format, colour),
        filter: Filter::new(&args.filter),
        verdicts: args.events.contains(&EventKind::Verdict),
        name_processes: !args.no_process,
        flows,
        stats_every: (args.stats > 0).then(|| Duration::from_secs(args.stats)),
    };
    Collector::new(ring, counters, logger, options, out)
}

pub fn print_totals(totals: &Totals) {
    eprintln!(
        "fwlog: {} events, {} flows, {} lost, {} flows evicted, {} malformed packets",
        totals.events, totals.flows, totals.lost, totals.evicted, totals.malformed
    );
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

/// The collector's sink, and the flag that makes a rotating file reopen itself.
type Output = (Box<dyn Write>, Option<Arc<AtomicBool>>);

/// Where the lines go: stdout, or a rotating file (whose reopen flag SIGHUP sets), and the
/// system log too with `--syslog`.
fn open_output(settings: &WatchSettings) -> Result<Output> {
    let (primary, reopen): (Box<dyn Write>, _) = match &settings.output {
        Some(path) => {
            let file = RotatingFile::open(path, settings.rotate_size, settings.rotate_keep)
                .with_context(|| format!("opening the output file {}", path.display()))?;
            let reopen = file.reopen_flag();
            (Box::new(file), Some(reopen))
        }
        None => (Box::new(std::io::stdout()), None),
    };
    if !settings.syslog {
        return Ok((primary, reopen));
    }
    let syslog = SyslogSink::connect(&settings.rules.prefix).context("--syslog")?;
    Ok((Box::new(Tee(primary, syslog)), reopen))
}
