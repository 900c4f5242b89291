//! The kernel's own accounting of eBPF programs (run count and run time), for the programs a
//! process holds: CPU per packet that does not move with the host's noise as rates do.
//!
//! Accounting is switched on with the `BPF_ENABLE_STATS` command rather than by writing
//! `kernel.bpf_stats_enabled`: both raise the same static key, but the command's fd is counted
//! and the key drops when the last holder goes (kernel/bpf/syscall.c
//! `bpf_enable_runtime_stats`), so the setting is restored even if the bench is killed, and a
//! bench ending never switches off the accounting someone else turned on. Accounting costs two
//! clock reads per program run, so runs that measure rates leave it off.

use std::{
    collections::{BTreeMap, HashMap},
    fs,
    os::fd::{FromRawFd as _, OwnedFd},
    process::Command,
};

use anyhow::{Context as _, Result};
use serde_json::{json, Value};

use crate::cmd;

/// `enum bpf_cmd` value of BPF_ENABLE_STATS (include/uapi/linux/bpf.h).
const BPF_ENABLE_STATS: libc::c_long = 32;
/// `enum bpf_stats_type`: BPF_STATS_RUN_TIME.
const BPF_STATS_RUN_TIME: u32 = 0;

/// Run-time accounting on while held.
pub struct StatsEnabled {
    _fd: OwnedFd,
}

impl StatsEnabled {
    pub fn enable() -> Result<Self> {
        // `union bpf_attr` for this command: `struct { __u32 type; } enable_stats`, the rest zero.
        let attr: [u32; 2] = [BPF_STATS_RUN_TIME, 0];
        // SAFETY: the attribute points at a live, fully initialised buffer of the given size,
        // which the kernel only reads.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_ENABLE_STATS,
                attr.as_ptr(),
                std::mem::size_of_val(&attr) as libc::c_uint,
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error())
                .context("switching on the kernel's eBPF run-time accounting (BPF_ENABLE_STATS)");
        }
        let fd = i32::try_from(fd).context("BPF_ENABLE_STATS returned an fd out of range")?;
        // SAFETY: a fresh descriptor the kernel just handed us, owned by nothing else.
        Ok(StatsEnabled {
            _fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }
}

/// One program's counters at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgramCounters {
    pub id: u32,
    pub run_time_ns: u64,
    pub run_cnt: u64,
}

/// A program's counters in a process's `/proc/PID/fdinfo/N` (`prog_id:`, `run_time_ns:`,
/// `run_cnt:`); `None` for fds that are not eBPF programs (a link's fdinfo names its program's
/// id too, but has no counters).
pub fn parse_fdinfo(text: &str) -> Option<ProgramCounters> {
    let field = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|value| value.trim().parse::<u64>().ok())
    };
    Some(ProgramCounters {
        id: u32::try_from(field("prog_id:")?).ok()?,
        run_time_ns: field("run_time_ns:")?,
        run_cnt: field("run_cnt:")?,
    })
}

/// The counters of every program process `pid` holds an fd of, by program id.
pub fn held_programs(pid: u32) -> Result<BTreeMap<u32, ProgramCounters>> {
    let dir = format!("/proc/{pid}/fdinfo");
    let mut programs = BTreeMap::new();
    for entry in fs::read_dir(&dir).with_context(|| format!("reading {dir}"))? {
        let entry = entry.with_context(|| format!("reading {dir}"))?;
        // An fd closed meanwhile is not an error.
        let Ok(text) = fs::read_to_string(entry.path()) else {
            continue;
        };
        if let Some(counters) = parse_fdinfo(&text) {
            programs.insert(counters.id, counters);
        }
    }
    Ok(programs)
}

/// Program id → name, from `bpftool prog show --json` (bpftool restores names longer than the
/// kernel's 15 characters from BTF).
pub fn program_names() -> Result<HashMap<u32, String>> {
    let text = cmd::output(Command::new("bpftool").args(["prog", "show", "--json"]))
        .context("listing eBPF programs with bpftool")?;
    parse_program_names(&text).context("bpftool's program list is not the JSON array expected")
}

pub fn parse_program_names(text: &str) -> Option<HashMap<u32, String>> {
    let list: Value = serde_json::from_str(text).ok()?;
    Some(
        list.as_array()?
            .iter()
            .filter_map(|program| {
                let id = u32::try_from(program["id"].as_u64()?).ok()?;
                Some((id, program["name"].as_str()?.to_owned()))
            })
            .collect(),
    )
}

/// What one program did between two snapshots.
#[derive(Clone, Debug, PartialEq)]
pub struct ProgramRuns {
    pub name: String,
    pub runs: u64,
    pub run_time_ns: u64,
}

