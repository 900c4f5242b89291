//! Bench: one flood of new connection attempts against each logging setup (no logging, `-j LOG`,
//! NFLOG + ulogd, fwlog) on fwlog's chain layout, in namespaces of its own; reports what each
//! delivered and what it cost, as a markdown table and target/bench/bench-<timestamp>.json.

mod generator;
mod measure;
mod modes;
mod netns;
mod report;
mod summary;

use std::{
    env, fs,
    os::unix::process::CommandExt as _,
    process::Command,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use clap::Args;
use nix::{
    sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal},
    unistd::geteuid,
};
use serde_json::json;

use self::{
    generator::{Flood, FloodReport, Proto, Rate},
    measure::{Machine, SystemCpu},
    modes::{Mode, RunSettings, Session, Tools},
    netns::BenchNet,
    report::{Drain, Measurement, Report, RunResult},
};
use crate::{build, cmd, setup};

#[derive(Args)]
pub struct Options {
    /// Flows per run; each is a new connection attempt from its own source address and port.
    #[arg(long, default_value_t = 200_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    flows: u64,
    /// Target rates in flows per second (e.g. 20k,100k,1M), or `max` for no pacing.
    #[arg(long, value_delimiter = ',', default_value = "25k,100k,max")]
    rates: Vec<Rate>,
    /// Logging setups to compare, in this order.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "none,floor,log,nflog,fwlog"
    )]
    modes: Vec<Mode>,
    /// Kinds of connection attempt.
    #[arg(long, value_delimiter = ',', default_value = "udp,tcp")]
    protos: Vec<Proto>,
    /// Frames per sendmmsg call.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..=1024))]
    batch: u16,
    /// Longest a flood may last, in seconds: it stops there even if flows are left.
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..=300))]
    max_send_secs: u64,
    /// Longest wait for a consumer to catch up after a flood, in seconds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=300))]
    max_drain_secs: u64,
    /// fwlog's ring buffer size (`fwlog watch --ring-size`).
    #[arg(long, default_value = "16M")]
    ring_size: String,
    /// Bench this fwlog binary instead of building the workspace's (e.g. to compare versions).
    #[arg(long, value_name = "PATH")]
    fwlog_bin: Option<std::path::PathBuf>,
    /// One more argument for `fwlog watch`; repeat for several (e.g. `--fwlog-arg=--events=verdict`).
    #[arg(long = "fwlog-arg", value_name = "ARG", allow_hyphen_values = true)]
    fwlog_args: Vec<String>,
    /// Keep each run's consumer output (fwlog JSON lines, ulogd files) in target/bench.
    #[arg(long)]
    keep_output: bool,
    /// Do not apt-get install ulogd2 when it is missing: skip the nflog mode instead.
    #[arg(long)]
    no_install: bool,
    /// Instead of the flood: time `fwlog summary` over a generated 1 GiB log.
    #[arg(long)]
    summary: bool,
}

/// A consumer that delivered nothing new for this long after the flood has caught up as far
/// as it will (ulogd's NFLOG batches are flushed by a 1 s timer).
const DRAIN_QUIET: Duration = Duration::from_secs(2);
const DRAIN_POLL: Duration = Duration::from_millis(20);

