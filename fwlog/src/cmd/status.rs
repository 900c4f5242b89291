//! `fwlog status`: what fwlog has in place in this network namespace, from the firewall itself
//! (rules and their packet counters), bpffs (the pin directory and its record) and the kernel's
//! counters; and the pin directories namespaces that are gone left behind.

use std::{
    fmt::Write as _,
    io::{ErrorKind, Write as _},
    process::Command,
};

use anyhow::{Context as _, Result};
use aya::maps::{Map, PerCpuArray};
use fwlog_common::{
    counters::{FLOWS_CREATED, LOST_EVENTS, MALFORMED_PACKETS, VERDICT_EVENTS},
    programs::COUNTERS_MAP,
};
use serde::Serialize;

use crate::{
    args::StatusArgs,
    firewall::{is_fwlog_rule, rule_instance, Family},
    loader,
    netns::{lock_holder, NetNs},
    pin_dir::{
        self, human_bytes,
        record::{Mode, Phase},
        Orphan, Owner, PinDir,
    },
    preflight,
    tc_attach::{self, TcStatus},
};

#[derive(Debug, Default, Serialize)]
struct Status {
    /// `installed` (fwlog install), `session` (a running watch with its own rules), `leftover`
    /// (what an fwlog that did not finish left: `note` says which), or `none`.
    mode: &'static str,
    /// What is wrong or unusual here, in a sentence that says what to do.
    note: Option<String>,
    /// Pid of the running `watch` (session or reader), if any.
    reader_pid: Option<String>,
    /// The creation id of the instance whose pins are here.
    instance: Option<String>,
    interfaces: Vec<String>,
    inbound: Option<String>,
    outbound: Option<String>,
    rules: Vec<RuleStatus>,
    pins: Vec<String>,
    /// How the tc flow programs are attached (`tcx` or `netlink`), when they are.
    tc_attach: Option<TcStatus>,
    /// Kernel counters (installed setups only: a session's are in its own output).
    counters: Option<Counters>,
    /// Pin directories of namespaces that are gone (`fwlog uninstall --orphans` removes them).
    orphans: Vec<OrphanStatus>,
    /// Pin directories fwlog cannot tell about, kept.
    undetermined: Vec<OrphanStatus>,
}

#[derive(Debug, Serialize)]
struct RuleStatus {
    family: &'static str,
    rule: String,
    packets: u64,
    bytes: u64,
}

#[derive(Debug, Serialize)]
struct Counters {
    events: u64,
    lost: u64,
    malformed: u64,
    flows_created: u64,
}

#[derive(Debug, Serialize)]
struct OrphanStatus {
    dir: String,
    why: String,
    memory_bytes: u64,
    mode: Option<&'static str>,
    interfaces: Vec<String>,
    cgroup_hooks: usize,
}

pub fn run(args: StatusArgs) -> Result<()> {
    preflight::require_root("status")?;
    let netns = NetNs::current()?;
    let mut status = Status {
        reader_pid: lock_holder(netns),
        ..Status::default()
    };
    for family in Family::ALL {
        let saved = Command::new(format!("{}-save", family.command()))
            .args(["-c", "-t", "filter"])
            .output()
            .with_context(|| format!("running {}-save", family.command()))?;
        for line in String::from_utf8_lossy(&saved.stdout).lines() {
            if let Some(rule) = parse_counted_rule(line) {
                status.rules.push(RuleStatus {
                    family: family.command(),
                    ..rule
                });
            }
        }
    }
    policies_from_rules(&mut status);
    let own = PinDir::of(netns).and_then(|dir| match dir.owner(netns, &mut None) {
        Owner::Here => Some(dir),
        Owner::Gone(why) | Owner::Unknown(why) => {
            status.note = Some(format!(
                "{} is not this namespace's: {why} (`fwlog uninstall --orphans` removes it)",
                dir.path.display()
            ));
            None
        }
        Owner::Alive => None,
    });
    status.mode = mode(&mut status, own.as_ref());
    if let Some(dir) = &own {
        status.pins = dir.pins();
        status.tc_attach = tc_attach::status(&dir.path, &status.interfaces)?;
        if status.mode == "installed" {
            status.counters = Some(counters(dir)?);
        }
    }
    let (gone, unknown) = pin_dir::orphans(netns);
    status.orphans = gone.iter().map(orphan_status).collect();
    status.undetermined = unknown.iter().map(orphan_status).collect();
    let text = if args.json {
        format!("{}\n", serde_json::to_string(&status)?)
    } else {
        text(&status)
    };
    // `fwlog status | head` closes the pipe early: that is no error.
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(error) if error.kind() == ErrorKind::BrokenPipe => Ok(()),
        written => written.context("writing the status"),
    }
}

