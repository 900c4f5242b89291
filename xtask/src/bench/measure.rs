//! What the bench reads from the kernel: CPU time (/proc/stat, /proc/PID/stat), the chain's
//! packet counter (iptables-save -c), conntrack's entry count, and the machine it runs on.

use std::{fs, path::Path};

use anyhow::{Context as _, Result};
use serde_json::{json, Value};

use super::netns::NetNsGuard;
use crate::cmd;

/// The chain that drops every flood packet, in every mode.
pub const DROP_CHAIN: &str = "LOG_AND_DROP";

/// Machine-wide CPU time from the `cpu` line of /proc/stat, in clock ticks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SystemCpu {
    pub user: u64,
    pub system: u64,
    pub softirq: u64,
}

impl SystemCpu {
    pub fn read() -> Result<Self> {
        let stat = fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
        parse_system_cpu(&stat).context("/proc/stat has no `cpu` line of the usual form")
    }

    pub fn since(self, earlier: SystemCpu) -> SystemCpu {
        SystemCpu {
            user: self.user.saturating_sub(earlier.user),
            system: self.system.saturating_sub(earlier.system),
            softirq: self.softirq.saturating_sub(earlier.softirq),
        }
    }
}

/// `cpu  user nice system idle iowait irq softirq steal ...` (all CPUs added up).
pub fn parse_system_cpu(stat: &str) -> Option<SystemCpu> {
    let line = stat.lines().find(|line| line.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|field| field.parse().ok())
        .collect::<Option<_>>()?;
    Some(SystemCpu {
        user: *fields.first()? + *fields.get(1)?,
        system: *fields.get(2)?,
        softirq: *fields.get(6)?,
    })
}

/// What a consumer used: a process (/proc/PID) or a thread (/proc/self/task/TID).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TaskUsage {
    /// User + system time, in clock ticks.
    pub cpu_ticks: u64,
    /// Voluntary context switches: how often it went to sleep waiting for input.
    pub sleeps: u64,
}

impl TaskUsage {
    pub fn read(proc_dir: &Path) -> Result<Self> {
        let status_path = proc_dir.join("status");
        let status = fs::read_to_string(&status_path)
            .with_context(|| format!("reading {}", status_path.display()))?;
        Ok(TaskUsage {
            cpu_ticks: task_cpu_ticks(&proc_dir.join("stat"))?,
            sleeps: parse_voluntary_switches(&status).with_context(|| {
                format!("no voluntary_ctxt_switches in {}", status_path.display())
            })?,
        })
    }

    pub fn since(self, earlier: TaskUsage) -> TaskUsage {
        TaskUsage {
            cpu_ticks: self.cpu_ticks.saturating_sub(earlier.cpu_ticks),
            sleeps: self.sleeps.saturating_sub(earlier.sleeps),
        }
    }
}

/// `voluntary_ctxt_switches:\t123` in /proc/PID/status.
pub fn parse_voluntary_switches(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("voluntary_ctxt_switches:"))?
        .trim()
        .parse()
        .ok()
}

/// User + system CPU ticks of a process (/proc/PID/stat) or thread (/proc/self/task/TID/stat).
pub fn task_cpu_ticks(stat_path: &Path) -> Result<u64> {
    let stat = fs::read_to_string(stat_path)
        .with_context(|| format!("reading {}", stat_path.display()))?;
    parse_task_cpu(&stat)
        .with_context(|| format!("{} is not of the usual form", stat_path.display()))
}

/// utime (field 14) + stime (field 15); the command name (field 2) may hold spaces and ')'.
pub fn parse_task_cpu(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // fields[0] is field 3 (state), so field N is fields[N - 3].
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Clock ticks per second, the unit of /proc/stat and /proc/PID/stat.
pub fn ticks_per_second() -> u64 {
    // SAFETY: sysconf only reads a constant of the C library.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).ok().filter(|&t| t > 0).unwrap_or(100)
}

/// Packets dropped so far by `LOG_AND_DROP` in `host` (by its final `-j DROP` rule, or, in
/// fwlog's chain, by the logging rules that drop themselves).
pub fn chain_packets(host: &NetNsGuard) -> Result<u64> {
    let saved = host.output("iptables-save", &["-c", "-t", "filter"])?;
    parse_chain_drop_packets(&saved, DROP_CHAIN).with_context(|| {
        format!(
            "no `-A {DROP_CHAIN} ... -j DROP` rule with counters in {}'s iptables-save -c",
            host.name()
        )
    })
}

/// The packets of every `-j DROP` rule of `chain` in `iptables-save -c` output, added up (a
/// packet is dropped by one of them); `None` when the chain has no such rule.
pub fn parse_chain_drop_packets(saved: &str, chain: &str) -> Option<u64> {
    let append = format!("-A {chain} ");
    saved
        .lines()
        .filter_map(|line| {
            let (counters, rule) = line.strip_prefix('[')?.split_once("] ")?;
            let is_drop = rule.starts_with(&append) && rule.trim_end().ends_with("-j DROP");
            let (packets, _bytes) = counters.split_once(':')?;
            is_drop.then(|| packets.parse::<u64>().ok()).flatten()
        })
        .reduce(|total, packets| total + packets)
}

/// conntrack's entry count in `host` (dropped NEW packets should leave none).
pub fn conntrack_entries(host: &NetNsGuard) -> Result<u64> {
    let count = host.output("cat", &["/proc/sys/net/netfilter/nf_conntrack_count"])?;
    count
        .trim()
        .parse()
        .with_context(|| format!("nf_conntrack_count is {count:?}"))
}

/// What the numbers were measured on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Machine {
    pub kernel: String,
    pub cpus: usize,
    pub cpu_model: String,
    pub memory_kib: u64,
    pub iptables: String,
    /// /proc/loadavg when the bench started: other work on the machine skews the numbers.
    pub load_average: String,
}

