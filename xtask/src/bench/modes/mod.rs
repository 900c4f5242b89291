//! The logging setups compared, each on fwlog's own chain layout: their rules, their consumer,
//! and a [`Session`] that sets one up for a run and takes all of it down again.

pub mod child;
pub mod fwlog;
pub mod kmsg;
pub mod ulogd;

use std::{
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    time::Instant,
};

use anyhow::{bail, Context as _, Result};
use serde_json::{json, Value};

use self::{fwlog::FwlogConsumer, kmsg::KmsgReader, ulogd::UlogdConsumer};
use super::{
    measure,
    netns::{BenchNet, NetNsGuard},
};

/// The article's prefix for dropped connections (`--log-prefix '[OY-D]:'`).
pub const LOG_PREFIX_DROP: &str = "[OY-D]:";
/// The NFLOG group ulogd listens on.
pub const NFLOG_GROUP: u16 = 5;
/// The floor mode's classic BPF program, as `-m bpf --bytecode` takes it: one instruction,
/// `ret #1` (BPF_RET|BPF_K = 6): every packet matches.
const FLOOR_PROGRAM: &str = "1,6 0 0 1";
/// Tag of the rules the bench installs itself.
const RULE_COMMENT: &str = "fwlog-bench";
/// What fwlog installs (plan.rs): three chains, each logging NEW and RELATED, then acting.
const CHAINS: [(&str, &str, char); 3] = [
    ("LOG_AND_ACCEPT", "ACCEPT", 'A'),
    ("LOG_AND_DROP", "DROP", 'D'),
    ("LOG_AND_REJECT", "REJECT", 'R'),
];
/// What starts a connection, as in fwlog's jump rules (plan.rs `CONNECTION_ATTEMPTS`).
const CONNECTION_ATTEMPTS: [&str; 2] = ["-p tcp --syn", "! -p tcp"];

/// A logging setup under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// The chains and jumps, no logging: the kernel path's ceiling.
    None,
    /// fwlog's logging rules (conntrack state, `-m bpf`, the action) running a one-instruction
    /// classic BPF program that matches and records nothing: the least any `-m bpf` logger
    /// costs, with no program work, ring buffer or flow table.
    Floor,
    /// `-j LOG` (printk), read back from /dev/kmsg.
    Log,
    /// `-j NFLOG --nflog-group 5`, written as JSON by ulogd2.
    Nflog,
    /// `fwlog watch`: eBPF behind `-m bpf`, a ring buffer, JSON lines.
    Fwlog,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::None => "none",
            Mode::Floor => "floor",
            Mode::Log => "log",
            Mode::Nflog => "nflog",
            Mode::Fwlog => "fwlog",
        }
    }

    /// The rule that logs in chain `letter` (A, D, R), if this mode logs with a rule of its own.
    fn logging_rule(self, letter: char) -> Option<String> {
        let prefix = format!("[OY-{letter}]:");
        match self {
            Mode::Log => Some(format!("-j LOG --log-prefix \"{prefix}\" --log-level 7")),
            Mode::Nflog => Some(format!(
                "-j NFLOG --nflog-group {NFLOG_GROUP} --nflog-prefix \"{prefix}\""
            )),
            Mode::None | Mode::Floor | Mode::Fwlog => None,
        }
    }
}

/// The `iptables-restore --noflush` script for `mode` (fwlog installs its own rules: `None`).
pub fn rules_script(mode: Mode, host_if: &str) -> Option<String> {
    if mode == Mode::Fwlog {
        return None;
    }
    let tag = format!("-m comment --comment {RULE_COMMENT}");
    let mut script = String::from("*filter\n");
    for (chain, _, _) in CHAINS {
        let _ = writeln!(script, ":{chain} - [0:0]");
    }
    for (chain, target, letter) in CHAINS {
        if mode == Mode::Floor {
            for state in ["NEW", "RELATED"] {
                let _ = writeln!(
                    script,
                    "-A {chain} -m conntrack --ctstate {state} -m bpf --bytecode \"{FLOOR_PROGRAM}\" -j {target}"
                );
            }
        }
        if let Some(rule) = mode.logging_rule(letter) {
            let _ = writeln!(
                script,
                "-A {chain} -m conntrack --ctstate NEW,RELATED {tag} {rule}"
            );
        }
        let _ = writeln!(script, "-A {chain} {tag} -j {target}");
    }
    for attempt in CONNECTION_ATTEMPTS {
        let _ = writeln!(
            script,
            "-A INPUT -i {host_if} {attempt} -m conntrack --ctstate NEW,RELATED {tag} -j LOG_AND_DROP"
        );
    }
    for attempt in CONNECTION_ATTEMPTS {
        let _ = writeln!(
            script,
            "-A OUTPUT ! -o lo {attempt} -m conntrack --ctstate NEW,RELATED {tag} -j LOG_AND_ACCEPT"
        );
    }
    script.push_str("COMMIT\n");
    Some(script)
}