/// The mode, from the pin directory's record, whether an instance holds the lock, and the rules.
fn mode(status: &mut Status, own: Option<&PinDir>) -> &'static str {
    let running = status.reader_pid.is_some();
    let has_rules = !status.rules.is_empty();
    let Some(dir) = own else {
        return match (running, has_rules) {
            (true, _) => "session",
            (false, true) => {
                status.note.get_or_insert_with(|| {
                    "fwlog's rules are here but its pins are not: `fwlog uninstall` removes \
                     the rules"
                        .to_string()
                });
                "leftover"
            }
            (false, false) => "none",
        };
    };
    let Some(record) = &dir.record else {
        // A directory made before records, or a record that cannot be read.
        if let Some(error) = &dir.record_error {
            status.note = Some(format!("{error}: `fwlog uninstall` removes what is here"));
            return "leftover";
        }
        return match (running, loader::is_installed(&dir.path)) {
            (_, true) => "installed",
            (true, false) => "session",
            (false, false) => "leftover",
        };
    };
    status.instance = Some(record.id.clone());
    if let Some(other) = status
        .rules
        .iter()
        .filter_map(|r| rule_instance(&r.rule))
        .find(|id| *id != record.id)
    {
        status.note = Some(format!(
            "the rules here were added by fwlog instance {other}, the pins by {}: `fwlog \
             uninstall` removes both",
            record.id
        ));
    }
    let what = match record.mode {
        Mode::Session => "a `fwlog watch`",
        Mode::Installed => "a `fwlog install`",
    };
    match (running, record.mode, record.state) {
        // An instance holds the lock: it is installing, reading or removing right now.
        (true, Mode::Installed, _) => "installed",
        (true, Mode::Session, _) => "session",
        (false, Mode::Installed, Phase::Active) if has_rules => "installed",
        (false, Mode::Installed, Phase::Active) => {
            status.note = Some(
                "installed, but its rules are gone (was iptables flushed?): `fwlog uninstall` \
                 removes the rest, `fwlog install` puts it back"
                    .to_string(),
            );
            "leftover"
        }
        (false, _, Phase::Installing) => {
            status.note = Some(format!(
                "{what} (pid {}) stopped before it finished installing: `fwlog uninstall` \
                 removes what it left",
                record.pid
            ));
            "leftover"
        }
        (false, _, Phase::Removing) => {
            status.note = Some(format!(
                "the removal of {what} did not finish (it failed or was killed): `fwlog \
                 uninstall` finishes it"
            ));
            "leftover"
        }
        (false, Mode::Session, Phase::Active) => {
            status.note = Some(format!(
                "{what} (pid {}) did not exit cleanly (killed?); its rules still enforce: \
                 `fwlog uninstall` removes them",
                record.pid
            ));
            "leftover"
        }
    }
}

/// Interfaces and policies, read back from the jump rules.
fn policies_from_rules(status: &mut Status) {
    for rule in &status.rules {
        let words: Vec<&str> = rule.rule.split_whitespace().collect();
        let jump = words
            .iter()
            .position(|w| *w == "-j")
            .and_then(|i| words.get(i + 1));
        let policy = jump
            .and_then(|chain| chain.strip_prefix("LOG_AND_"))
            .map(str::to_lowercase);
        let is_policy = rule.rule.contains("NEW,RELATED");
        if rule.rule.starts_with("-A INPUT") && is_policy {
            if let Some(i) = words.iter().position(|w| *w == "-i") {
                let name = words.get(i + 1).map(|s| s.to_string()).unwrap_or_default();
                if !status.interfaces.contains(&name) {
                    status.interfaces.push(name);
                }
            }
            status.inbound = policy;
        } else if rule.rule.starts_with("-A OUTPUT") && is_policy {
            status.outbound = policy;
        }
    }
}

