//! The flood bench: new connection attempts against each logging setup, round after round,
//! then one fwlog run per protocol and rate with the kernel's eBPF accounting on.

use std::{
    path::Path,
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use anyhow::{bail, Result};

use super::{
    bpf_stats::{self, ProgramRuns, StatsEnabled},
    fwlog_binary,
    generator::{self, Flood, FloodReport, Proto, Rate},
    measure::{self, SystemCpu},
    modes::{self, Mode, RunSettings, Session, Tools},
    netns::BenchNet,
    report::{self, Drain, Measurement, RunResult},
    Options, INTERRUPTED,
};

/// A consumer that delivered nothing new for this long after the flood has caught up as far
/// as it will (ulogd's NFLOG batches are flushed by a 1 s timer).
const DRAIN_QUIET: Duration = Duration::from_secs(2);
const DRAIN_POLL: Duration = Duration::from_millis(20);

/// One run of the plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlannedRun {
    /// 1-based; 0 for the runs with eBPF accounting on, which come after the rounds.
    pub round: u32,
    pub proto: Proto,
    pub rate: Rate,
    pub mode: Mode,
}

impl PlannedRun {
    pub fn bpf_stats(self) -> bool {
        self.round == 0
    }
}

/// Every protocol × rate × mode, `rounds` times, then (if `bpf_stats`) one fwlog run per
/// protocol × rate with accounting on.
pub fn plan(
    options: &Options,
    rounds: u32,
    skipped: &[(Mode, String)],
    bpf_stats: bool,
) -> Vec<PlannedRun> {
    let runnable: Vec<Mode> = options
        .modes
        .iter()
        .copied()
        .filter(|mode| !skipped.iter().any(|(skipped, _)| skipped == mode))
        .collect();
    let cases: Vec<(Proto, Rate)> = options
        .protos
        .iter()
        .flat_map(|&proto| options.rates.iter().map(move |&rate| (proto, rate)))
        .collect();
    let mut plan = Vec::new();
    for round in 1..=rounds {
        for &(proto, rate) in &cases {
            for &mode in &runnable {
                plan.push(PlannedRun {
                    round,
                    proto,
                    rate,
                    mode,
                });
            }
        }
    }
    if bpf_stats && runnable.contains(&Mode::Fwlog) {
        for &(proto, rate) in &cases {
            plan.push(PlannedRun {
                round: 0,
                proto,
                rate,
                mode: Mode::Fwlog,
            });
        }
    }
    plan
}

/// Builds fwlog and finds ulogd and /dev/kmsg; a mode that cannot run here is skipped, with why.
pub fn prepare_modes(options: &Options) -> (Tools, Vec<(Mode, String)>) {
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

/// Runs the plan in `net`; stops early (with what it has) when interrupted.
pub fn run_plan(
    options: &Options,
    plan: &[PlannedRun],
    net: &BenchNet,
    tools: &Tools,
    out_dir: &Path,
) -> Vec<RunResult> {
    let mut runs = Vec::new();
    for (index, &planned) in plan.iter().enumerate() {
        if INTERRUPTED.load(Ordering::Relaxed) {
            break;
        }
        let PlannedRun {
            round,
            proto,
            rate,
            mode,
        } = planned;
        let flood = Flood {
            proto,
            rate,
            flows: options.flows,
            first_flow: index as u64 * options.flows,
            batch: usize::from(options.batch),
            time_limit: Duration::from_secs(options.max_send_secs),
            threads: usize::from(options.threads),
        };
        let label = if planned.bpf_stats() {
            "bpf-stats".to_owned()
        } else {
            format!("r{round}")
        };
        let run_name = format!(
            "{}-{}-{}-{label}",
            proto.as_str(),
            rate_slug(rate),
            mode.as_str()
        );
        let settings = RunSettings {
            out_dir,
            run_name: &run_name,
            ring_size: &options.ring_size,
            fwlog_args: &options.fwlog_args,
            keep_output: options.keep_output,
        };
        let drain_limit = Duration::from_secs(options.max_drain_secs);
        let outcome = run_once(net, tools, planned, flood, &settings, drain_limit)
            .map_err(|error| format!("{error:#}"));
        eprintln!(
            "bench: [{}/{}] {label} {} {} {}: {}",
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
            round,
            outcome,
        });
    }
    runs
}