/// Set by SIGINT/SIGTERM/SIGHUP: the flood and the waits stop, the guards clean up.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// `cargo xtask bench`.
pub fn run(options: Options) -> Result<()> {
    if options.summary {
        return summary::run();
    }
    if !geteuid().is_root() {
        bail!(
            "the bench creates network namespaces, installs iptables rules in them and sets \
             net.netfilter.nf_log_all_netns: run it as root (`sudo -E cargo xtask bench`)"
        );
    }
    run_optimised_build()?;
    let started = Instant::now();
    let date = jiff::Timestamp::now();
    // From here on, Ctrl-C ends the bench through its guards (a build or apt-get it runs dies
    // of it: its mode is skipped, and the loop below does not start).
    catch_interrupts()?;
    setup::prepare(setup::Report::ChangesOnly)?;
    let out_dir = build::target_dir()?.join("bench");
    fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    for name in netns::remove_leftovers()? {
        eprintln!("bench: deleted namespace {name}, left by a bench that was killed");
    }
    if let Some(value) = modes::kmsg::LogAllNetns::restore_after_crash()? {
        eprintln!(
            "bench: set net.netfilter.nf_log_all_netns back to {value}, left raised by a bench that was killed"
        );
    }
    let (tools, skipped) = prepare_modes(&options);
    for (mode, reason) in &skipped {
        eprintln!("bench: skipping the {} mode: {reason}", mode.as_str());
    }
    let machine = Machine::describe()?;

    let net = BenchNet::create()?;
    let plan: Vec<(Proto, Rate, Mode)> = options
        .protos
        .iter()
        .flat_map(|&proto| options.rates.iter().map(move |&rate| (proto, rate)))
        .flat_map(|(proto, rate)| {
            options
                .modes
                .iter()
                .filter(|mode| !skipped.iter().any(|(skipped, _)| skipped == *mode))
                .map(move |&mode| (proto, rate, mode))
        })
        .collect();
    let mut runs = Vec::new();
    for (index, &(proto, rate, mode)) in plan.iter().enumerate() {
        if INTERRUPTED.load(Ordering::Relaxed) {
            break;
        }
        let flood = Flood {
            proto,
            rate,
            flows: options.flows,
            first_flow: index as u64 * options.flows,
            batch: usize::from(options.batch),
            time_limit: Duration::from_secs(options.max_send_secs),
        };
        let run_name = format!("{}-{}-{}", proto.as_str(), rate_slug(rate), mode.as_str());
        let settings = RunSettings {
            out_dir: &out_dir,
            run_name: &run_name,
            ring_size: &options.ring_size,
            fwlog_args: &options.fwlog_args,
            keep_output: options.keep_output,
        };
        let drain_limit = Duration::from_secs(options.max_drain_secs);
        let outcome = run_once(&net, &tools, mode, flood, &settings, drain_limit)
            .map_err(|error| format!("{error:#}"));
        eprintln!(
            "bench: [{}/{}] {} {} {}: {}",
            index + 1,
            plan.len(),
            proto.as_str(),
            rate,
            mode.as_str(),
            progress(&outcome)
        );
        runs.push(RunResult {
            mode,
            proto,
            rate,
            outcome,
        });
    }
    drop(net);

    let report = Report {
        date: date.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        elapsed: started.elapsed(),
        machine,
        flows_per_run: options.flows,
        settings: settings_json(&options, &tools),
        runs,
        skipped,
    };
    print!("{}", report::markdown(&report));
    let json_path = out_dir.join(format!("bench-{}.json", date.strftime("%Y%m%dT%H%M%SZ")));
    let json = serde_json::to_string_pretty(&report::to_json(&report))
        .context("serialising the report")?;
    fs::write(&json_path, json + "\n")
        .with_context(|| format!("writing {}", json_path.display()))?;
    eprintln!("bench: wrote {}", json_path.display());
    if INTERRUPTED.load(Ordering::Relaxed) {
        bail!("interrupted: the report above is partial; namespaces and rules were removed");
    }
    Ok(())
}

/// The bench times its own threads (the flood, the /dev/kmsg reader): in the dev profile that
/// `cargo xtask` runs, they would measure unoptimised Rust (3x the reader's CPU, a slower flood).
/// So a dev build rebuilds xtask with `--release` and replaces itself with it; returns only in
/// an optimised build.
fn run_optimised_build() -> Result<()> {
    if !cfg!(debug_assertions) {
        return Ok(());
    }
    let mut build = cmd::cargo();
    build.args(["build", "--release", "--package", "xtask"]);
    cmd::run(&mut build).context("building an optimised xtask for the bench failed")?;
    let binary = build::target_dir()?.join("release").join("xtask");
    eprintln!("bench: running the optimised build {}", binary.display());
    let error = Command::new(&binary).args(env::args_os().skip(1)).exec();
    Err(error).with_context(|| format!("could not run {}", binary.display()))
}

/// Builds fwlog and finds ulogd and /dev/kmsg; a mode that cannot run here is skipped, with why.
fn prepare_modes(options: &Options) -> (Tools, Vec<(Mode, String)>) {
    let mut tools = Tools::default();
    let mut skipped = Vec::new();
    for &mode in &options.modes {
        let ready = match mode {
            Mode::None | Mode::Floor => Ok(()),
            Mode::Log => modes::kmsg::check_available(),
            Mode::Nflog => modes::ulogd::ensure_installed(!options.no_install)
                .map(|ulogd| tools.ulogd = Some(ulogd)),
            Mode::Fwlog => fwlog_binary(options).map(|fwlog| tools.fwlog = Some(fwlog)),
        };
        if let Err(error) = ready {
            if !skipped.iter().any(|(skipped, _)| *skipped == mode) {
                skipped.push((mode, format!("{error:#}")));
            }
        }
    }
    (tools, skipped)
}

