//! The established bench's results: every run's figures, the ratios between setups over the
//! rounds (median and range), and fwlog's program time per packet, as markdown and JSON.

use std::{fmt::Write as _, time::Duration};

use serde_json::{json, Value};

use super::{iperf::BulkResult, stream::StreamReport, Planned, Setup, Workload, SETUPS};
use crate::bench::{
    bpf_stats::ProgramRuns,
    measure::Machine,
    report::thousands,
    rounds::{paired_ratios, Spread},
};

/// What one run measured.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Figures {
    /// The workload's figure: Gbit/s received (tcp-bulk), thousands of datagrams sent per
    /// second (udp-stream).
    pub rate: f64,
    pub secs: f64,
    /// Bytes received (tcp-bulk), datagrams sent (udp-stream).
    pub sent: u64,
    /// udp-stream: datagrams that reached the host's socket layer (queued, or dropped by a full
    /// receive buffer); should equal `sent`.
    pub reached: Option<u64>,
    /// udp-stream: frames refused by the sending socket.
    pub refused: u64,
    /// udp-stream: the sending thread's CPU, the host's receive softirq included.
    pub sender_cpu_secs: Option<f64>,
    /// What the CPU time bought, per CPU-second: GB received (tcp-bulk: iperf3's client and
    /// server, slow start included) or thousands of datagrams (udp-stream: the sending thread,
    /// which runs the host's receive path). Moves less with the host's load than the rate.
    pub per_cpu_second: Option<f64>,
    /// tcp-bulk: retransmitted segments; iperf3's client (host) and server (peer) CPU use.
    pub retransmits: Option<u64>,
    pub host_cpu_percent: Option<f64>,
    pub remote_cpu_percent: Option<f64>,
    /// Packets LOG_AND_DROP dropped during the run (chains, fwlog): an established flow's
    /// packets never go there.
    pub seen_as_new: Option<u64>,
    /// fwlog's verdict lines (the connections opening).
    pub verdicts: Option<u64>,
    /// fwlog's programs, in the run with accounting on.
    pub programs: Vec<ProgramRuns>,
    pub notes: Vec<String>,
}

impl Figures {
    pub fn of_bulk(result: &BulkResult, cpu_secs: f64, programs: Vec<ProgramRuns>) -> Self {
        Figures {
            rate: result.bits_per_second / 1e9,
            per_cpu_second: (cpu_secs > 0.0).then(|| result.bytes_total as f64 / 1e9 / cpu_secs),
            secs: result.seconds,
            sent: result.bytes_received,
            retransmits: result.retransmits,
            host_cpu_percent: result.host_cpu_percent,
            remote_cpu_percent: result.remote_cpu_percent,
            programs,
            ..Figures::default()
        }
    }

    pub fn of_stream(
        sent: &StreamReport,
        reached: u64,
        ticks_per_second: f64,
        programs: Vec<ProgramRuns>,
    ) -> Self {
        let secs = sent.elapsed.as_secs_f64();
        let cpu_secs = sent.cpu_ticks as f64 / ticks_per_second;
        let mut notes = Vec::new();
        if reached < sent.sent.saturating_sub(sent.sent / 100) {
            notes.push(format!(
                "only {} of {} datagrams reached the host's sockets",
                thousands(reached),
                thousands(sent.sent)
            ));
        }
        Figures {
            rate: if secs > 0.0 {
                sent.sent as f64 / secs / 1e3
            } else {
                0.0
            },
            secs,
            sent: sent.sent,
            reached: Some(reached),
            refused: sent.refused,
            sender_cpu_secs: Some(cpu_secs),
            per_cpu_second: (cpu_secs > 0.0).then(|| sent.sent as f64 / 1e3 / cpu_secs),
            programs,
            notes,
            ..Figures::default()
        }
    }
}

/// One planned run and what came of it.
#[derive(Clone, Debug, PartialEq)]
pub struct RunRecord {
    pub planned: Planned,
    pub outcome: Result<Figures, String>,
}

pub struct EstablishedReport {
    pub date: String,
    pub elapsed: Duration,
    pub machine: Machine,
    pub load_average_end: String,
    pub secs_per_run: u64,
    pub settings: Value,
    pub runs: Vec<RunRecord>,
}