fn counters(dir: &PinDir) -> Result<Counters> {
    let counters = PerCpuArray::<_, u64>::try_from(Map::PerCpuArray(loader::open_pinned_map(
        &dir.path,
        COUNTERS_MAP,
    )?))?;
    let sum = |index: u32| -> Result<u64> { Ok(counters.get(&index, 0)?.iter().sum()) };
    Ok(Counters {
        events: sum(VERDICT_EVENTS)?,
        lost: sum(LOST_EVENTS)?,
        malformed: sum(MALFORMED_PACKETS)?,
        flows_created: sum(FLOWS_CREATED)?,
    })
}

fn orphan_status(orphan: &Orphan) -> OrphanStatus {
    let record = orphan.dir.record.as_ref();
    OrphanStatus {
        dir: orphan.dir.path.display().to_string(),
        why: orphan.why.clone(),
        memory_bytes: orphan.memory,
        mode: record.map(|r| r.mode.as_str()),
        interfaces: record.map(|r| r.interfaces.clone()).unwrap_or_default(),
        cgroup_hooks: orphan.dir.cgroup_hooks().len(),
    }
}

/// `[12:720] -A INPUT … --comment fwlog …` → the rule and its counters, if it is fwlog's.
fn parse_counted_rule(line: &str) -> Option<RuleStatus> {
    let rest = line.strip_prefix('[')?;
    let (counts, rule) = rest.split_once("] ")?;
    let (packets, bytes) = counts.split_once(':')?;
    is_fwlog_rule(rule).then(|| RuleStatus {
        family: "",
        rule: rule.to_string(),
        packets: packets.parse().unwrap_or(0),
        bytes: bytes.parse().unwrap_or(0),
    })
}

