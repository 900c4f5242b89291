//! The bench's results: one row per mode × protocol × rate, as a markdown table for people and
//! a JSON document (target/bench/bench-<timestamp>.json) for tools.

mod summary;

use std::{fmt::Write as _, time::Duration};

use serde_json::{json, Value};

use super::{
    bpf_stats::ProgramRuns,
    generator::{FloodEnd, Proto, Rate},
    measure::Machine,
    modes::Mode,
};

/// How the consumer caught up after the flood stopped.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Drain {
    /// From the end of the flood to the consumer's last new event.
    pub secs: f64,
    /// The consumer reached the flow count (else it stopped growing, or the wait timed out).
    pub caught_up: bool,
    pub timed_out: bool,
}

/// What one run measured.
#[derive(Clone, Debug, PartialEq)]
pub struct Measurement {
    /// Frames the generator's sendmmsg calls accepted.
    pub sent: u64,
    /// Frames the kernel refused to send.
    pub refused: u64,
    pub flood_end: FloodEnd,
    pub send_secs: f64,
    /// Flows dropped by LOG_AND_DROP (its `-j DROP` rules' counters).
    pub reached: u64,
    /// Events the consumer delivered; `None` in the `none` mode.
    pub events: Option<u64>,
    /// Losses the consumer knows of itself (fwlog `lost` lines, overwritten kmsg records).
    pub known_lost: Option<u64>,
    pub consumer_cpu_secs: Option<f64>,
    /// Times the consumer went to sleep for want of input (voluntary context switches): each
    /// one is a wakeup the kernel paid for.
    pub consumer_sleeps: Option<u64>,
    /// CPU of the sending thread, softirq work done in its context included.
    pub sender_cpu_secs: f64,
    pub softirq_secs: f64,
    pub system_secs: f64,
    pub user_secs: f64,
    pub drain: Option<Drain>,
    /// Starting the consumer and installing the rules (fwlog: loading and verifying its programs).
    pub setup_secs: f64,
    /// nf_conntrack_count in the host namespace after the run.
    pub conntrack_after: u64,
    pub notes: Vec<String>,
    pub detail: Value,
    /// fwlog's programs while the flood ran, from the kernel's accounting (runs with it on).
    pub programs: Vec<ProgramRuns>,
}

impl Measurement {
    /// Flows that reached the chain but never came out of the consumer, in percent.
    pub fn loss_percent(&self) -> Option<f64> {
        let events = self.events?;
        (self.reached > 0)
            .then(|| 100.0 * self.reached.saturating_sub(events) as f64 / self.reached as f64)
    }

    /// Flows through the chain per second of flood.
    pub fn achieved_rate(&self) -> f64 {
        if self.send_secs > 0.0 {
            self.reached as f64 / self.send_secs
        } else {
            0.0
        }
    }

    pub fn consumer_cpu_per_million_events(&self) -> Option<f64> {
        let events = self.events.filter(|&events| events > 0)?;
        Some(self.consumer_cpu_secs? * 1e6 / events as f64)
    }

    /// Events the consumer handled per wakeup: how well its reads are batched.
    pub fn events_per_sleep(&self) -> Option<f64> {
        let sleeps = self.consumer_sleeps.filter(|&sleeps| sleeps > 0)?;
        Some(self.events? as f64 / sleeps as f64)
    }

    pub fn sender_cpu_per_million_flows(&self) -> Option<f64> {
        (self.reached > 0).then(|| self.sender_cpu_secs * 1e6 / self.reached as f64)
    }

    pub fn softirq_per_million_flows(&self) -> Option<f64> {
        (self.reached > 0).then(|| self.softirq_secs * 1e6 / self.reached as f64)
    }
}

/// One mode × protocol × rate.
#[derive(Clone, Debug, PartialEq)]
pub struct RunResult {
    pub mode: Mode,
    pub proto: Proto,
    pub rate: Rate,
    /// 1-based; 0 for a run with the kernel's eBPF accounting on (after the rounds).
    pub round: u32,
    /// The measurement, or why there is none.
    pub outcome: Result<Measurement, String>,
}

/// Everything the bench reports.
#[derive(Clone, Debug)]
pub struct Report {
    /// RFC 3339, UTC.
    pub date: String,
    pub elapsed: Duration,
    pub machine: Machine,
    /// /proc/loadavg when the bench ended.
    pub load_average_end: String,
    pub flows_per_run: u64,
    pub settings: Value,
    pub runs: Vec<RunResult>,
    /// Modes that could not run here, and why.
    pub skipped: Vec<(Mode, String)>,
}