fn unit(workload: Workload) -> &'static str {
    match workload {
        Workload::TcpBulk => "Gbit/s received",
        Workload::UdpStream => "k datagrams/s",
    }
}

/// The figures compared: the rate, and the work per CPU-second.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Metric {
    Rate,
    PerCpuSecond,
}

impl Metric {
    fn of(self, figures: &Figures) -> Option<f64> {
        match self {
            Metric::Rate => Some(figures.rate),
            Metric::PerCpuSecond => figures.per_cpu_second,
        }
    }

    fn unit(self, workload: Workload) -> &'static str {
        match (self, workload) {
            (Metric::Rate, workload) => unit(workload),
            (Metric::PerCpuSecond, Workload::TcpBulk) => "GB per CPU-s",
            (Metric::PerCpuSecond, Workload::UdpStream) => "k datagrams per CPU-s",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Metric::Rate => "rate",
            Metric::PerCpuSecond => "per_cpu_second",
        }
    }
}

/// What a program's time is divided by: datagrams sent, or megabytes received.
fn per_unit(workload: Workload, figures: &Figures) -> (f64, &'static str) {
    match workload {
        Workload::TcpBulk => (figures.sent as f64 / 1e6, "MB"),
        Workload::UdpStream => (figures.sent as f64, "datagram"),
    }
}

pub fn progress(workload: Workload, figures: &Figures) -> String {
    let mut text = format!("{:.2} {}", figures.rate, unit(workload));
    if let Some(new) = figures.seen_as_new.filter(|&new| new > 0) {
        let _ = write!(text, ", {new} packets seen as new");
    }
    for program in &figures.programs {
        let _ = write!(
            text,
            ", {} {:.0} ns/run",
            program.name,
            program.ns_per_run()
        );
    }
    text
}

/// (round, figure) of every measured run of `workload` with `setup`, accounting runs left out.
fn figures_of(
    report: &EstablishedReport,
    metric: Metric,
    workload: Workload,
    setup: Setup,
) -> Vec<(u32, f64)> {
    report
        .runs
        .iter()
        .filter(|run| run.planned.round > 0)
        .filter(|run| run.planned.workload == workload && run.planned.setup == setup)
        .filter_map(|run| Some((run.planned.round, metric.of(run.outcome.as_ref().ok()?)?)))
        .collect()
}

fn workloads(report: &EstablishedReport) -> Vec<Workload> {
    let mut seen = Vec::new();
    for run in &report.runs {
        if !seen.contains(&run.planned.workload) {
            seen.push(run.planned.workload);
        }
    }
    seen
}

/// The per-round ratio `numerator / denominator` of `workload`'s figures.
fn ratio(
    report: &EstablishedReport,
    metric: Metric,
    workload: Workload,
    numerator: Setup,
    denominator: Setup,
) -> Option<Spread> {
    Spread::of(&paired_ratios(
        &figures_of(report, metric, workload, numerator),
        &figures_of(report, metric, workload, denominator),
    ))
}

/// The median (min–max) of `workload`'s figures with `setup`.
fn spread(
    report: &EstablishedReport,
    metric: Metric,
    workload: Workload,
    setup: Setup,
) -> Option<Spread> {
    let values: Vec<f64> = figures_of(report, metric, workload, setup)
        .into_iter()
        .map(|(_, value)| value)
        .collect();
    Spread::of(&values)
}