/// One planned run: set up, flood, wait for the consumer, measure, take down.
fn run_once(
    net: &BenchNet,
    tools: &Tools,
    planned: PlannedRun,
    flood: Flood,
    settings: &RunSettings,
    drain_limit: Duration,
) -> Result<Measurement> {
    let mut session = Session::start(planned.mode, net, tools, settings)?;
    let stats = if planned.bpf_stats() {
        Some(ProgramsWatch::start(&session)?)
    } else {
        None
    };
    let chain_before = measure::chain_packets(&net.host)?;
    let events_before = session.events()?;
    let consumer_before = session.consumer_usage()?;
    let system_before = SystemCpu::read()?;

    let sent: FloodReport = generator::send(&net.peer, &net.peer_if, flood, &INTERRUPTED)?;
    let flood_end = Instant::now();
    let programs = match stats {
        Some(stats) => stats.finish(&session)?,
        None => Vec::new(),
    };
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
        programs,
    })
}

/// The kernel's accounting of fwlog's programs, on from [`ProgramsWatch::start`] to
/// [`ProgramsWatch::finish`].
pub struct ProgramsWatch {
    _enabled: StatsEnabled,
    pid: u32,
    before: std::collections::BTreeMap<u32, bpf_stats::ProgramCounters>,
}

impl ProgramsWatch {
    pub fn start(session: &Session) -> Result<Self> {
        let Some(pid) = session.fwlog_pid() else {
            bail!("eBPF accounting is measured in the fwlog mode only");
        };
        let enabled = StatsEnabled::enable()?;
        Ok(ProgramsWatch {
            _enabled: enabled,
            pid,
            before: bpf_stats::held_programs(pid)?,
        })
    }

    /// What each of fwlog's programs ran since the start; accounting goes off again.
    pub fn finish(self, session: &Session) -> Result<Vec<ProgramRuns>> {
        let pid = session.fwlog_pid().unwrap_or(self.pid);
        let after = bpf_stats::held_programs(pid)?;
        let names = bpf_stats::program_names()?;
        Ok(bpf_stats::runs_between(&self.before, &after, &names))
    }
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
pub fn rate_slug(rate: Rate) -> String {
    rate.to_string().trim_end_matches("/s").to_owned()
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;
    use crate::{Cli, Task};

    fn options(args: &[&str]) -> Options {
        let args = ["xtask", "bench"].iter().chain(args);
        match Cli::try_parse_from(args) {
            Ok(Cli {
                task: Task::Bench(options),
            }) => options,
            _ => panic!("the options did not parse"),
        }
    }

    #[test]
    fn rounds_repeat_every_case_then_fwlog_is_measured_once_with_accounting() {
        let options = options(&["--modes", "none,fwlog", "--protos", "udp", "--rates", "max"]);
        let plan = plan(&options, 2, &[], true);
        let shape: Vec<(u32, Mode)> = plan.iter().map(|run| (run.round, run.mode)).collect();
        assert_eq!(
            shape,
            [
                (1, Mode::None),
                (1, Mode::Fwlog),
                (2, Mode::None),
                (2, Mode::Fwlog),
                (0, Mode::Fwlog)
            ]
        );
        assert!(plan[4].bpf_stats() && !plan[3].bpf_stats());
        // No accounting run without fwlog, or when it is skipped.
        let skipped = [(Mode::Fwlog, "not built".to_owned())];
        let plan = super::plan(&options, 1, &skipped, true);
        assert_eq!(plan.len(), 1);
        assert_eq!(plan[0].mode, Mode::None);
    }

    #[test]
    fn rate_slugs_name_files() {
        assert_eq!(rate_slug("25k".parse().expect("a rate")), "25k");
        assert_eq!(rate_slug(Rate::Max), "max");
    }
}