pub fn markdown(report: &Report) -> String {
    let mut text = String::new();
    let _ = writeln!(text, "## fwlog bench, {}\n", report.date);
    let _ = writeln!(
        text,
        "{}, at end {}  ",
        report.machine.summary(),
        report.load_average_end
    );
    let _ = writeln!(
        text,
        "{} flows per run (each a new flow: own source address and port), IPv4, veth between two \
         namespaces; whole bench {} s.\n",
        thousands(report.flows_per_run),
        report.elapsed.as_secs()
    );
    text.push_str(
        "| proto | rate | mode | sent | reached chain | events | loss | flows/s | sender CPU s/M flows | softirq s/M flows | consumer CPU s/M events | drain s | notes |\n",
    );
    text.push_str("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n");
    let rounds = report.runs.iter().map(|run| run.round).max().unwrap_or(0);
    for run in &report.runs {
        text.push_str(&row(run, rounds));
        text.push('\n');
    }
    for (mode, reason) in &report.skipped {
        let _ = writeln!(text, "\n- `{}` skipped: {reason}", mode.as_str());
    }
    text.push_str(&summary::ratio_table(report));
    text.push_str(&summary::programs_table(report));
    text.push_str(
        "\nloss: flows dropped by LOG_AND_DROP (its DROP rules' counters) that the consumer did not \
         deliver. CPU from tick-based /proc accounting: sender = the flood thread, whose \
         syscalls run the host's receive path (netfilter and the logging rule) in softirq; \
         softirq = all CPUs (/proc/stat); consumer = fwlog, ulogd or the bench's /dev/kmsg \
         reader thread. drain: end of flood to the consumer's last event.\n",
    );
    text
}

/// The mode column: the mode, its round when there are several, or that accounting was on.
fn mode_cell(run: &RunResult, rounds: u32) -> String {
    match run.round {
        0 => format!("{} (bpf_stats)", run.mode.as_str()),
        round if rounds > 1 => format!("{} r{round}", run.mode.as_str()),
        _ => run.mode.as_str().to_owned(),
    }
}

fn row(run: &RunResult, rounds: u32) -> String {
    let head = format!(
        "| {} | {} | {} ",
        run.proto.as_str(),
        run.rate,
        mode_cell(run, rounds)
    );
    let measurement = match &run.outcome {
        Ok(measurement) => measurement,
        Err(reason) => {
            return format!(
                "{head}| | | | | | | | | | failed: {} |",
                reason.replace('|', "/").replace('\n', " ")
            )
        }
    };
    let dash = || "—".to_owned();
    let mut notes = measurement.notes.clone();
    match measurement.flood_end {
        FloodEnd::Done => {}
        FloodEnd::TimeLimit => notes.push("flood hit its time limit".into()),
        FloodEnd::Interrupted => notes.push("interrupted".into()),
    }
    if measurement.refused > 0 {
        notes.push(format!("{} frames refused", thousands(measurement.refused)));
    }
    if let Some(lost) = measurement.known_lost.filter(|&lost| lost > 0) {
        let what = if run.mode == Mode::Log {
            "kmsg records overwritten"
        } else {
            "reported lost"
        };
        notes.push(format!("{} {what}", thousands(lost)));
    }
    if measurement.conntrack_after > 0 {
        notes.push(format!(
            "{} conntrack entries left",
            measurement.conntrack_after
        ));
    }
    let drain = match measurement.drain {
        None => dash(),
        Some(drain) if drain.timed_out => format!("≥{:.1}", drain.secs),
        Some(drain) => format!("{:.2}", drain.secs),
    };
    format!(
        "{head}| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
        thousands(measurement.sent),
        thousands(measurement.reached),
        measurement.events.map_or_else(dash, thousands),
        measurement
            .loss_percent()
            .map_or_else(dash, |loss| format!("{loss:.2} %")),
        thousands(measurement.achieved_rate().round() as u64),
        measurement
            .sender_cpu_per_million_flows()
            .map_or_else(dash, |cpu| format!("{cpu:.2}")),
        measurement
            .softirq_per_million_flows()
            .map_or_else(dash, |cpu| format!("{cpu:.2}")),
        measurement
            .consumer_cpu_per_million_events()
            .map_or_else(dash, |cpu| format!("{cpu:.2}")),
        drain,
        notes.join("; ").replace('|', "/"),
    )
}

/// 1234567 → "1,234,567".
pub fn thousands(value: u64) -> String {
    let digits = value.to_string();
    let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    grouped
}