pub fn markdown(report: &EstablishedReport) -> String {
    let rounds = report
        .runs
        .iter()
        .map(|run| run.planned.round)
        .max()
        .unwrap_or(0);
    let mut text = format!("## fwlog bench: established traffic, {}\n\n", report.date);
    let _ = writeln!(
        text,
        "{}, at end {}  ",
        report.machine.summary(),
        report.load_average_end
    );
    let _ = writeln!(
        text,
        "{rounds} rounds of {} s per run, setups alternating none → chains → fwlog in each \
         round; median (min–max) over the rounds, each ratio taken within a round; whole bench \
         {} s.\n",
        report.secs_per_run,
        report.elapsed.as_secs()
    );
    text.push_str(
        "| workload | unit | none | chains | fwlog | chains / none | fwlog / chains | fwlog / none |\n\
         |---|---|---:|---:|---:|---:|---:|---:|\n",
    );
    let dash = || "—".to_owned();
    for metric in [Metric::Rate, Metric::PerCpuSecond] {
        for workload in workloads(report) {
            let digits = if workload == Workload::TcpBulk { 2 } else { 1 };
            let value = |setup| {
                spread(report, metric, workload, setup)
                    .map_or_else(dash, |spread| spread.value_text(digits))
            };
            let ratio_text = |numerator, denominator| {
                ratio(report, metric, workload, numerator, denominator)
                    .map_or_else(dash, |spread| spread.ratio_text())
            };
            let _ = writeln!(
                text,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                workload.as_str(),
                metric.unit(workload),
                value(Setup::None),
                value(Setup::Chains),
                value(Setup::Fwlog),
                ratio_text(Setup::Chains, Setup::None),
                ratio_text(Setup::Fwlog, Setup::Chains),
                ratio_text(Setup::Fwlog, Setup::None),
            );
        }
    }
    text.push_str(&programs_table(report));
    text.push_str(&runs_table(report));
    text
}

/// fwlog's programs in the accounting runs.
fn programs_table(report: &EstablishedReport) -> String {
    let mut rows = String::new();
    for run in report.runs.iter().filter(|run| run.planned.round == 0) {
        let Ok(figures) = &run.outcome else { continue };
        let workload = run.planned.workload;
        let (units, unit_name) = per_unit(workload, figures);
        for program in &figures.programs {
            let (runs_per, ns_per) = if units > 0.0 {
                (
                    program.runs as f64 / units,
                    program.run_time_ns as f64 / units,
                )
            } else {
                (0.0, 0.0)
            };
            let _ = writeln!(
                rows,
                "| {} | {} | {} | {:.0} | {runs_per:.2} per {unit_name} | {ns_per:.1} per {unit_name} | {:.2} {} |",
                workload.as_str(),
                program.name,
                thousands(program.runs),
                program.ns_per_run(),
                figures.rate,
                unit(workload),
            );
        }
    }
    if rows.is_empty() {
        return String::new();
    }
    format!(
        "\nfwlog's programs in one more fwlog run per workload with the kernel's eBPF \
         accounting on (BPF_ENABLE_STATS; it adds two clock reads per program run, so that run \
         is left out of the figures above):\n\n\
         | workload | program | runs | ns per run | runs | ns | that run's rate |\n\
         |---|---|---:|---:|---:|---:|---:|\n{rows}"
    )
}

/// Every run, for the record.
fn runs_table(report: &EstablishedReport) -> String {
    let mut text = String::from(
        "\n| round | workload | setup | rate | per CPU-s | sent | reached socket | seen as new | verdicts | notes |\n\
         |---|---|---|---:|---:|---:|---:|---:|---:|---|\n",
    );
    let dash = || "—".to_owned();
    for run in &report.runs {
        let planned = run.planned;
        let round = if planned.round == 0 {
            "bpf_stats".to_owned()
        } else {
            planned.round.to_string()
        };
        let head = format!(
            "| {round} | {} | {} ",
            planned.workload.as_str(),
            planned.setup.as_str()
        );
        match &run.outcome {
            Err(reason) => {
                let _ = writeln!(
                    text,
                    "{head}| | | | | | | failed: {} |",
                    reason.replace('|', "/").replace('\n', " ")
                );
            }
            Ok(figures) => {
                let mut notes = figures.notes.clone();
                if figures.refused > 0 {
                    notes.push(format!("{} frames refused", thousands(figures.refused)));
                }
                if let Some(retransmits) = figures.retransmits {
                    notes.push(format!("{retransmits} retransmits"));
                }
                let _ = writeln!(
                    text,
                    "{head}| {:.2} {} | {} | {} | {} | {} | {} | {} |",
                    figures.rate,
                    unit(planned.workload),
                    figures
                        .per_cpu_second
                        .map_or_else(dash, |value| format!("{value:.2}")),
                    thousands(figures.sent),
                    figures.reached.map_or_else(dash, thousands),
                    figures.seen_as_new.map_or_else(dash, thousands),
                    figures.verdicts.map_or_else(dash, thousands),
                    notes.join("; ").replace('|', "/"),
                );
            }
        }
    }
    text
}

