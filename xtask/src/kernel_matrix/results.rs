//! Reading what the guest's test binaries printed: libtest's per-test lines and closing
//! `test result:` line, `--list` output, and the verifier budget test's counts.

/// What one test binary's log says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogOutcome {
    pub passed: usize,
    pub failed: usize,
    pub ignored: usize,
    /// Tests that failed, by name, in the order libtest reported them.
    pub failures: Vec<String>,
    /// libtest printed its closing `test result:` line (not when the binary was killed or crashed).
    pub finished: bool,
    /// `(program, instructions)` from the verifier budget test's `verified NAME: N instructions` lines.
    pub verified: Vec<(String, u64)>,
}

/// The prefix of the lines the verifier budget test prints, one per program.
pub const VERIFIED_PREFIX: &str = "verified ";

/// Parses a libtest log. Counts come from the closing line when there is one, else from the
/// per-test lines seen before the binary stopped.
pub fn parse_log(log: &str) -> LogOutcome {
    let mut outcome = LogOutcome::default();
    let mut closing = None;
    for line in log.lines() {
        let line = line.trim_end();
        if let Some(result) = line.strip_prefix("test result: ") {
            closing = Some(closing_counts(result));
        } else if let Some((name, result)) = test_line(line) {
            match result {
                "ok" => outcome.passed += 1,
                "FAILED" => {
                    outcome.failed += 1;
                    outcome.failures.push(name.to_owned());
                }
                _ if result.starts_with("ignored") => outcome.ignored += 1,
                _ => {}
            }
        } else if let Some((name, count)) = verified_line(line) {
            // The kernel keeps 15 bytes of a program's name: verdict_accept_new and
            // verdict_accept_related are both `verdict_accept_`, told apart by their order.
            let seen = outcome
                .verified
                .iter()
                .filter(|(other, _)| other == &name || other.starts_with(&format!("{name} #")))
                .count();
            let name = if seen == 0 {
                name
            } else {
                format!("{name} #{}", seen + 1)
            };
            outcome.verified.push((name, count));
        }
    }
    if let Some((passed, failed, ignored)) = closing {
        outcome.passed = passed;
        outcome.failed = failed;
        outcome.ignored = ignored;
        outcome.finished = true;
    }
    outcome
}

/// `test NAME ... RESULT` → (NAME, RESULT).
fn test_line(line: &str) -> Option<(&str, &str)> {
    let rest = line.strip_prefix("test ")?;
    let (name, result) = rest.split_once(" ... ")?;
    (!name.is_empty() && !name.contains(' ')).then_some((name, result.trim()))
}

/// `ok. 3 passed; 1 failed; 0 ignored; 0 measured; 5 filtered out; finished in 1.2s`.
fn closing_counts(result: &str) -> (usize, usize, usize) {
    let mut counts = (0, 0, 0);
    for part in result.split(';') {
        let mut words = part.split_whitespace().rev();
        let (Some(what), Some(number)) = (words.next(), words.next()) else {
            continue;
        };
        let Ok(number) = number.parse() else {
            continue;
        };
        match what {
            "passed" => counts.0 = number,
            "failed" => counts.1 = number,
            "ignored" => counts.2 = number,
            _ => {}
        }
    }
    counts
}

/// `verified flow_ingress: 136012 instructions` → ("flow_ingress", 136012).
fn verified_line(line: &str) -> Option<(String, u64)> {
    let rest = line.trim_start().strip_prefix(VERIFIED_PREFIX)?;
    let (name, count) = rest.split_once(": ")?;
    let count = count.strip_suffix(" instructions")?.parse().ok()?;
    (!name.is_empty() && !name.contains(' ')).then(|| (name.to_owned(), count))
}

/// The test names in a test binary's `--list --format terse` output (`NAME: test` lines).
pub fn listed_tests(list: &str) -> Vec<String> {
    list.lines()
        .filter_map(|line| line.trim_end().strip_suffix(": test"))
        .map(str::to_owned)
        .collect()
}