pub fn to_json(report: &Report) -> Value {
    let runs: Vec<Value> = report.runs.iter().map(run_json).collect();
    let skipped: Vec<Value> = report
        .skipped
        .iter()
        .map(|(mode, reason)| json!({ "mode": mode.as_str(), "reason": reason }))
        .collect();
    json!({
        "date": report.date,
        "elapsed_secs": report.elapsed.as_secs_f64(),
        "machine": report.machine.to_json(),
        "load_average_end": report.load_average_end,
        "settings": report.settings,
        "runs": runs,
        "skipped": skipped,
    })
}

fn run_json(run: &RunResult) -> Value {
    let mut value = json!({
        "mode": run.mode.as_str(),
        "proto": run.proto.as_str(),
        "rate": run.rate.to_string(),
        "round": run.round,
        "bpf_stats": run.round == 0,
        "target_flows_per_sec": match run.rate {
            Rate::Max => Value::Null,
            Rate::PerSecond(rate) => rate.get().into(),
        },
    });
    let fields = match &run.outcome {
        Err(reason) => json!({ "error": reason }),
        Ok(m) => json!({
            "sent": m.sent,
            "refused": m.refused,
            "flood_end": format!("{:?}", m.flood_end),
            "send_secs": m.send_secs,
            "reached_chain": m.reached,
            "events": m.events,
            "known_lost": m.known_lost,
            "loss_percent": m.loss_percent(),
            "achieved_flows_per_sec": m.achieved_rate(),
            "consumer_cpu_secs": m.consumer_cpu_secs,
            "consumer_cpu_secs_per_million_events": m.consumer_cpu_per_million_events(),
            "consumer_sleeps": m.consumer_sleeps,
            "consumer_events_per_sleep": m.events_per_sleep(),
            "sender_cpu_secs": m.sender_cpu_secs,
            "sender_cpu_secs_per_million_flows": m.sender_cpu_per_million_flows(),
            "softirq_secs": m.softirq_secs,
            "softirq_secs_per_million_flows": m.softirq_per_million_flows(),
            "system_secs": m.system_secs,
            "user_secs": m.user_secs,
            "drain": m.drain.map(|drain| json!({
                "secs": drain.secs,
                "caught_up": drain.caught_up,
                "timed_out": drain.timed_out,
            })),
            "setup_secs": m.setup_secs,
            "conntrack_entries_after": m.conntrack_after,
            "notes": m.notes,
            "detail": m.detail,
            "programs": m.programs.iter().map(ProgramRuns::to_json).collect::<Vec<_>>(),
        }),
    };
    if let (Some(value), Value::Object(fields)) = (value.as_object_mut(), fields) {
        value.extend(fields);
    }
    value
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU64;

    use super::*;

    fn measurement() -> Measurement {
        Measurement {
            sent: 200_000,
            refused: 0,
            flood_end: FloodEnd::Done,
            send_secs: 4.0,
            reached: 200_000,
            events: Some(150_000),
            known_lost: Some(50_000),
            consumer_cpu_secs: Some(0.3),
            consumer_sleeps: Some(1_500),
            sender_cpu_secs: 0.8,
            softirq_secs: 0.5,
            system_secs: 1.0,
            user_secs: 0.2,
            drain: Some(Drain {
                secs: 0.25,
                caught_up: false,
                timed_out: false,
            }),
            setup_secs: 0.1,
            conntrack_after: 0,
            notes: Vec::new(),
            detail: Value::Null,
            programs: Vec::new(),
        }
    }

    fn report() -> Report {
        let rate = Rate::PerSecond(NonZeroU64::MIN.saturating_add(49_999));
        Report {
            date: "2026-01-02T03:04:05Z".into(),
            elapsed: Duration::from_secs(61),
            machine: Machine::example(),
            load_average_end: "1.00 2.00 3.00".into(),
            flows_per_run: 200_000,
            settings: json!({}),
            runs: vec![
                RunResult {
                    mode: Mode::Fwlog,
                    proto: Proto::Udp,
                    rate,
                    round: 1,
                    outcome: Ok(measurement()),
                },
                RunResult {
                    mode: Mode::Nflog,
                    proto: Proto::Tcp,
                    rate: Rate::Max,
                    round: 1,
                    outcome: Err("ulogd exited | badly".into()),
                },
            ],
            skipped: vec![(Mode::Log, "no /dev/kmsg".into())],
        }
    }

    #[test]
    fn derived_numbers() {
        let m = measurement();
        assert_eq!(m.loss_percent(), Some(25.0));
        assert_eq!(m.achieved_rate(), 50_000.0);
        assert_eq!(m.consumer_cpu_per_million_events(), Some(2.0));
        assert_eq!(m.events_per_sleep(), Some(100.0));
        assert_eq!(m.sender_cpu_per_million_flows(), Some(4.0));
        assert_eq!(m.softirq_per_million_flows(), Some(2.5));
        let none = Measurement {
            events: None,
            consumer_cpu_secs: None,
            ..measurement()
        };
        assert_eq!(none.loss_percent(), None);
        assert_eq!(none.consumer_cpu_per_million_events(), None);
    }

    #[test]
    fn markdown_rows() {
        let text = markdown(&report());
        assert!(text.starts_with("## fwlog bench, 2026-01-02T03:04:05Z\n"));
        assert!(text.contains("Linux 6.18.44, 2 CPUs (Test CPU), 24.0 GiB RAM"));
        assert!(text.contains("load average at start 0.10 0.20 0.30, at end 1.00 2.00 3.00"));
        assert!(text.contains(
            "| udp | 50k/s | fwlog | 200,000 | 200,000 | 150,000 | 25.00 % | 50,000 | 4.00 | 2.50 | 2.00 | 0.25 | 50,000 reported lost |\n"
        ));
        assert!(text
            .contains("| tcp | max | nflog | | | | | | | | | | failed: ulogd exited / badly |\n"));
        assert!(text.contains("\n- `log` skipped: no /dev/kmsg\n"));
    }

    /// Two rounds of none and fwlog at max, and an accounting run.
    fn rounds_report() -> Report {
        let run = |mode, round, flows_per_sec: f64, programs: Vec<ProgramRuns>| RunResult {
            mode,
            proto: Proto::Udp,
            rate: Rate::Max,
            round,
            outcome: Ok(Measurement {
                send_secs: 200_000.0 / flows_per_sec,
                events: (mode == Mode::Fwlog).then_some(200_000),
                known_lost: None,
                programs,
                ..measurement()
            }),
        };
        let programs = vec![ProgramRuns {
            name: "verdict_drop_new".into(),
            runs: 200_000,
            run_time_ns: 24_000_000,
        }];
        Report {
            runs: vec![
                run(Mode::None, 1, 100_000.0, Vec::new()),
                run(Mode::Fwlog, 1, 90_000.0, Vec::new()),
                run(Mode::None, 2, 80_000.0, Vec::new()),
                run(Mode::Fwlog, 2, 76_000.0, Vec::new()),
                run(Mode::Fwlog, 0, 50_000.0, programs),
            ],
            skipped: Vec::new(),
            ..report()
        }
    }

    #[test]
    fn rounds_give_medians_and_ratios_per_round() {
        let text = markdown(&rounds_report());
        assert!(
            text.contains("| udp | max | fwlog r2 | 200,000 |"),
            "{text}"
        );
        assert!(text.contains("| udp | max | fwlog (bpf_stats) | 200,000 |"));
        assert!(text.contains("Over 2 round(s)"));
        // Rounds' ratios 0.90 and 0.95: the accounting run is not among them. The sender's
        // CPU is the same in every run (4 s per million flows): 250 000 flows per CPU-second.
        assert!(
            text.contains(
                "| udp | max | fwlog | 83000 (76000–90000) | 0.925× (0.900–0.950) | \
                 250000 (250000–250000) | 1.000× (1.000–1.000) | 0.00 % |\n"
            ),
            "{text}"
        );
        assert!(text.contains(
            "| udp | max | none | 90000 (80000–100000) | 1.000× (1.000–1.000) | \
             250000 (250000–250000) | 1.000× (1.000–1.000) | — |\n"
        ));
        assert!(text.contains("| udp | max | verdict_drop_new | 200,000 | 1.00 | 120 |\n"));
        let value = to_json(&rounds_report());
        assert_eq!(value["runs"][4]["bpf_stats"], true);
        assert_eq!(value["runs"][4]["programs"][0]["ns_per_run"], 120.0);
        assert_eq!(value["runs"][3]["round"], 2);
    }

    #[test]
    fn json_document() {
        let value = to_json(&report());
        assert_eq!(value["machine"]["cpus"], 2);
        assert_eq!(value["runs"][0]["mode"], "fwlog");
        assert_eq!(value["runs"][0]["target_flows_per_sec"], 50_000);
        assert_eq!(value["runs"][0]["loss_percent"], 25.0);
        assert_eq!(value["runs"][1]["error"], "ulogd exited | badly");
        assert_eq!(value["skipped"][0]["mode"], "log");
    }

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
