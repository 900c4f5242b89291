//! The matrix's results: one row per kernel × backend (tests, passed, failed, not run, time),
//! why tests failed, and each program's verified instruction count per kernel.

use std::{fmt::Write as _, fs, path::PathBuf};

use super::{
    backend::Backend,
    plan::{BackendPlan, GuestReport, Selected},
    results::{self, LogOutcome},
};

/// Lines of a failed test's output shown in the summary (the log has all of it).
const EXCERPT_LINES: usize = 12;

/// One guest's boot and what it left in its shared directory.
pub struct GuestRun {
    /// `6.1.0-57-amd64`.
    pub release: String,
    /// The shared directory: plan, report, logs, console.
    pub dir: PathBuf,
    /// Host wall-clock seconds from starting vng to its end.
    pub wall_secs: f64,
    /// CPU seconds qemu (and vng) used on the host.
    pub cpu_secs: f64,
    /// How vng ended, when not with status 0: `exit 1`, `killed after 60 min`, ….
    pub ending: Option<String>,
    /// The guest's report; `None` when the guest never wrote one (it did not boot, or crashed first).
    pub report: Option<GuestReport>,
}

/// One kernel × backend.
#[derive(Debug, PartialEq)]
pub struct Row {
    pub kernel: String,
    pub backend: Backend,
    /// Tests the binaries list (after the filter).
    pub tests: usize,
    pub passed: usize,
    pub failed: usize,
    pub ignored: usize,
    /// Tests that never reported a result: their binary was killed, crashed, or never started.
    pub not_run: usize,
    /// Wall-clock seconds of this backend's runs in the guest.
    pub secs: f64,
    /// `(binary, test, excerpt)` for each failed test.
    pub failures: Vec<(String, String, Vec<String>)>,
    /// Binaries that ended badly without a failed test to show for it, and guest-level trouble.
    pub problems: Vec<String>,
    /// `(program, instructions)` from the verifier budget test.
    pub verified: Vec<(String, u64)>,
}

impl Row {
    pub fn ok(&self) -> bool {
        self.failed == 0 && self.not_run == 0 && self.problems.is_empty()
    }
}

/// The rows of one guest run, one per backend it was asked to run, with what each was to run.
pub fn rows(run: &GuestRun, plans: &[BackendPlan]) -> Vec<Row> {
    plans
        .iter()
        .map(|plan| {
            let tests = plan.test_count();
            let mut row = Row {
                kernel: run.release.clone(),
                backend: plan.backend,
                tests,
                passed: 0,
                failed: 0,
                ignored: 0,
                not_run: 0,
                secs: 0.0,
                failures: Vec::new(),
                problems: Vec::new(),
                verified: Vec::new(),
            };
            match &run.report {
                None => row.problems.push(format!(
                    "the guest wrote no report ({}): see {}",
                    run.ending.as_deref().unwrap_or("it exited 0"),
                    run.dir.join("console.log").display()
                )),
                Some(report) => fill(&mut row, run, report, &plan.binaries),
            }
            let reported = row.passed + row.failed + row.ignored;
            row.not_run = tests.saturating_sub(reported);
            row
        })
        .collect()
}

