//! The tables over several runs: each case's median and range over the rounds with its ratio
//! to `none`, and fwlog's program run times from the runs with the kernel's accounting on.

use std::fmt::Write as _;

use super::{thousands, Measurement, Report, RunResult};
use crate::bench::{
    generator::{Proto, Rate},
    modes::Mode,
    rounds::{paired_ratios, Spread},
};

/// Each protocol × rate × mode over the rounds: flows/s and the per-round ratio to `none`.
pub fn ratio_table(report: &Report) -> String {
    let measured = |run: &&RunResult| run.round > 0 && run.outcome.is_ok();
    let rounds = report.runs.iter().map(|run| run.round).max().unwrap_or(0);
    if rounds == 0 {
        return String::new();
    }
    let mut cases: Vec<(Proto, Rate, Mode)> = Vec::new();
    for run in report.runs.iter().filter(measured) {
        if !cases.contains(&(run.proto, run.rate, run.mode)) {
            cases.push((run.proto, run.rate, run.mode));
        }
    }
    // (round, figure) of each measured run of one case.
    let figures_of =
        |proto: Proto, rate: Rate, mode: Mode, figure: fn(&Measurement) -> Option<f64>| {
            report
                .runs
                .iter()
                .filter(measured)
                .filter(|run| (run.proto, run.rate, run.mode) == (proto, rate, mode))
                .filter_map(|run| Some((run.round, figure(run.outcome.as_ref().ok()?)?)))
                .collect::<Vec<(u32, f64)>>()
        };
    let flows_per_sec: fn(&Measurement) -> Option<f64> = |m| Some(m.achieved_rate());
    let per_cpu_second: fn(&Measurement) -> Option<f64> = |m| {
        let cpu = m.sender_cpu_per_million_flows()?;
        (cpu > 0.0).then(|| 1e6 / cpu)
    };
    let mut text = format!(
        "\nOver {rounds} round(s), modes alternating: median (min–max); a ratio compares each \
         round with that round's `none` run. Per sender CPU-second: flows through the chain per \
         second of the flood threads' CPU, which runs the host's receive path; it moves less \
         with the host's load than the rate.\n\n\
         | proto | rate | mode | flows/s | of `none` | flows per sender CPU-s | of `none` | most lost |\n\
         |---|---|---|---:|---:|---:|---:|---:|\n"
    );
    for (proto, rate, mode) in cases {
        let cells = |figure: fn(&Measurement) -> Option<f64>| {
            let figures = figures_of(proto, rate, mode, figure);
            let values: Vec<f64> = figures.iter().map(|&(_, value)| value).collect();
            let base = figures_of(proto, rate, Mode::None, figure);
            (
                Spread::of(&values).map_or_else(String::new, |spread| spread.value_text(0)),
                Spread::of(&paired_ratios(&figures, &base))
                    .map_or_else(|| "—".to_owned(), |ratio| ratio.ratio_text()),
            )
        };
        let (rate_text, rate_ratio) = cells(flows_per_sec);
        let (cpu_text, cpu_ratio) = cells(per_cpu_second);
        let lost = report
            .runs
            .iter()
            .filter(measured)
            .filter(|run| (run.proto, run.rate, run.mode) == (proto, rate, mode))
            .filter_map(|run| run.outcome.as_ref().ok()?.loss_percent())
            .reduce(f64::max);
        let _ = writeln!(
            text,
            "| {} | {rate} | {} | {rate_text} | {rate_ratio} | {cpu_text} | {cpu_ratio} | {} |",
            proto.as_str(),
            mode.as_str(),
            lost.map_or_else(|| "—".to_owned(), |lost| format!("{lost:.2} %")),
        );
    }
    text
}

/// fwlog's programs in the runs with accounting on: runs per flow and time per run.
pub fn programs_table(report: &Report) -> String {
    let mut rows = String::new();
    for run in report.runs.iter().filter(|run| run.round == 0) {
        let Ok(measurement) = &run.outcome else {
            continue;
        };
        for program in &measurement.programs {
            let per_flow = if measurement.reached > 0 {
                program.runs as f64 / measurement.reached as f64
            } else {
                0.0
            };
            let _ = writeln!(
                rows,
                "| {} | {} | {} | {} | {per_flow:.2} | {:.0} |",
                run.proto.as_str(),
                run.rate,
                program.name,
                thousands(program.runs),
                program.ns_per_run()
            );
        }
    }
    if rows.is_empty() {
        return String::new();
    }
    format!(
        "\nfwlog's programs in the runs with the kernel's eBPF accounting on (BPF_ENABLE_STATS; \
         it adds two clock reads per run, so those runs are left out of the ratios):\n\n\
         | proto | rate | program | runs | runs per flow | ns per run |\n|---|---|---|---:|---:|---:|\n{rows}"
    )
}
