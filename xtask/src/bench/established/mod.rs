//! `cargo xtask bench --established`: what watching costs the packets of connections already
//! open. Bulk TCP (iperf3) and a stream of small UDP datagrams of one flow, each with no rules
//! (`none`), with fwlog's chains and plain targets (`chains`: conntrack on, nothing logged) and
//! with `fwlog watch`, the three alternating round after round; then one fwlog run per workload
//! with the kernel's eBPF accounting on, for the tc programs' time per packet.

mod iperf;
mod report;
mod stream;

use std::{path::Path, sync::atomic::Ordering, time::Duration};

use anyhow::{Context as _, Result};
use serde_json::json;

use self::{
    report::{EstablishedReport, Figures, RunRecord},
    stream::{StreamFlow, UdpCounters},
};
use super::{
    flood::ProgramsWatch,
    fwlog_binary,
    measure::{self, Machine},
    modes::{Mode, RunSettings, Session, Tools},
    netns::BenchNet,
    save_json, settings_json, Options, INTERRUPTED,
};

/// What an established connection carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// iperf3, one TCP connection, data coming in to the host.
    TcpBulk,
    /// One UDP flow the host opened, 60-byte frames (64 on the wire) coming in, unpaced.
    UdpStream,
}

impl Workload {
    pub fn as_str(self) -> &'static str {
        match self {
            Workload::TcpBulk => "tcp-bulk",
            Workload::UdpStream => "udp-stream",
        }
    }
}

/// What the host namespace runs during a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Setup {
    /// No rules: no conntrack either, as nothing in the namespace asks for it.
    None,
    /// fwlog's chains and jumps with plain targets (the flood's `none` mode): conntrack runs,
    /// nothing is logged, no eBPF.
    Chains,
    /// `fwlog watch`: the same chains with its logging rules, and its tc flow programs.
    Fwlog,
}

pub const SETUPS: [Setup; 3] = [Setup::None, Setup::Chains, Setup::Fwlog];

impl Setup {
    pub fn as_str(self) -> &'static str {
        match self {
            Setup::None => "none",
            Setup::Chains => "chains",
            Setup::Fwlog => "fwlog",
        }
    }

    /// The flood's mode that sets the namespace up the same way, if any.
    fn mode(self) -> Option<Mode> {
        match self {
            Setup::None => None,
            Setup::Chains => Some(Mode::None),
            Setup::Fwlog => Some(Mode::Fwlog),
        }
    }
}

/// One run of the plan: round 0 is the accounting run after the rounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Planned {
    pub round: u32,
    pub workload: Workload,
    pub setup: Setup,
}

pub fn plan(workloads: &[Workload], rounds: u32, bpf_stats: bool) -> Vec<Planned> {
    let mut plan = Vec::new();
    for round in 1..=rounds {
        for &workload in workloads {
            for setup in SETUPS {
                plan.push(Planned {
                    round,
                    workload,
                    setup,
                });
            }
        }
    }
    if bpf_stats {
        plan.extend(workloads.iter().map(|&workload| Planned {
            round: 0,
            workload,
            setup: Setup::Fwlog,
        }));
    }
    plan
}

/// Runs the established-traffic bench and prints and saves its report.
pub fn run(
    options: &Options,
    out_dir: &Path,
    started: std::time::Instant,
    date: jiff::Timestamp,
) -> Result<()> {
    let fwlog = fwlog_binary(options)?;
    if options.workloads.contains(&Workload::TcpBulk) {
        which::which("iperf3").context(
            "iperf3 is not installed: `cargo xtask setup` installs it (Debian package iperf3)",
        )?;
    }
    let tools = Tools {
        fwlog: Some(fwlog),
        ulogd: None,
    };
    let machine = Machine::describe()?;
    let rounds = options.rounds.unwrap_or(5);
    let plan = plan(&options.workloads, rounds, !options.no_bpf_stats);
    let net = BenchNet::create()?;
    let mut runs = Vec::new();
    for (index, &planned) in plan.iter().enumerate() {
        if INTERRUPTED.load(Ordering::Relaxed) {
            break;
        }
        let outcome = run_once(options, &net, &tools, out_dir, planned, index)
            .map_err(|error| format!("{error:#}"));
        eprintln!(
            "bench: [{}/{}] {} {} {}: {}",
            index + 1,
            plan.len(),
            round_label(planned.round),
            planned.workload.as_str(),
            planned.setup.as_str(),
            match &outcome {
                Ok(figures) => report::progress(planned.workload, figures),
                Err(reason) => format!("failed: {reason}"),
            }
        );
        runs.push(RunRecord { planned, outcome });
    }
    drop(net);
    let mut settings = settings_json(options, tools.fwlog.as_deref());
    if let (Some(all), serde_json::Value::Object(extra)) =
        (settings.as_object_mut(), settings_extra(options))
    {
        all.extend(extra);
    }
    let report = EstablishedReport {
        date: date.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        elapsed: started.elapsed(),
        machine,
        load_average_end: measure::load_average(),
        secs_per_run: options.secs,
        settings,
        runs,
    };
    print!("{}", report::markdown(&report));
    save_json(
        out_dir,
        "bench-established",
        date,
        &report::to_json(&report),
    )
}