fn fill(row: &mut Row, run: &GuestRun, report: &GuestReport, expected: &[Selected]) {
    // A guest whose tests failed exits 1 after finishing: only one that stopped half-way is a
    // problem of every backend's row.
    if let (Some(ending), false) = (&run.ending, report.finished) {
        row.problems.push(format!(
            "the guest did not finish: {ending}; see {}",
            run.dir.join("console.log").display()
        ));
    }
    if let Some(error) = &report.setup_error {
        row.problems
            .push(format!("the guest could not test: {error}"));
    }
    for warning in report
        .warnings
        .iter()
        .filter(|warning| warning.starts_with(&format!("{}:", row.backend)))
    {
        row.problems.push(warning.clone());
    }
    row.secs = report
        .backend_secs
        .iter()
        .find(|(backend, _)| *backend == row.backend)
        .map_or(0.0, |(_, secs)| *secs);
    for Selected { binary, .. } in expected {
        let Some(binary_run) = report
            .runs
            .iter()
            .find(|one| one.backend == row.backend && one.name == binary.name)
        else {
            continue;
        };
        let log = fs::read_to_string(run.dir.join(&binary_run.log)).unwrap_or_default();
        let outcome: LogOutcome = results::parse_log(&log);
        row.passed += outcome.passed;
        row.failed += outcome.failed;
        row.ignored += outcome.ignored;
        for (program, count) in outcome.verified {
            if !row.verified.iter().any(|(seen, _)| *seen == program) {
                row.verified.push((program, count));
            }
        }
        for name in &outcome.failures {
            let excerpt = results::failure_excerpt(&log, name, EXCERPT_LINES);
            row.failures
                .push((binary.name.clone(), name.clone(), excerpt));
        }
        let log_path = run.dir.join(&binary_run.log);
        if binary_run.timed_out {
            row.problems.push(format!(
                "{} was killed after {:.0} s: see {}",
                binary.name,
                binary_run.secs,
                log_path.display()
            ));
        } else if binary_run.exit_code != Some(0) && outcome.failed == 0 {
            let how = binary_run
                .exit_code
                .map_or_else(|| "was killed".to_owned(), |code| format!("exited {code}"));
            row.problems.push(format!(
                "{} {how} with no failed test: see {}",
                binary.name,
                log_path.display()
            ));
        }
    }
}

/// The table, one line per row, then every failure and problem.
pub fn render(rows: &[Row]) -> String {
    let mut out = String::new();
    let kernel_width = rows
        .iter()
        .map(|row| row.kernel.len())
        .max()
        .unwrap_or(0)
        .max("kernel".len());
    let _ = writeln!(
        out,
        "{:<kernel_width$}  {:<7} {:>5} {:>5} {:>6} {:>6} {:>7} {:>7}  result",
        "kernel", "backend", "tests", "run", "passed", "failed", "not run", "time"
    );
    for row in rows {
        let _ = writeln!(
            out,
            "{:<kernel_width$}  {:<7} {:>5} {:>5} {:>6} {:>6} {:>7} {:>6.0}s  {}",
            row.kernel,
            row.backend.to_string(),
            row.tests,
            row.passed + row.failed,
            row.passed,
            row.failed,
            row.not_run,
            row.secs,
            if row.ok() { "ok" } else { "FAILED" }
        );
    }
    for row in rows {
        for (binary, test, excerpt) in &row.failures {
            let _ = writeln!(
                out,
                "\nFAILED on {} ({}): {binary}::{test}",
                row.kernel, row.backend
            );
            for line in excerpt {
                let _ = writeln!(out, "    {line}");
            }
        }
        for problem in &row.problems {
            let _ = writeln!(
                out,
                "\nproblem on {} ({}): {problem}",
                row.kernel, row.backend
            );
        }
    }
    out
}

/// Verified instructions per program (rows) and kernel × backend (columns; only those where the
/// budget test ran: a guest's second backend leaves it out).
pub fn render_verified(rows: &[Row]) -> String {
    let rows: Vec<&Row> = rows.iter().filter(|row| !row.verified.is_empty()).collect();
    let mut programs: Vec<&str> = Vec::new();
    for row in &rows {
        for (program, _) in &row.verified {
            if !programs.contains(&program.as_str()) {
                programs.push(program);
            }
        }
    }
    let mut out = String::new();
    if programs.is_empty() {
        let _ = writeln!(
            out,
            "verified instructions: none reported (the verifier budget test did not run or failed before loading)"
        );
        return out;
    }
    let columns: Vec<String> = rows
        .iter()
        .map(|row| format!("{} {}", row.kernel, row.backend))
        .collect();
    let name_width = programs
        .iter()
        .map(|program| program.len())
        .max()
        .unwrap_or(0)
        .max("verified insns".len());
    let _ = write!(out, "{:<name_width$}", "verified insns");
    for column in &columns {
        let _ = write!(out, " {column:>width$}", width = column.len().max(8));
    }
    out.push('\n');
    for program in programs {
        let _ = write!(out, "{program:<name_width$}");
        for (row, column) in rows.iter().zip(&columns) {
            let count = row
                .verified
                .iter()
                .find(|(name, _)| name == program)
                .map_or_else(|| "—".to_owned(), |(_, count)| count.to_string());
            let _ = write!(out, " {count:>width$}", width = column.len().max(8));
        }
        out.push('\n');
    }
    out
}