/// `--fwlog-bin`, else a release build of the workspace's fwlog.
fn fwlog_binary(options: &Options) -> Result<std::path::PathBuf> {
    match &options.fwlog_bin {
        Some(binary) if binary.is_file() => binary
            .canonicalize()
            .with_context(|| format!("resolving {}", binary.display())),
        Some(binary) => bail!("--fwlog-bin {} is not a file", binary.display()),
        None => build::build_fwlog(true),
    }
}

/// One mode × protocol × rate: set up, flood, wait for the consumer, measure, take down.
fn run_once(
    net: &BenchNet,
    tools: &Tools,
    mode: Mode,
    flood: Flood,
    settings: &RunSettings,
    drain_limit: Duration,
) -> Result<Measurement> {
    let mut session = Session::start(mode, net, tools, settings)?;
    let chain_before = measure::chain_packets(&net.host)?;
    let events_before = session.events()?;
    let consumer_before = session.consumer_usage()?;
    let system_before = SystemCpu::read()?;

    let sent: FloodReport = generator::send(&net.peer, &net.peer_if, flood, &INTERRUPTED)?;
    let flood_end = Instant::now();
    let drain = match events_before {
        Some(before) => Some(wait_for_drain(
            &mut session,
            before + sent.sent,
            flood_end,
            drain_limit,
        )?),
        None => None,
    };

    let system = SystemCpu::read()?.since(system_before);
    let consumer_after = session.consumer_usage()?;
    let reached = measure::chain_packets(&net.host)?.saturating_sub(chain_before);
    let mut finished = session.finish()?;
    let conntrack_after = measure::conntrack_entries(&net.host)?;
    if conntrack_after > 0 {
        // Dropped NEW packets leave no confirmed entries; should some appear, the next run
        // must not start with them.
        match net.host.output("conntrack", &["-F"]) {
            Ok(_) => finished.notes.push("conntrack table flushed".into()),
            Err(error) => finished.notes.push(format!("{error:#}")),
        }
    }

    let ticks = measure::ticks_per_second() as f64;
    let consumer = match (consumer_before, consumer_after) {
        (Some(before), Some(after)) => Some(after.since(before)),
        _ => None,
    };
    Ok(Measurement {
        sent: sent.sent,
        refused: sent.refused,
        flood_end: sent.end,
        send_secs: sent.elapsed.as_secs_f64(),
        reached,
        events: finished
            .events
            .map(|events| events.saturating_sub(events_before.unwrap_or(0))),
        known_lost: finished.known_lost,
        consumer_cpu_secs: consumer.map(|usage| usage.cpu_ticks as f64 / ticks),
        consumer_sleeps: consumer.map(|usage| usage.sleeps),
        sender_cpu_secs: sent.cpu_ticks as f64 / ticks,
        softirq_secs: system.softirq as f64 / ticks,
        system_secs: system.system as f64 / ticks,
        user_secs: system.user as f64 / ticks,
        drain,
        conntrack_after,
        setup_secs: finished.setup_secs,
        notes: finished.notes,
        detail: finished.detail,
    })
}

/// Waits until the consumer has delivered `target` events, or stops delivering for
/// [`DRAIN_QUIET`], or `limit` has passed since `flood_end`.
fn wait_for_drain(
    session: &mut Session,
    target: u64,
    flood_end: Instant,
    limit: Duration,
) -> Result<Drain> {
    let mut delivered = session.events()?.unwrap_or(0);
    let mut last_growth = flood_end;
    loop {
        let now = Instant::now();
        if delivered >= target {
            // For a file, when it stopped growing: reading a gigabyte of lines takes the bench
            // a second, which is not the consumer's.
            let done = session.last_output().unwrap_or(now).max(flood_end);
            return Ok(Drain {
                secs: done.duration_since(flood_end).as_secs_f64(),
                caught_up: true,
                timed_out: false,
            });
        }
        if now.duration_since(flood_end) >= limit {
            return Ok(Drain {
                secs: now.duration_since(flood_end).as_secs_f64(),
                caught_up: false,
                timed_out: true,
            });
        }
        if now.duration_since(last_growth) >= DRAIN_QUIET {
            return Ok(Drain {
                secs: last_growth.duration_since(flood_end).as_secs_f64(),
                caught_up: false,
                timed_out: false,
            });
        }
        if INTERRUPTED.load(Ordering::Relaxed) {
            bail!("interrupted");
        }
        std::thread::sleep(DRAIN_POLL);
        let now_delivered = session.events()?.unwrap_or(0);
        if now_delivered > delivered {
            delivered = now_delivered;
            last_growth = Instant::now();
        }
    }
}