/// What libtest printed for failed test `name` (`---- NAME stdout ----` up to the next section,
/// without anyhow's backtrace): its first and last lines when it has more than `max_lines`, since
/// a verifier log says what it refused at its end.
pub fn failure_excerpt(log: &str, name: &str, max_lines: usize) -> Vec<String> {
    let header = format!("---- {name} stdout ----");
    let mut lines = log.lines().skip_while(|line| line.trim_end() != header);
    if lines.next().is_none() {
        return Vec::new();
    }
    let section: Vec<&str> = lines
        .take_while(|line| {
            !line.starts_with("---- ")
                && line.trim_end() != "failures:"
                && !line.trim_start().starts_with("Stack backtrace:")
        })
        .filter(|line| !line.trim().is_empty())
        .collect();
    if section.len() <= max_lines {
        return section.into_iter().map(str::to_owned).collect();
    }
    let head = max_lines.div_ceil(2);
    let tail = max_lines - head;
    let mut excerpt: Vec<String> = section[..head]
        .iter()
        .map(|line| (*line).to_owned())
        .collect();
    excerpt.push(format!("… {} lines …", section.len() - head - tail));
    excerpt.extend(
        section[section.len() - tail..]
            .iter()
            .map(|line| (*line).to_owned()),
    );
    excerpt
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A libtest log as a guest writes it, with `--show-output`, a failing and an ignored test,
    /// and fwlog's own stderr in between.
    const LOG: &str = "
running 4 tests
test ipv6_flow ... ok
fwlog: watching fwt-host-1230 (nft)
test vlan_tagged_frames_are_parsed ... FAILED
test every_program_is_verified_well_inside_the_kernels_limit ... ok
test needs_a_peer ... ignored, no peer here

successes:

---- every_program_is_verified_well_inside_the_kernels_limit stdout ----
verified flow_ingress: 136012 instructions
verified verdict_drop_ne: 45120 instructions
verified verdict_drop_ne: 42939 instructions

failures:

---- vlan_tagged_frames_are_parsed stdout ----
thread 'vlan_tagged_frames_are_parsed' panicked at flows.rs:290:5:
no flow within 5 s

Stack backtrace:
   0: anyhow::error::<impl anyhow::Error>::msg

failures:
    vlan_tagged_frames_are_parsed

test result: FAILED. 2 passed; 1 failed; 1 ignored; 0 measured; 0 filtered out; finished in 41.23s
";

    #[test]
    fn counts_failures_and_verifier_lines_come_from_the_log() {
        let outcome = parse_log(LOG);
        assert_eq!(
            outcome,
            LogOutcome {
                passed: 2,
                failed: 1,
                ignored: 1,
                failures: vec!["vlan_tagged_frames_are_parsed".into()],
                finished: true,
                verified: vec![
                    ("flow_ingress".into(), 136_012),
                    ("verdict_drop_ne".into(), 45_120),
                    ("verdict_drop_ne #2".into(), 42_939),
                ],
            }
        );
    }

    #[test]
    fn a_killed_binary_counts_what_it_reported_and_is_not_finished() {
        let outcome = parse_log("running 3 tests\ntest a ... ok\ntest b ... FAILED\n");
        assert_eq!((outcome.passed, outcome.failed), (1, 1));
        assert!(!outcome.finished);
        assert_eq!(parse_log(""), LogOutcome::default());
    }

    #[test]
    fn the_closing_line_wins_over_lines_a_child_process_broke() {
        // With one test thread, libtest prints the name before running the test: a child's
        // output can land between the name and the result.
        let log = "test a ... fwlog: watching x\nok\ntest result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 1.00s\n";
        let outcome = parse_log(log);
        assert_eq!((outcome.passed, outcome.failed), (1, 0));
        assert!(outcome.finished);
    }

    #[test]
    fn a_failures_excerpt_is_its_own_section() {
        assert_eq!(
            failure_excerpt(LOG, "vlan_tagged_frames_are_parsed", 10),
            [
                "thread 'vlan_tagged_frames_are_parsed' panicked at flows.rs:290:5:",
                "no flow within 5 s"
            ]
        );
        let long = "---- t stdout ----\nError: refused\n1\n2\n3\n4\ninvalid access to packet\n\nfailures:\n";
        assert_eq!(
            failure_excerpt(long, "t", 3),
            [
                "Error: refused",
                "1",
                "… 3 lines …",
                "invalid access to packet"
            ]
        );
        assert!(failure_excerpt(LOG, "ipv6_flow", 10).is_empty());
    }

    #[test]
    fn listed_tests_are_the_test_lines_of_list_output() {
        let list = "ipv6_flow: test\nvlan_tagged_frames_are_parsed: test\nsome_bench: bench\n";
        assert_eq!(
            listed_tests(list),
            ["ipv6_flow", "vlan_tagged_frames_are_parsed"]
        );
    }
}