/// An empty filter table: `iptables-restore` without `--noflush` flushes the table and deletes
/// its user chains. The host namespace is the bench's own, so nothing else is lost.
const EMPTY_FILTER: &str =
    "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n";

/// Rules and user chains in an `iptables-save -t filter` output (counters and comments aside).
pub fn leftover_rules(saved: &str) -> Vec<String> {
    const BUILTIN: [&str; 3] = [":INPUT ", ":FORWARD ", ":OUTPUT "];
    saved
        .lines()
        .filter(|line| {
            line.starts_with("-A ")
                || (line.starts_with(':') && !BUILTIN.iter().any(|chain| line.starts_with(chain)))
        })
        .map(str::to_owned)
        .collect()
}

/// What is left in `host`'s IPv4 and IPv6 filter tables.
pub fn host_leftovers(host: &NetNsGuard) -> Result<Vec<String>> {
    let mut left = Vec::new();
    for save in ["iptables-save", "ip6tables-save"] {
        left.extend(leftover_rules(&host.output(save, &["-t", "filter"])?));
    }
    Ok(left)
}

/// Empties `host`'s IPv4 and IPv6 filter tables.
pub fn reset_rules(host: &NetNsGuard) -> Result<()> {
    for restore in ["iptables-restore", "ip6tables-restore"] {
        host.run_with_input(restore, &["--wait"], EMPTY_FILTER)
            .with_context(|| format!("emptying {}'s filter table", host.name()))?;
    }
    Ok(())
}

/// What the modes need from the machine, found before the first run.
#[derive(Clone, Debug, Default)]
pub struct Tools {
    pub fwlog: Option<PathBuf>,
    pub ulogd: Option<ulogd::Ulogd>,
}

/// Per-run settings of a session.
pub struct RunSettings<'a> {
    pub out_dir: &'a Path,
    pub run_name: &'a str,
    pub ring_size: &'a str,
    /// More arguments for `fwlog watch`.
    pub fwlog_args: &'a [String],
    pub keep_output: bool,
}

enum Consumer {
    Nothing,
    Kmsg(KmsgReader),
    Ulogd(UlogdConsumer),
    Fwlog(FwlogConsumer),
}

/// What a mode's consumer got, after it was stopped.
#[derive(Debug, Default)]
pub struct Finished {
    /// Events delivered to the consumer; `None` for the `none` mode.
    pub events: Option<u64>,
    /// Losses the consumer itself knows of (fwlog's `lost` lines, overwritten kmsg records).
    pub known_lost: Option<u64>,
    pub notes: Vec<String>,
    pub detail: Value,
    /// From starting the consumer to the rules being in place (fwlog: load, verify, attach).
    pub setup_secs: f64,
}

/// One mode set up in the host namespace for one run.
pub struct Session<'n> {
    net: &'n BenchNet,
    mode: Mode,
    consumer: Consumer,
    files: Vec<PathBuf>,
    keep_output: bool,
    finished: bool,
    setup_secs: f64,
    // Declared last: restored after the consumer and the rules are gone.
    log_all_netns: Option<kmsg::LogAllNetns>,
}

impl<'n> Session<'n> {
    /// Starts the consumer first, so it sees the first packet, then installs the rules.
    pub fn start(mode: Mode, net: &'n BenchNet, tools: &Tools, run: &RunSettings) -> Result<Self> {
        let started = Instant::now();
        let mut session = Session {
            net,
            mode,
            consumer: Consumer::Nothing,
            files: Vec::new(),
            keep_output: run.keep_output,
            finished: false,
            setup_secs: 0.0,
            log_all_netns: None,
        };
        match mode {
            Mode::None | Mode::Floor => {}
            Mode::Log => {
                session.log_all_netns = Some(kmsg::LogAllNetns::enable()?);
                session.consumer = Consumer::Kmsg(KmsgReader::start(LOG_PREFIX_DROP)?);
            }
            Mode::Nflog => {
                let ulogd = tools.ulogd.as_ref().context("ulogd is not available")?;
                let consumer = UlogdConsumer::start(ulogd, &net.host, run.out_dir, run.run_name)?;
                session.files.extend(consumer.files.iter().cloned());
                session.consumer = Consumer::Ulogd(consumer);
            }
            Mode::Fwlog => {
                let binary = tools.fwlog.as_ref().context("fwlog was not built")?;
                let consumer = FwlogConsumer::start(
                    binary,
                    &net.host,
                    &net.host_if,
                    run.ring_size,
                    run.fwlog_args,
                    run.out_dir,
                    run.run_name,
                )?;
                session.files.push(consumer.output.clone());
                session.consumer = Consumer::Fwlog(consumer);
            }
        }
        if let Some(script) = rules_script(mode, &net.host_if) {
            net.host
                .run_with_input("iptables-restore", &["--noflush", "--wait"], &script)
                .context("installing the mode's rules")?;
        }
        session.setup_secs = started.elapsed().as_secs_f64();
        // Every mode counts flows on this rule; fail now rather than after the flood.
        measure::chain_packets(&net.host)?;
        Ok(session)
    }