pub fn to_json(report: &EstablishedReport) -> Value {
    let runs: Vec<Value> = report.runs.iter().map(run_json).collect();
    let summary: Vec<Value> = workloads(report)
        .into_iter()
        .flat_map(|workload| [Metric::Rate, Metric::PerCpuSecond].map(|metric| (workload, metric)))
        .map(|(workload, metric)| {
            let ratio_json = |numerator, denominator| {
                ratio(report, metric, workload, numerator, denominator).map(Spread::to_json)
            };
            let setups: serde_json::Map<String, Value> = SETUPS
                .iter()
                .map(|&setup| {
                    let figure = spread(report, metric, workload, setup).map(Spread::to_json);
                    (setup.as_str().to_owned(), json!(figure))
                })
                .collect();
            json!({
                "workload": workload.as_str(),
                "metric": metric.key(),
                "unit": metric.unit(workload),
                "setups": setups,
                "chains_per_none": ratio_json(Setup::Chains, Setup::None),
                "fwlog_per_chains": ratio_json(Setup::Fwlog, Setup::Chains),
                "fwlog_per_none": ratio_json(Setup::Fwlog, Setup::None),
            })
        })
        .collect();
    json!({
        "date": report.date,
        "elapsed_secs": report.elapsed.as_secs_f64(),
        "machine": report.machine.to_json(),
        "load_average_end": report.load_average_end,
        "settings": report.settings,
        "summary": summary,
        "runs": runs,
    })
}

