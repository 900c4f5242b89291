//! `fwlog watch`: install for the session, stream events, remove on exit.

use std::{
    future::Future,
    io::{IsTerminal as _, Write},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use anyhow::{Context as _, Result};
use aya::maps::{HashMap, PerCpuArray, RingBuf};
use fwlog_common::programs::{COUNTERS_MAP, EVENTS_MAP, FLOWS_MAP};
use tokio::signal::unix::{signal, SignalKind};

use crate::{
    args::{EventKind, OutputFormat, WatchArgs},
    collector::{Collector, CollectorOptions},
    filter::Filter,
    firewall::{iptables, plan::install_script, Family},
    flows::FlowTable,
    installation::{remove_rules, Installation},
    interfaces,
    loader::{self, LoadOptions},
    netns::{InstanceLock, NetNs},
    output::{
        rotating_file::RotatingFile,
        syslog::SyslogSink,
        tee::Tee,
        writer::{colour_wanted, FormatWriter},
    },
    preflight,
    settings::{self, WatchSettings},
    ssh_guard,
};

pub fn run(args: WatchArgs) -> Result<()> {
    let settings = settings::watch_settings(&args, &settings::load_config(&args.rules)?);
    preflight::require_root("watch")?;
    let interfaces = interfaces::resolve(&settings.rules.interfaces)?;
    preflight::require_kernel()?;
    preflight::require_bpffs()?;
    if !args.no_rules {
        preflight::require_iptables()?;
    }
    let netns = NetNs::current()?;
    let _lock = InstanceLock::acquire(netns)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(watch(args, settings, interfaces, netns))
}

async fn watch(
    args: WatchArgs,
    settings: WatchSettings,
    interfaces: Vec<String>,
    netns: NetNs,
) -> Result<()> {
    // Signals are caught from here on, so Ctrl-C during set-up still cleans up. With an output
    // file, SIGHUP means "reopen it" (logrotate), not "stop".
    let (out, reopen) = open_output(&settings)?;
    let shutdown = shutdown_signal(reopen.is_none())?;
    if let Some(reopen) = reopen {
        let mut hangup = signal(SignalKind::hangup()).context("catching SIGHUP")?;
        tokio::spawn(async move {
            while hangup.recv().await.is_some() {
                reopen.store(true, Ordering::Relaxed);
            }
        });
    }
    remove_leftovers(netns, !args.no_rules)?;

    let track_flows = args.events.contains(&EventKind::Flow);
    let mut ebpf = loader::load(&LoadOptions {
        ring_bytes: settings.ring_size,
        flow_table: track_flows.then_some(settings.flow_table_size),
        dns: !args.no_names,
        processes: !args.no_process,
    })?;
    // Kept until exit: dropping them detaches the hooks.
    let _process_links = if args.no_process {
        None
    } else {
        let links = loader::attach_process_programs(&mut ebpf)?;
        if links.is_none() {
            eprintln!("fwlog: no cgroup v2 mount found: processes will not be named");
        }
        links
    };
    let logger = match aya_log::EbpfLogger::init(&mut ebpf) {
        Ok(logger) => Some(logger),
        Err(error) => {
            log::warn!("kernel-side diagnostics unavailable: {error}");
            None
        }
    };
    let mut installation = Installation::new(netns);
    installation.pin(&mut ebpf)?;
    let options = super::rule_options(&settings.rules, interfaces, netns);
    let attachments = if track_flows {
        Some(loader::attach_flow_programs(
            &mut ebpf,
            &options.interfaces,
        )?)
    } else {
        None
    };
    if args.no_rules {
        eprintln!("fwlog: programs pinned, no rules installed; rules that use them:");
        for family in Family::ALL {
            let existing = iptables::save(family).map(|t| t.chains).unwrap_or_default();
            eprint!(
                "# {}-restore --noflush\n{}",
                family.command(),
                install_script(&options, &existing)
            );
        }
    } else {
        if !args.rules.force {
            let session = std::env::var("SSH_CONNECTION").ok();
            ssh_guard::check(
                session.as_deref(),
                &ssh_guard::interface_addresses(),
                &options,
            )
            .map_err(anyhow::Error::msg)?;
        }
        installation.install_rules(&options)?;
    }

    let ring = RingBuf::try_from(ebpf.take_map(EVENTS_MAP).context("no EVENTS map")?)
        .context("opening the EVENTS ring buffer")?;
    let counters = PerCpuArray::try_from(ebpf.take_map(COUNTERS_MAP).context("no COUNTERS map")?)
        .context("opening the COUNTERS map")?;
    let flows = if track_flows {
        let map = HashMap::try_from(ebpf.take_map(FLOWS_MAP).context("no FLOWS map")?)
            .context("opening the FLOWS map")?;
        let idle = Duration::from_secs(settings.idle_timeout);
        Some(FlowTable::new(map, settings.flow_table_size, idle))
    } else {
        None
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
    let collector_options = CollectorOptions {
        writer: FormatWriter::new(format, colour),
        filter: Filter::new(&args.filter),
        verdicts: args.events.contains(&EventKind::Verdict),
        flows,
        stats_every: (args.stats > 0).then(|| Duration::from_secs(args.stats)),
    };
    let mut collector = Collector::new(ring, counters, logger, collector_options, out)?;
    eprintln!(
        "fwlog: watching {} (inbound NEW/RELATED dropped, outbound logged); Ctrl-C stops and \
         removes the rules",
        options.interfaces.join(", ")
    );

    let streamed = collector.run_until(shutdown).await;
    // Rules and tc programs first, so nothing new arrives, then read what the kernel holds.
    let removed = installation.remove();
    let detached = attachments.map_or(Ok(()), |a| a.detach(&mut ebpf));
    let totals = collector.finish();
    if let Ok(totals) = &totals {
        eprintln!(
            "fwlog: {} events, {} flows, {} lost, {} flows evicted, {} malformed packets",
            totals.events, totals.flows, totals.lost, totals.evicted, totals.malformed
        );
    }
    streamed?;
    removed?;
    detached?;
    totals.map(|_| ())
}

/// What an instance that was killed (SIGKILL, power loss of the collector) left behind.
fn remove_leftovers(netns: NetNs, with_rules: bool) -> Result<()> {
    let mut found = false;
    if with_rules {
        for family in Family::ALL {
            found |= remove_rules(family)?;
        }
    }
    found |= loader::remove_pins(&netns.pin_dir())?;
    if found {
        eprintln!("fwlog: removed what an earlier fwlog left behind (it did not exit cleanly)");
    }
    Ok(())
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