impl ProgramRuns {
    pub fn ns_per_run(&self) -> f64 {
        if self.runs == 0 {
            0.0
        } else {
            self.run_time_ns as f64 / self.runs as f64
        }
    }

    pub fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "runs": self.runs,
            "run_time_ns": self.run_time_ns,
            "ns_per_run": self.ns_per_run(),
        })
    }
}

/// The programs that ran between `before` and `after`, by name (programs of the same name, as
/// one per interface, added up).
pub fn runs_between(
    before: &BTreeMap<u32, ProgramCounters>,
    after: &BTreeMap<u32, ProgramCounters>,
    names: &HashMap<u32, String>,
) -> Vec<ProgramRuns> {
    let mut by_name: BTreeMap<String, ProgramRuns> = BTreeMap::new();
    for (id, end) in after {
        let (time0, count0) = before
            .get(id)
            .map_or((0, 0), |start| (start.run_time_ns, start.run_cnt));
        let runs = end.run_cnt.saturating_sub(count0);
        if runs == 0 {
            continue;
        }
        let name = names
            .get(id)
            .cloned()
            .unwrap_or_else(|| format!("prog {id}"));
        let entry = by_name.entry(name.clone()).or_insert(ProgramRuns {
            name,
            runs: 0,
            run_time_ns: 0,
        });
        entry.runs += runs;
        entry.run_time_ns += end.run_time_ns.saturating_sub(time0);
    }
    by_name.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FDINFO: &str = "pos:\t0\nflags:\t02000002\nmnt_id:\t15\nino:\t1057\nprog_type:\t3\n\
                          prog_jited:\t1\nprog_tag:\t3b185187f1855c4c\nmemlock:\t4096\n\
                          prog_id:\t412\nrun_time_ns:\t123456\nrun_cnt:\t1000\n\
                          recursion_misses:\t0\nverified_insns:\t136000\n";

    #[test]
    fn program_counters_from_fdinfo() {
        assert_eq!(
            parse_fdinfo(FDINFO),
            Some(ProgramCounters {
                id: 412,
                run_time_ns: 123_456,
                run_cnt: 1000
            })
        );
        let map = "pos:\t0\nflags:\t02000002\nmap_type:\t27\nmap_id:\t9\n";
        assert_eq!(parse_fdinfo(map), None);
        let link = "pos:\t0\nflags:\t02000000\nlink_type:\ttcx\nlink_id:\t5\nprog_tag:\tx\n\
                    prog_id:\t412\nifindex:\t3\nattach_type:\t46\n";
        assert_eq!(parse_fdinfo(link), None);
        assert_eq!(parse_fdinfo("pos:\t0\n"), None);
    }

    #[test]
    fn names_from_bpftool() {
        let text = r#"[{"id":412,"type":"sched_cls","name":"flow_ingress","tag":"x"},
                      {"id":413,"type":"socket_filter","name":"verdict_drop_new"},
                      {"id":7,"type":"cgroup_skb"}]"#;
        let names = parse_program_names(text).expect("a JSON array");
        assert_eq!(names.len(), 2);
        assert_eq!(names[&413], "verdict_drop_new");
        assert_eq!(parse_program_names("{}"), None);
    }

    #[test]
    fn runs_are_differences_added_up_by_name() {
        let snapshot = |entries: &[(u32, u64, u64)]| -> BTreeMap<u32, ProgramCounters> {
            entries
                .iter()
                .map(|&(id, run_time_ns, run_cnt)| {
                    (
                        id,
                        ProgramCounters {
                            id,
                            run_time_ns,
                            run_cnt,
                        },
                    )
                })
                .collect()
        };
        let before = snapshot(&[(1, 1_000, 10), (2, 500, 5), (3, 70, 1)]);
        let after = snapshot(&[(1, 21_000, 110), (2, 500, 5), (3, 170, 2), (4, 900, 3)]);
        let names: HashMap<u32, String> = [(1, "flow_ingress"), (3, "flow_ingress"), (2, "x")]
            .into_iter()
            .map(|(id, name)| (id, name.to_owned()))
            .collect();
        let runs = runs_between(&before, &after, &names);
        assert_eq!(
            runs,
            [
                ProgramRuns {
                    name: "flow_ingress".into(),
                    runs: 101,
                    run_time_ns: 20_100
                },
                ProgramRuns {
                    name: "prog 4".into(),
                    runs: 3,
                    run_time_ns: 900
                },
            ]
        );
        assert!((runs[0].ns_per_run() - 199.0).abs() < 0.01);
        assert_eq!(runs[1].to_json()["ns_per_run"], 300.0);
    }
}