    /// Events the consumer has delivered so far.
    pub fn events(&mut self) -> Result<Option<u64>> {
        Ok(match &mut self.consumer {
            Consumer::Nothing => None,
            Consumer::Kmsg(reader) => Some(reader.events()),
            Consumer::Ulogd(ulogd) => Some(ulogd.events()?),
            Consumer::Fwlog(fwlog) => Some(fwlog.events()?),
        })
    }

    /// When a consumer that writes a file last wrote to it, as far as [`Session::events`]
    /// saw; `None` for consumers counted as they go (the kmsg reader).
    pub fn last_output(&self) -> Option<std::time::Instant> {
        match &self.consumer {
            Consumer::Nothing | Consumer::Kmsg(_) => None,
            Consumer::Ulogd(ulogd) => ulogd.last_output(),
            Consumer::Fwlog(fwlog) => fwlog.last_output(),
        }
    }

    /// The pid of fwlog, in the `fwlog` mode: the eBPF programs it holds are the ones measured.
    pub fn fwlog_pid(&self) -> Option<u32> {
        match &self.consumer {
            Consumer::Fwlog(fwlog) => fwlog.pid(),
            _ => None,
        }
    }

    /// The consumer's CPU time and sleeps so far.
    pub fn consumer_usage(&self) -> Result<Option<measure::TaskUsage>> {
        let dir = match &self.consumer {
            Consumer::Nothing => return Ok(None),
            Consumer::Kmsg(reader) => Some(reader.proc_dir().to_owned()),
            Consumer::Ulogd(ulogd) => ulogd.proc_dir(),
            Consumer::Fwlog(fwlog) => fwlog.proc_dir(),
        };
        let dir = dir.context("the consumer is no longer running")?;
        measure::TaskUsage::read(&dir).map(Some)
    }