fn round_label(round: u32) -> String {
    if round == 0 {
        "bpf-stats".to_owned()
    } else {
        format!("r{round}")
    }
}

/// One run: the setup, the workload, the figures, the setup taken down.
fn run_once(
    options: &Options,
    net: &BenchNet,
    tools: &Tools,
    out_dir: &Path,
    planned: Planned,
    index: usize,
) -> Result<Figures> {
    let run_name = format!(
        "established-{}-{}-{}",
        planned.workload.as_str(),
        planned.setup.as_str(),
        round_label(planned.round)
    );
    let settings = RunSettings {
        out_dir,
        run_name: &run_name,
        ring_size: &options.ring_size,
        fwlog_args: &options.fwlog_args,
        keep_output: options.keep_output,
    };
    let session = match planned.setup.mode() {
        Some(mode) => Some(Session::start(mode, net, tools, &settings)?),
        None => None,
    };
    let chain_before = match &session {
        Some(_) => Some(measure::chain_packets(&net.host)?),
        None => None,
    };
    let secs = options.secs;
    let mut figures = match planned.workload {
        Workload::TcpBulk => {
            let server = iperf::Server::start(&net.peer)?;
            let watch = start_watch(planned, session.as_ref())?;
            let cpu_before = iperf::children_cpu_secs();
            let result = iperf::run_client(&net.host, secs)?;
            let programs = finish_watch(watch, session.as_ref())?;
            // The one-off server ends with its test; waiting for it counts its CPU time in.
            server.stop()?;
            let cpu_secs = iperf::children_cpu_secs() - cpu_before;
            Figures::of_bulk(&result, cpu_secs, programs)
        }
        Workload::UdpStream => {
            // Ports of their own per run: no conntrack entry or flow of an earlier run is met.
            let offset = u16::try_from(index % 10_000).unwrap_or(0);
            let flow = StreamFlow::open(net, 20_000 + offset, 30_000 + offset)?;
            let before = UdpCounters::read(&net.host)?;
            let watch = start_watch(planned, session.as_ref())?;
            let sent = stream::send(
                &net.peer,
                &net.peer_if,
                flow.ends,
                Duration::from_secs(secs),
                usize::from(options.batch),
                &INTERRUPTED,
            )?;
            let programs = finish_watch(watch, session.as_ref())?;
            let after = UdpCounters::read(&net.host)?;
            drop(flow);
            let ticks = measure::ticks_per_second() as f64;
            Figures::of_stream(&sent, after.reached_socket_since(before), ticks, programs)
        }
    };
    if let Some(before) = chain_before {
        figures.seen_as_new = Some(measure::chain_packets(&net.host)?.saturating_sub(before));
    }
    if let Some(session) = session {
        let finished = session.finish()?;
        figures.verdicts = finished.events;
        figures.notes.extend(finished.notes);
    }
    // Connections of earlier runs may stay in conntrack's table: no run meets them, as each
    // stream has ports of its own and each iperf3 connection a new client port.
    Ok(figures)
}

fn start_watch(planned: Planned, session: Option<&Session>) -> Result<Option<ProgramsWatch>> {
    match session {
        Some(session) if planned.round == 0 => ProgramsWatch::start(session).map(Some),
        _ => Ok(None),
    }
}

fn finish_watch(
    watch: Option<ProgramsWatch>,
    session: Option<&Session>,
) -> Result<Vec<super::bpf_stats::ProgramRuns>> {
    match (watch, session) {
        (Some(watch), Some(session)) => watch.finish(session),
        _ => Ok(Vec::new()),
    }
}

/// The settings only an established run has, for the report.
fn settings_extra(options: &Options) -> serde_json::Value {
    json!({
        "workloads": options.workloads.iter().map(|w| w.as_str()).collect::<Vec<_>>(),
        "secs_per_run": options.secs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_alternate_within_each_round_then_fwlog_is_measured() {
        let plan = plan(&[Workload::TcpBulk, Workload::UdpStream], 2, true);
        assert_eq!(plan.len(), 2 * 2 * 3 + 2);
        let first: Vec<(u32, &str, &str)> = plan
            .iter()
            .take(6)
            .map(|p| (p.round, p.workload.as_str(), p.setup.as_str()))
            .collect();
        assert_eq!(
            first,
            [
                (1, "tcp-bulk", "none"),
                (1, "tcp-bulk", "chains"),
                (1, "tcp-bulk", "fwlog"),
                (1, "udp-stream", "none"),
                (1, "udp-stream", "chains"),
                (1, "udp-stream", "fwlog"),
            ]
        );
        assert!(plan[12..]
            .iter()
            .all(|p| p.round == 0 && p.setup == Setup::Fwlog));
        assert_eq!(super::plan(&[Workload::UdpStream], 1, false).len(), 3);
    }

    #[test]
    fn chains_are_the_floods_unlogged_layout() {
        assert_eq!(Setup::None.mode(), None);
        assert_eq!(Setup::Chains.mode(), Some(Mode::None));
        assert_eq!(Setup::Fwlog.mode(), Some(Mode::Fwlog));
    }
}
