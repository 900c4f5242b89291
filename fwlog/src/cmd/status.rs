//! `fwlog status`: what fwlog has in place in this network namespace, from the firewall itself
//! (rules and their packet counters), bpffs (pins) and the kernel's counters.

use std::process::Command;

use anyhow::{Context as _, Result};
use aya::maps::{Map, PerCpuArray};
use fwlog_common::{
    counters::{FLOWS_CREATED, LOST_EVENTS, MALFORMED_PACKETS, VERDICT_EVENTS},
    programs::COUNTERS_MAP,
};
use serde::Serialize;

use crate::{
    args::StatusArgs,
    firewall::{is_fwlog_rule, Family},
    loader,
    netns::{lock_holder, NetNs},
    preflight,
};

#[derive(Debug, Default, Serialize)]
struct Status {
    /// `installed` (fwlog install), `session` (a watch with its own rules), or `none`.
    mode: &'static str,
    /// Pid of the running `watch` (session or reader), if any.
    reader_pid: Option<String>,
    interfaces: Vec<String>,
    inbound: Option<String>,
    outbound: Option<String>,
    rules: Vec<RuleStatus>,
    pins: Vec<String>,
    /// Kernel counters (installed setups only: a session's are in its own output).
    counters: Option<Counters>,
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

pub fn run(args: StatusArgs) -> Result<()> {
    preflight::require_root("status")?;
    let netns = NetNs::current()?;
    let pin_dir = netns.pin_dir();
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
    if let Ok(entries) = std::fs::read_dir(&pin_dir) {
        status.pins = entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        status.pins.sort();
    }
    if loader::is_installed(&pin_dir) {
        status.mode = "installed";
        let counters = PerCpuArray::<_, u64>::try_from(Map::PerCpuArray(loader::open_pinned_map(
            &pin_dir,
            COUNTERS_MAP,
        )?))?;
        let sum = |index: u32| -> Result<u64> { Ok(counters.get(&index, 0)?.iter().sum()) };
        status.counters = Some(Counters {
            events: sum(VERDICT_EVENTS)?,
            lost: sum(LOST_EVENTS)?,
            malformed: sum(MALFORMED_PACKETS)?,
            flows_created: sum(FLOWS_CREATED)?,
        });
    } else if !status.rules.is_empty() || status.reader_pid.is_some() {
        status.mode = "session";
    } else {
        status.mode = "none";
    }
    if args.json {
        println!("{}", serde_json::to_string(&status)?);
    } else {
        print_text(&status);
    }
    Ok(())
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

fn print_text(status: &Status) {
    println!("mode: {}", status.mode);
    if let Some(pid) = &status.reader_pid {
        println!("reader: fwlog watch, pid {pid}");
    }
    if !status.interfaces.is_empty() {
        println!("interfaces: {}", status.interfaces.join(", "));
    }
    if let Some(inbound) = &status.inbound {
        println!("inbound: {inbound}");
    }
    if let Some(outbound) = &status.outbound {
        println!("outbound: {outbound}");
    }
    if let Some(c) = &status.counters {
        println!(
            "events: {}, lost: {}, malformed: {}, flows: {}",
            c.events, c.lost, c.malformed, c.flows_created
        );
    }
    if !status.rules.is_empty() {
        println!("rules (packets, bytes):");
        for rule in &status.rules {
            println!(
                "  {:>10} {:>12}  {}: {}",
                rule.packets, rule.bytes, rule.family, rule.rule
            );
        }
    }
    if !status.pins.is_empty() {
        println!("pins: {}", status.pins.join(" "));
    }
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
}