/// The closing line: `matrix: N passed, M failed` (tests that did not run count as failed).
pub fn closing_line(rows: &[Row]) -> String {
    let passed: usize = rows.iter().map(|row| row.passed).sum();
    let failed: usize = rows.iter().map(|row| row.failed + row.not_run).sum();
    format!("matrix: {passed} passed, {failed} failed")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel_matrix::plan::TestBinary;

    fn row(kernel: &str, backend: Backend, verified: &[(&str, u64)]) -> Row {
        Row {
            kernel: kernel.into(),
            backend,
            tests: 3,
            passed: 2,
            failed: 1,
            ignored: 0,
            not_run: 0,
            secs: 61.4,
            failures: vec![(
                "flows".into(),
                "ipv6_flow".into(),
                vec!["no flow within 5 s".into()],
            )],
            problems: Vec::new(),
            verified: verified
                .iter()
                .map(|(name, count)| (name.to_string(), *count))
                .collect(),
        }
    }

    #[test]
    fn a_guest_without_a_report_counts_every_test_as_not_run() {
        let run = GuestRun {
            release: "6.1.0-57-amd64".into(),
            dir: PathBuf::from("/nonexistent/6.1"),
            wall_secs: 12.0,
            cpu_secs: 3.0,
            ending: Some("exit 255".into()),
            report: None,
        };
        let selected = Selected {
            binary: TestBinary {
                name: "watch".into(),
                path: "/w/watch-1".into(),
            },
            args: Vec::new(),
            tests: vec!["a".into(), "b".into()],
        };
        let plans = [Backend::Nft, Backend::Legacy].map(|backend| BackendPlan {
            backend,
            binaries: vec![selected.clone()],
        });
        let rows = rows(&run, &plans);
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].tests, rows[0].not_run, rows[0].passed), (2, 2, 0));
        assert!(!rows[1].ok());
        assert!(
            rows[0].problems[0].contains("exit 255"),
            "{:?}",
            rows[0].problems
        );
        assert_eq!(closing_line(&rows), "matrix: 0 passed, 4 failed");
    }

    #[test]
    fn the_table_shows_counts_failures_and_verified_instructions() {
        let rows = [
            row("6.1.0-57-amd64", Backend::Nft, &[("flow_egress", 9000)]),
            row(
                "6.12.117+deb12-amd64",
                Backend::Legacy,
                &[("flow_ingress", 136_012), ("flow_egress", 9100)],
            ),
        ];
        let table = render(&rows);
        assert!(
            table.contains(
                "6.1.0-57-amd64        nft         3     3      2      1       0     61s  FAILED"
            ),
            "{table}"
        );
        assert!(
            table.contains(
                "FAILED on 6.12.117+deb12-amd64 (legacy): flows::ipv6_flow\n    no flow within 5 s"
            ),
            "{table}"
        );
        let verified = render_verified(&rows);
        let lines: Vec<&str> = verified.lines().collect();
        assert_eq!(lines.len(), 3, "{verified}");
        assert!(
            lines[1].starts_with("flow_egress") && lines[1].ends_with("9100"),
            "{verified}"
        );
        assert!(
            lines[2].contains('—') && lines[2].ends_with("136012"),
            "{verified}"
        );
        assert_eq!(closing_line(&rows), "matrix: 4 passed, 2 failed");
    }
}