fn run_json(run: &RunRecord) -> Value {
    let head = json!({
        "round": run.planned.round,
        "bpf_stats": run.planned.round == 0,
        "workload": run.planned.workload.as_str(),
        "setup": run.planned.setup.as_str(),
    });
    let fields = match &run.outcome {
        Err(reason) => json!({ "error": reason }),
        Ok(f) => json!({
            "rate": f.rate,
            "unit": unit(run.planned.workload),
            "secs": f.secs,
            "sent": f.sent,
            "reached_socket": f.reached,
            "refused": f.refused,
            "sender_cpu_secs": f.sender_cpu_secs,
            "per_cpu_second": f.per_cpu_second,
            "retransmits": f.retransmits,
            "iperf3_host_cpu_percent": f.host_cpu_percent,
            "iperf3_remote_cpu_percent": f.remote_cpu_percent,
            "seen_as_new": f.seen_as_new,
            "verdicts": f.verdicts,
            "programs": f.programs.iter().map(ProgramRuns::to_json).collect::<Vec<_>>(),
            "notes": f.notes,
        }),
    };
    let mut value = head;
    if let (Some(value), Value::Object(fields)) = (value.as_object_mut(), fields) {
        value.extend(fields);
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(rate: f64) -> Figures {
        Figures {
            rate,
            per_cpu_second: Some(rate * 2.0),
            secs: 5.0,
            sent: 1_000_000,
            reached: Some(1_000_000),
            seen_as_new: Some(0),
            ..Figures::default()
        }
    }

    fn record(round: u32, setup: Setup, rate: f64) -> RunRecord {
        RunRecord {
            planned: Planned {
                round,
                workload: Workload::UdpStream,
                setup,
            },
            outcome: Ok(figures(rate)),
        }
    }

    fn report() -> EstablishedReport {
        let mut accounting = record(0, Setup::Fwlog, 100.0);
        if let Ok(figures) = &mut accounting.outcome {
            figures.programs = vec![ProgramRuns {
                name: "flow_ingress".into(),
                runs: 1_000_000,
                run_time_ns: 60_000_000,
            }];
        }
        EstablishedReport {
            date: "2026-01-02T03:04:05Z".into(),
            elapsed: Duration::from_secs(99),
            machine: Machine::example(),
            load_average_end: "1.00 2.00 3.00".into(),
            secs_per_run: 5,
            settings: json!({}),
            runs: vec![
                record(1, Setup::None, 200.0),
                record(1, Setup::Chains, 150.0),
                record(1, Setup::Fwlog, 150.0),
                record(2, Setup::None, 100.0),
                record(2, Setup::Chains, 100.0),
                RunRecord {
                    planned: Planned {
                        round: 2,
                        workload: Workload::UdpStream,
                        setup: Setup::Fwlog,
                    },
                    outcome: Err("fwlog | died".into()),
                },
                record(3, Setup::None, 160.0),
                record(3, Setup::Chains, 80.0),
                record(3, Setup::Fwlog, 40.0),
                accounting,
            ],
        }
    }

    #[test]
    fn ratios_are_taken_within_rounds() {
        let text = markdown(&report());
        assert!(text.contains("load average at start 0.10 0.20 0.30, at end 1.00 2.00 3.00"));
        assert!(text.contains("3 rounds of 5 s per run"));
        // chains/none: 0.75, 1.0, 0.5; fwlog/chains: 1.0, 0.5 (round 2's fwlog failed);
        // fwlog/none: 0.75, 0.25. The accounting run's 100 is in no figure.
        assert!(
            text.contains(
                "| udp-stream | k datagrams/s | 160.0 (100.0–200.0) | 100.0 (80.0–150.0) | \
                 95.0 (40.0–150.0) | 0.750× (0.500–1.000) | 0.750× (0.500–1.000) | \
                 0.500× (0.250–0.750) |\n"
            ),
            "{text}"
        );
        assert!(text.contains(
            "| udp-stream | flow_ingress | 1,000,000 | 60 | 1.00 per datagram | 60.0 per datagram | 100.00 k datagrams/s |\n"
        ));
        // The same ratios of the work per CPU-second, which here is twice the rate.
        assert!(
            text.contains(
                "| udp-stream | k datagrams per CPU-s | 320.0 (200.0–400.0) | 200.0 (160.0–300.0) | \
                 190.0 (80.0–300.0) | 0.750× (0.500–1.000) | 0.750× (0.500–1.000) | \
                 0.500× (0.250–0.750) |\n"
            ),
            "{text}"
        );
        assert!(text.contains("| 2 | udp-stream | fwlog | | | | | | | failed: fwlog / died |\n"));
        assert!(text.contains(
            "| bpf_stats | udp-stream | fwlog | 100.00 k datagrams/s | 200.00 | 1,000,000 | 1,000,000 | 0 | — |  |\n"
        ));
    }

    #[test]
    fn json_summary() {
        let value = to_json(&report());
        let summary = &value["summary"][0];
        assert_eq!(summary["workload"], "udp-stream");
        assert_eq!(summary["metric"], "rate");
        assert_eq!(value["summary"][1]["metric"], "per_cpu_second");
        assert_eq!(value["summary"][1]["setups"]["none"]["median"], 320.0);
        assert_eq!(summary["fwlog_per_chains"]["rounds"], 2);
        assert_eq!(summary["setups"]["none"]["median"], 160.0);
        assert_eq!(value["runs"][5]["error"], "fwlog | died");
        assert_eq!(value["runs"][9]["programs"][0]["ns_per_run"], 60.0);
    }

    #[test]
    fn a_stream_that_did_not_reach_the_sockets_says_so() {
        let sent = StreamReport {
            sent: 1000,
            refused: 2,
            elapsed: Duration::from_secs(2),
            cpu_ticks: 150,
        };
        let figures = Figures::of_stream(&sent, 500, 100.0, Vec::new());
        assert_eq!(figures.rate, 0.5);
        assert_eq!(figures.sender_cpu_secs, Some(1.5));
        // 1000 datagrams in 1.5 CPU-seconds.
        assert!(figures
            .per_cpu_second
            .is_some_and(|value| (value - 0.6667).abs() < 0.001));
        assert_eq!(
            figures.notes,
            ["only 500 of 1,000 datagrams reached the host's sockets"]
        );
        assert!(Figures::of_stream(&sent, 995, 100.0, Vec::new())
            .notes
            .is_empty());
    }
}