fn progress(outcome: &Result<Measurement, String>) -> String {
    match outcome {
        Err(reason) => format!("failed: {reason}"),
        Ok(m) => {
            let events = match (m.events, m.loss_percent()) {
                (Some(events), Some(loss)) => {
                    format!(", {} events ({loss:.2} % lost)", report::thousands(events))
                }
                _ => String::new(),
            };
            format!(
                "sent {}, reached {}{events}, {} flows/s",
                report::thousands(m.sent),
                report::thousands(m.reached),
                report::thousands(m.achieved_rate().round() as u64)
            )
        }
    }
}

/// `25k/s` → `25k`, for file names.
fn rate_slug(rate: Rate) -> String {
    rate.to_string().trim_end_matches("/s").to_owned()
}

fn settings_json(options: &Options, tools: &Tools) -> serde_json::Value {
    let output_of = |command: &mut Command| {
        cmd::output(command)
            .map(|output| output.trim().to_owned())
            .ok()
    };
    let workspace = output_of(
        Command::new("git")
            .arg("-C")
            .arg(cmd::workspace_root())
            .args(["describe", "--always", "--dirty"]),
    );
    let fwlog_version = tools
        .fwlog
        .as_ref()
        .and_then(|fwlog| output_of(Command::new(fwlog).arg("--version")));
    json!({
        "workspace_commit": workspace,
        "fwlog_version": fwlog_version,
        "flows_per_run": options.flows,
        "rates": options.rates.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "modes": options.modes.iter().map(|mode| mode.as_str()).collect::<Vec<_>>(),
        "protos": options.protos.iter().map(|proto| proto.as_str()).collect::<Vec<_>>(),
        "batch": options.batch,
        "max_send_secs": options.max_send_secs,
        "max_drain_secs": options.max_drain_secs,
        "fwlog_bin": options.fwlog_bin.as_ref().map(|binary| binary.display().to_string()),
        "fwlog_ring_size": options.ring_size,
        "fwlog_args": options.fwlog_args,
        "clock_ticks_per_sec": measure::ticks_per_second(),
        "log_prefix": modes::LOG_PREFIX_DROP,
        "nflog_group": modes::NFLOG_GROUP,
        "dest": format!("{}:{}", netns::HOST_ADDR, generator::DEST_PORT),
    })
}

extern "C" fn on_interrupt(_signal: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
}

/// Ctrl-C, SIGTERM and SIGHUP set [`INTERRUPTED`] instead of killing the bench mid-run.
fn catch_interrupts() -> Result<()> {
    let action = SigAction::new(
        SigHandler::Handler(on_interrupt),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { sigaction(signal, &action) }.with_context(|| format!("catching {signal}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;
    use crate::{Cli, Task};

    #[test]
    fn defaults_cover_every_mode_protocol_and_three_rates() {
        let Ok(Cli {
            task: Task::Bench(options),
        }) = Cli::try_parse_from(["xtask", "bench"])
        else {
            panic!("`xtask bench` did not parse");
        };
        assert_eq!(options.flows, 200_000);
        assert_eq!(
            options.modes,
            [Mode::None, Mode::Floor, Mode::Log, Mode::Nflog, Mode::Fwlog]
        );
        assert_eq!(options.protos, [Proto::Udp, Proto::Tcp]);
        assert_eq!(options.rates.len(), 3);
        assert_eq!(options.rates.last(), Some(&Rate::Max));
    }

    #[test]
    fn lists_and_rates_parse() {
        let parsed = Cli::try_parse_from([
            "xtask",
            "bench",
            "--flows",
            "1000",
            "--rates",
            "10k,max",
            "--modes",
            "fwlog",
            "--protos",
            "tcp",
            "--fwlog-arg=--events=verdict",
            "--fwlog-arg",
            "--stats=0",
        ]);
        let Ok(Cli {
            task: Task::Bench(options),
        }) = parsed
        else {
            panic!("the options did not parse");
        };
        assert_eq!(options.flows, 1000);
        assert_eq!(options.modes, [Mode::Fwlog]);
        assert_eq!(options.protos, [Proto::Tcp]);
        assert_eq!(rate_slug(options.rates[0]), "10k");
        assert_eq!(options.fwlog_args, ["--events=verdict", "--stats=0"]);
        assert!(Cli::try_parse_from(["xtask", "bench", "--modes", "syslog"]).is_err());
        assert!(Cli::try_parse_from(["xtask", "bench", "--flows", "0"]).is_err());
    }
}