fn text(status: &Status) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "mode: {}", status.mode);
    if let Some(note) = &status.note {
        let _ = writeln!(out, "note: {note}");
    }
    if let Some(pid) = &status.reader_pid {
        let _ = writeln!(out, "reader: fwlog watch, pid {pid}");
    }
    if let Some(instance) = &status.instance {
        let _ = writeln!(out, "instance: {instance} (rules tagged fwlog-{instance})");
    }
    if !status.interfaces.is_empty() {
        let _ = writeln!(out, "interfaces: {}", status.interfaces.join(", "));
    }
    if let Some(inbound) = &status.inbound {
        let _ = writeln!(out, "inbound: {inbound}");
    }
    if let Some(outbound) = &status.outbound {
        let _ = writeln!(out, "outbound: {outbound}");
    }
    if let Some(c) = &status.counters {
        let _ = writeln!(
            out,
            "events: {}, lost: {}, malformed: {}, flows: {}",
            c.events, c.lost, c.malformed, c.flows_created
        );
    }
    if !status.rules.is_empty() {
        let _ = writeln!(out, "rules (packets, bytes):");
        for rule in &status.rules {
            let _ = writeln!(
                out,
                "  {:>10} {:>12}  {}: {}",
                rule.packets, rule.bytes, rule.family, rule.rule
            );
        }
    }
    if let Some(tc) = &status.tc_attach {
        let _ = writeln!(out, "tc programs: {}", tc.mode);
        for filter in &tc.filters {
            let record = &filter.record;
            let _ = writeln!(
                out,
                "  {} {}: {} priority {} handle {:#x}{}",
                record.interface,
                record.hook,
                record.program,
                record.priority,
                record.handle,
                if filter.attached { "" } else { " (missing)" }
            );
        }
    }
    if !status.pins.is_empty() {
        let _ = writeln!(out, "pins: {}", status.pins.join(" "));
    }
    for (title, list) in [
        (
            "orphaned pin directories (their namespace is gone; `fwlog uninstall --orphans` \
             removes them):",
            &status.orphans,
        ),
        (
            "pin directories fwlog cannot tell about (kept):",
            &status.undetermined,
        ),
    ] {
        if list.is_empty() {
            continue;
        }
        let _ = writeln!(out, "{title}");
        for orphan in list {
            let mode = orphan.mode.unwrap_or("unknown");
            let on = if orphan.interfaces.is_empty() {
                String::new()
            } else {
                format!(" on {}", orphan.interfaces.join(", "))
            };
            let hooks = if orphan.cgroup_hooks > 0 {
                format!(", {} cgroup hooks", orphan.cgroup_hooks)
            } else {
                String::new()
            };
            let _ = writeln!(
                out,
                "  {}: {mode}{on}, {}{hooks}: {}",
                orphan.dir,
                human_bytes(orphan.memory_bytes),
                orphan.why
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counted_rules() {
        let rule = parse_counted_rule(
            "[12:720] -A INPUT -i eth0 -m comment --comment fwlog -j LOG_AND_DROP",
        )
        .expect("fwlog's");
        assert_eq!((rule.packets, rule.bytes), (12, 720));
        assert!(rule.rule.starts_with("-A INPUT -i eth0"));
        assert!(parse_counted_rule("[1:2] -A INPUT -j ACCEPT").is_none());
        assert!(parse_counted_rule(":INPUT ACCEPT [0:0]").is_none());
    }

    fn dir(mode: Mode, state: Phase) -> PinDir {
        PinDir {
            path: "/sys/fs/bpf/fwlog/7".into(),
            inode: 7,
            record: Some(pin_dir::record::Record {
                version: 1,
                id: "00112233445566ff".into(),
                netns_inode: 7,
                netns_cookie: Some(1),
                pid: 42,
                mode,
                state,
                interfaces: vec!["eth0".into()],
                other: serde_json::Map::new(),
            }),
            record_error: None,
            link_netns: Some(7),
        }
    }

    fn with_rules(tag: &str, running: bool) -> Status {
        Status {
            reader_pid: running.then(|| "42".to_string()),
            rules: vec![RuleStatus {
                family: "iptables",
                rule: format!("-A INPUT -i eth0 -m comment --comment {tag} -j LOG_AND_DROP"),
                packets: 0,
                bytes: 0,
            }],
            ..Status::default()
        }
    }

    #[test]
    fn modes_from_the_record_the_lock_and_the_rules() {
        let tag = "fwlog-00112233445566ff";
        let cases = [
            (
                Mode::Installed,
                Phase::Active,
                true,
                true,
                "installed",
                None,
            ),
            (
                Mode::Installed,
                Phase::Active,
                false,
                true,
                "installed",
                None,
            ),
            (Mode::Session, Phase::Active, true, true, "session", None),
            (
                Mode::Session,
                Phase::Installing,
                true,
                true,
                "session",
                None,
            ),
            (
                Mode::Session,
                Phase::Active,
                false,
                true,
                "leftover",
                Some("did not exit cleanly"),
            ),
            (
                Mode::Installed,
                Phase::Installing,
                false,
                true,
                "leftover",
                Some("stopped before it finished installing"),
            ),
            (
                Mode::Installed,
                Phase::Removing,
                false,
                true,
                "leftover",
                Some("removal of a `fwlog install` did not finish"),
            ),
            (
                Mode::Installed,
                Phase::Active,
                false,
                false,
                "leftover",
                Some("its rules are gone"),
            ),
        ];
        for (mode_recorded, state, running, rules, expected, note) in cases {
            let mut status = with_rules(tag, running);
            if !rules {
                status.rules.clear();
            }
            let got = mode(&mut status, Some(&dir(mode_recorded, state)));
            let case = format!("{mode_recorded:?} {state:?} running={running} rules={rules}");
            assert_eq!(got, expected, "{case}");
            match note {
                Some(note) => assert!(
                    status.note.as_deref().is_some_and(|n| n.contains(note)),
                    "{case}: {:?}",
                    status.note
                ),
                None => assert_eq!(status.note, None, "{case}"),
            }
        }
    }

    #[test]
    fn rules_of_another_instance_are_pointed_out() {
        let mut status = with_rules("fwlog-ffffffffffffffff", false);
        assert_eq!(
            mode(&mut status, Some(&dir(Mode::Installed, Phase::Active))),
            "installed"
        );
        assert!(status.note.as_deref().is_some_and(|n| n
            .contains("added by fwlog instance ffffffffffffffff, the pins by 00112233445566ff")));
    }

    #[test]
    fn rules_without_pins_are_a_leftover() {
        let mut status = with_rules("fwlog", false);
        assert_eq!(mode(&mut status, None), "leftover");
        let mut none = Status::default();
        assert_eq!(mode(&mut none, None), "none");
    }
}