    /// Stops logging (rules away, or fwlog's own exit), then the consumer; checks that the host
    /// namespace's tables are empty again.
    pub fn finish(mut self) -> Result<Finished> {
        self.finished = true;
        let host = &self.net.host;
        let mut finished = Finished {
            setup_secs: self.setup_secs,
            ..Finished::default()
        };
        if self.mode != Mode::Fwlog {
            reset_rules(host)?;
        }
        match &mut self.consumer {
            Consumer::Nothing => {}
            Consumer::Kmsg(reader) => {
                let totals = reader.stop()?;
                finished.events = Some(totals.events);
                finished.known_lost = Some(totals.overwritten);
                if totals.unparsed > 0 {
                    finished
                        .notes
                        .push(format!("{} log lines unparsable", totals.unparsed));
                }
                finished.detail = json!({
                    "kmsg_records_overwritten": totals.overwritten,
                    "unparsed_lines": totals.unparsed,
                });
            }
            Consumer::Ulogd(ulogd) => {
                let (lines, killed) = ulogd.stop()?;
                finished.events = Some(lines);
                if killed {
                    finished.notes.push("ulogd ignored SIGTERM".into());
                }
            }
            Consumer::Fwlog(fwlog) => {
                let totals = fwlog.stop()?;
                finished.events = Some(totals.verdicts);
                finished.known_lost = Some(totals.lost);
                if totals.killed {
                    finished.notes.push("fwlog ignored SIGINT".into());
                }
                let left = host_leftovers(host)?;
                if !left.is_empty() {
                    finished
                        .notes
                        .push(format!("fwlog left {} rules/chains behind", left.len()));
                    reset_rules(host)?;
                }
                finished.detail = json!({
                    "lost_lines_total": totals.lost,
                    "other_lines": totals.other,
                    "summary": totals.summary,
                    "left_behind": left,
                });
            }
        }
        let left = host_leftovers(host)?;
        if !left.is_empty() {
            bail!(
                "rules left in {} after the {} run: {}",
                host.name(),
                self.mode.as_str(),
                left.join("; ")
            );
        }
        Ok(finished)
    }
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        // Stop the consumer first (fwlog removes its own rules), then empty the tables.
        self.consumer = Consumer::Nothing;
        if !self.finished {
            if let Err(error) = reset_rules(&self.net.host) {
                eprintln!("warning: {error:#}");
            }
        }
        if !self.keep_output {
            for file in &self.files {
                let _ = fs::remove_file(file);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_mode_mirrors_fwlog_layout_with_the_article_rules() {
        let script = rules_script(Mode::Log, "fwbh7").expect("log installs rules");
        let expected = "\
*filter
:LOG_AND_ACCEPT - [0:0]
:LOG_AND_DROP - [0:0]
:LOG_AND_REJECT - [0:0]
-A LOG_AND_ACCEPT -m conntrack --ctstate NEW,RELATED -m comment --comment fwlog-bench -j LOG --log-prefix \"[OY-A]:\" --log-level 7
-A LOG_AND_ACCEPT -m comment --comment fwlog-bench -j ACCEPT
-A LOG_AND_DROP -m conntrack --ctstate NEW,RELATED -m comment --comment fwlog-bench -j LOG --log-prefix \"[OY-D]:\" --log-level 7
-A LOG_AND_DROP -m comment --comment fwlog-bench -j DROP
-A LOG_AND_REJECT -m conntrack --ctstate NEW,RELATED -m comment --comment fwlog-bench -j LOG --log-prefix \"[OY-R]:\" --log-level 7
-A LOG_AND_REJECT -m comment --comment fwlog-bench -j REJECT
-A INPUT -i fwbh7 -p tcp --syn -m conntrack --ctstate NEW,RELATED -m comment --comment fwlog-bench -j LOG_AND_DROP
-A INPUT -i fwbh7 ! -p tcp -m conntrack --ctstate NEW,RELATED -m comment --comment fwlog-bench -j LOG_AND_DROP
-A OUTPUT ! -o lo -p tcp --syn -m conntrack --ctstate NEW,RELATED -m comment --comment fwlog-bench -j LOG_AND_ACCEPT
-A OUTPUT ! -o lo ! -p tcp -m conntrack --ctstate NEW,RELATED -m comment --comment fwlog-bench -j LOG_AND_ACCEPT
COMMIT
";
        assert_eq!(script, expected);
    }

    #[test]
    fn none_has_no_logging_and_nflog_uses_the_group() {
        let none = rules_script(Mode::None, "h").expect("none installs rules");
        assert!(!none.contains("LOG --") && !none.contains("NFLOG"));
        assert!(none.contains("-A LOG_AND_DROP -m comment --comment fwlog-bench -j DROP\n"));
        let nflog = rules_script(Mode::Nflog, "h").expect("nflog installs rules");
        assert!(nflog.contains("-j NFLOG --nflog-group 5 --nflog-prefix \"[OY-D]:\"\n"));
        assert_eq!(rules_script(Mode::Fwlog, "h"), None);
    }

    #[test]
    fn floor_runs_a_program_that_matches_in_fwlogs_place() {
        let floor = rules_script(Mode::Floor, "h").expect("floor installs rules");
        let drop_rules: Vec<&str> = floor
            .lines()
            .filter(|line| line.starts_with("-A LOG_AND_DROP "))
            .collect();
        assert_eq!(
            drop_rules,
            [
                "-A LOG_AND_DROP -m conntrack --ctstate NEW -m bpf --bytecode \"1,6 0 0 1\" -j DROP",
                "-A LOG_AND_DROP -m conntrack --ctstate RELATED -m bpf --bytecode \"1,6 0 0 1\" -j DROP",
                "-A LOG_AND_DROP -m comment --comment fwlog-bench -j DROP",
            ]
        );
    }

    #[test]
    fn leftovers_ignore_builtin_chains() {
        let saved = "# Generated\n*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n";
        assert!(leftover_rules(saved).is_empty());
        let saved = "*filter\n:INPUT ACCEPT [0:0]\n:LOG_AND_DROP - [0:0]\n-A INPUT -j LOG_AND_DROP\nCOMMIT\n";
        assert_eq!(
            leftover_rules(saved),
            [":LOG_AND_DROP - [0:0]", "-A INPUT -j LOG_AND_DROP"]
        );
    }
}
