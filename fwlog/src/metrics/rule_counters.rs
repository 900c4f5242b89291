//! Packet and byte counters of fwlog's rules in each `LOG_AND_*` chain, from `iptables-save -c`
//! and `ip6tables-save -c`. Read when Prometheus scrapes, at most once a second (two short
//! processes, about 10 ms here), never per event.

use std::{
    io::Read as _,
    process::{Command, Stdio},
    sync::Mutex,
    time::{Duration, Instant},
};

use crate::firewall::{is_fwlog_rule, Family};

/// Scrapes closer together than this share one reading.
const FRESH_FOR: Duration = Duration::from_secs(1);
/// An iptables-save that takes longer is killed and its family left out of this scrape.
const SAVE_TIMEOUT: Duration = Duration::from_secs(2);

/// One chain's counters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainCounters {
    pub family: &'static str,
    pub chain: String,
    pub packets: u64,
    pub bytes: u64,
}

#[derive(Debug, Default)]
pub struct RuleCounters {
    last: Mutex<Option<(Instant, Vec<ChainCounters>)>>,
}

impl RuleCounters {
    /// The chains' counters, read again when the last reading is over a second old.
    pub fn read(&self) -> Vec<ChainCounters> {
        let Ok(mut last) = self.last.lock() else {
            return Vec::new();
        };
        if let Some((at, counters)) = &*last {
            if at.elapsed() < FRESH_FOR {
                return counters.clone();
            }
        }
        let counters: Vec<ChainCounters> = Family::ALL
            .into_iter()
            .filter_map(|family| {
                let saved = save_with_counters(family)?;
                Some(chain_counters(family_label(family), &saved))
            })
            .flatten()
            .collect();
        *last = Some((Instant::now(), counters.clone()));
        counters
    }
}

fn family_label(family: Family) -> &'static str {
    match family {
        Family::V4 => "ipv4",
        Family::V6 => "ipv6",
    }
}

/// `iptables-save -c -t filter`, or `None` when it fails or hangs.
fn save_with_counters(family: Family) -> Option<String> {
    let mut child = Command::new(format!("{}-save", family.command()))
        .args(["-c", "-t", "filter"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let mut stdout = child.stdout.take()?;
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        stdout.read_to_string(&mut text).map(|_| text)
    });
    let deadline = Instant::now() + SAVE_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
    reader.join().ok()?.ok()
}

/// Sums the counters of fwlog's rules per `LOG_AND_*` chain of one `iptables-save -c` output;
/// a chain that exists with no fwlog rule counted yet shows zeros.
pub fn chain_counters(family: &'static str, saved: &str) -> Vec<ChainCounters> {
    let mut chains: Vec<ChainCounters> = Vec::new();
    for line in saved.lines() {
        if let Some(declared) = line.strip_prefix(':') {
            let name = declared.split_whitespace().next().unwrap_or_default();
            if name.starts_with("LOG_AND_") && !chains.iter().any(|c| c.chain == name) {
                chains.push(ChainCounters {
                    family,
                    chain: name.to_string(),
                    packets: 0,
                    bytes: 0,
                });
            }
            continue;
        }
        let Some((counts, rule)) = line.strip_prefix('[').and_then(|l| l.split_once("] ")) else {
            continue;
        };
        let Some(chain) = rule
            .strip_prefix("-A ")
            .and_then(|r| r.split_whitespace().next())
        else {
            continue;
        };
        let Some(entry) = chains.iter_mut().find(|c| c.chain == chain) else {
            continue;
        };
        if !is_fwlog_rule(rule) {
            continue;
        }
        if let Some((packets, bytes)) = counts.split_once(':') {
            entry.packets += packets.parse::<u64>().unwrap_or(0);
            entry.bytes += bytes.parse::<u64>().unwrap_or(0);
        }
    }
    chains
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_of_fwlog_rules_add_up_per_chain() {
        let saved = "\
*filter
:INPUT ACCEPT [10:600]
:LOG_AND_ACCEPT - [0:0]
:LOG_AND_DROP - [0:0]
[7:420] -A INPUT -i eth1 -p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN -m conntrack --ctstate NEW,RELATED -m comment --comment fwlog -j LOG_AND_DROP
[5:300] -A LOG_AND_DROP -m conntrack --ctstate NEW -m bpf --object-pinned /sys/fs/bpf/fwlog/4026/verdict_drop_new -j DROP
[1:76] -A LOG_AND_DROP -m conntrack --ctstate RELATED -m bpf --object-pinned /sys/fs/bpf/fwlog/4026/verdict_drop_related -j DROP
[1:44] -A LOG_AND_DROP -m comment --comment fwlog -j DROP
[9:900] -A LOG_AND_DROP -s 10.0.0.0/8 -j ACCEPT
COMMIT
";
        assert_eq!(
            chain_counters("ipv4", saved),
            [
                ChainCounters {
                    family: "ipv4",
                    chain: "LOG_AND_ACCEPT".into(),
                    packets: 0,
                    bytes: 0
                },
                ChainCounters {
                    family: "ipv4",
                    chain: "LOG_AND_DROP".into(),
                    packets: 7,
                    bytes: 420
                },
            ]
        );
    }
}