#[cfg(test)]
impl Machine {
    /// A fixed machine for the reports' tests.
    pub fn example() -> Self {
        Machine {
            kernel: "6.18.44".into(),
            cpus: 2,
            cpu_model: "Test CPU".into(),
            memory_kib: 24 * 1024 * 1024,
            iptables: "iptables v1.8.9 (nf_tables)".into(),
            load_average: "0.10 0.20 0.30".into(),
        }
    }
}

impl Machine {
    pub fn describe() -> Result<Self> {
        let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
            .context("reading /proc/sys/kernel/osrelease")?;
        let meminfo = fs::read_to_string("/proc/meminfo").context("reading /proc/meminfo")?;
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let iptables = cmd::output(std::process::Command::new("iptables").arg("--version"))
            .unwrap_or_else(|error| format!("unknown ({error:#})"));
        Ok(Machine {
            kernel: kernel.trim().to_owned(),
            cpus: std::thread::available_parallelism().map_or(1, usize::from),
            cpu_model: cpuinfo
                .lines()
                .find_map(|line| line.strip_prefix("model name"))
                .and_then(|rest| rest.split_once(':'))
                .map_or_else(
                    || "unknown".to_owned(),
                    |(_, model)| model.trim().to_owned(),
                ),
            memory_kib: parse_mem_total_kib(&meminfo).unwrap_or(0),
            iptables: iptables.trim().to_owned(),
            load_average: load_average(),
        })
    }

    /// One line for the report's header.
    pub fn summary(&self) -> String {
        format!(
            "Linux {}, {} CPUs ({}), {:.1} GiB RAM, {}; load average at start {}",
            self.kernel,
            self.cpus,
            self.cpu_model,
            self.memory_kib as f64 / (1024.0 * 1024.0),
            self.iptables,
            self.load_average
        )
    }

    pub fn to_json(&self) -> Value {
        json!({
            "kernel": self.kernel,
            "cpus": self.cpus,
            "cpu_model": self.cpu_model,
            "memory_kib": self.memory_kib,
            "iptables": self.iptables,
            "load_average": self.load_average,
        })
    }
}

/// The 1, 5 and 15-minute load averages (/proc/loadavg): other work on the machine.
pub fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|load| {
            load.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

/// `MemTotal:       24567890 kB`.
fn parse_mem_total_kib(meminfo: &str) -> Option<u64> {
    meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_cpu_from_proc_stat() {
        let stat = "cpu  58106 3 11402 431780 1131 0 141 34 0 0\ncpu0 27417 0 5245 218341 282 0 39 14 0 0\n";
        assert_eq!(
            parse_system_cpu(stat),
            Some(SystemCpu {
                user: 58109,
                system: 11402,
                softirq: 141
            })
        );
        assert_eq!(parse_system_cpu("cpu0 1 2 3\n"), None);
    }

    #[test]
    fn task_cpu_survives_odd_command_names() {
        let stat =
            "4242 (ulogd (x) y) S 1 4242 4242 0 -1 4194560 500 0 0 0 17 5 0 0 20 0 1 0 100 0 0";
        assert_eq!(parse_task_cpu(stat), Some(22));
        assert_eq!(parse_task_cpu("1 (short) S 1"), None);
    }

    #[test]
    fn sleeps_from_proc_status() {
        let status =
            "Name:\tfwlog\nvoluntary_ctxt_switches:\t4521\nnonvoluntary_ctxt_switches:\t3\n";
        assert_eq!(parse_voluntary_switches(status), Some(4521));
        assert_eq!(parse_voluntary_switches("Name:\tx\n"), None);
    }

    #[test]
    fn drop_counter_of_the_chain() {
        let saved = "\
# Generated by iptables-save v1.8.9 (nf_tables)
*filter
:INPUT ACCEPT [10:600]
:LOG_AND_DROP - [0:0]
[5:300] -A INPUT -i fwbh1 ! -p tcp -m conntrack --ctstate NEW,RELATED -j LOG_AND_DROP
[5:300] -A LOG_AND_DROP -m conntrack --ctstate NEW,RELATED -j LOG --log-prefix \"[OY-D]:\" --log-level 7
[1000:60000] -A LOG_AND_DROP -m conntrack --ctstate NEW -m bpf --object-pinned /sys/fs/bpf/fwlog/1/verdict_drop_new -j DROP
[123456:7890] -A LOG_AND_DROP -m comment --comment fwlog -j DROP
[9:9] -A LOG_AND_REJECT -j DROP
COMMIT
";
        assert_eq!(parse_chain_drop_packets(saved, DROP_CHAIN), Some(124_456));
        assert_eq!(
            parse_chain_drop_packets("*filter\nCOMMIT\n", DROP_CHAIN),
            None
        );
    }

    #[test]
    fn memory_from_meminfo() {
        assert_eq!(
            parse_mem_total_kib("MemTotal:       24567890 kB\nMemFree: 1 kB\n"),
            Some(24_567_890)
        );
        assert_eq!(parse_mem_total_kib("MemFree: 1 kB\n"), None);
    }
}
