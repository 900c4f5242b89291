//! Bench: one flood of new connection attempts against each logging setup (no logging, `-j LOG`,
//! NFLOG + ulogd, fwlog) on fwlog's chain layout, in namespaces of its own; reports what each
//! delivered and what it cost, as a markdown table and target/bench/bench-<timestamp>.json.
//! `--established` measures instead what watching costs traffic of connections already open.

mod bpf_stats;
mod established;
mod flood;
mod generator;
mod measure;
mod modes;
mod netns;
mod packet_socket;
mod report;
mod rounds;
mod summary;

use std::{
    env, fs, os::unix::process::CommandExt as _, process::Command, sync::atomic::Ordering,
    time::Instant,
};

use anyhow::{bail, Context as _, Result};
use clap::Args;
use nix::{
    fcntl::{Flock, FlockArg},
    unistd::geteuid,
};
use serde_json::json;

use self::{
    generator::{Proto, Rate},
    measure::Machine,
    modes::Mode,
    netns::BenchNet,
    report::Report,
};
use crate::{build, cmd, interrupt, setup};

#[derive(Args)]
pub struct Options {
    /// Flows per run; each is a new connection attempt from its own source address and port.
    #[arg(long, default_value_t = 200_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    flows: u64,
    /// Target rates in flows per second (e.g. 20k,100k,1M), or `max` for no pacing.
    #[arg(long, value_delimiter = ',', default_value = "25k,100k,max")]
    rates: Vec<Rate>,
    /// Logging setups to compare, in this order.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "none,floor,log,nflog,fwlog"
    )]
    modes: Vec<Mode>,
    /// Kinds of connection attempt.
    #[arg(long, value_delimiter = ',', default_value = "udp,tcp")]
    protos: Vec<Proto>,
    /// Frames per sendmmsg call.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..=1024))]
    batch: u16,
    /// Longest a flood may last, in seconds: it stops there even if flows are left.
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..=300))]
    max_send_secs: u64,
    /// Longest wait for a consumer to catch up after a flood, in seconds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=300))]
    max_drain_secs: u64,
    /// fwlog's ring buffer size (`fwlog watch --ring-size`).
    #[arg(long, default_value = "16M")]
    ring_size: String,
    /// Bench this fwlog binary instead of building the workspace's (e.g. to compare versions).
    #[arg(long, value_name = "PATH")]
    fwlog_bin: Option<std::path::PathBuf>,
    /// One more argument for `fwlog watch`; repeat for several (e.g. `--fwlog-arg=--events=verdict`).
    #[arg(long = "fwlog-arg", value_name = "ARG", allow_hyphen_values = true)]
    fwlog_args: Vec<String>,
    /// Keep each run's consumer output (fwlog JSON lines, ulogd files) in target/bench.
    #[arg(long)]
    keep_output: bool,
    /// Do not apt-get install ulogd2 when it is missing: skip the nflog mode instead.
    #[arg(long)]
    no_install: bool,
    /// Instead of the flood: time `fwlog summary` over a generated 1 GiB log.
    #[arg(long)]
    summary: bool,
    /// Flood threads, thread i on CPU i, each with its share of the flows and the rate (2: the
    /// receive path runs on two CPUs at once, and contention between them shows).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=64))]
    threads: u8,
    /// Rounds of every case, modes alternating; the report gives each ratio's median and range
    /// over them (default 1 for the flood, 5 with --established).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100))]
    rounds: Option<u32>,
    /// No extra fwlog run with the kernel's eBPF accounting on (program run time per packet).
    #[arg(long)]
    no_bpf_stats: bool,
    /// Instead of the flood: established traffic (bulk TCP with iperf3, a stream of small UDP
    /// datagrams of one flow) with no rules, with fwlog's chains and no logging, and with fwlog.
    #[arg(long)]
    established: bool,
    /// With --established: what to send.
    #[arg(long, value_delimiter = ',', default_value = "tcp-bulk,udp-stream")]
    workloads: Vec<established::Workload>,
    /// With --established: seconds each run sends for.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=120))]
    secs: u64,
}

/// Set by SIGINT/SIGTERM/SIGHUP: the flood and the waits stop, the guards clean up.
pub use crate::interrupt::INTERRUPTED;

/// `cargo xtask bench`.
pub fn run(options: Options) -> Result<()> {
    if options.summary {
        return summary::run();
    }
    if !geteuid().is_root() {
        bail!(
            "the bench creates network namespaces, installs iptables rules in them and sets \
             net.netfilter.nf_log_all_netns: run it as root (`sudo -E cargo xtask bench`)"
        );
    }
    run_optimised_build()?;
    let started = Instant::now();
    let date = jiff::Timestamp::now();
    // From here on, Ctrl-C ends the bench through its guards (a build or apt-get it runs dies
    // of it: its mode is skipped, and the loop below does not start).
    interrupt::catch()?;
    setup::prepare(setup::Report::ChangesOnly)?;
    let out_dir = build::target_dir()?.join("bench");
    fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let _one_bench = lock_the_machine()?;
    for name in netns::remove_leftovers()? {
        eprintln!("bench: deleted namespace {name}, left by a bench that was killed");
    }
    if let Some(value) = modes::kmsg::LogAllNetns::restore_after_crash()? {
        eprintln!(
            "bench: set net.netfilter.nf_log_all_netns back to {value}, left raised by a bench that was killed"
        );
    }
    if options.established {
        return established::run(&options, &out_dir, started, date);
    }
    let (tools, skipped) = flood::prepare_modes(&options);
    for (mode, reason) in &skipped {
        eprintln!("bench: skipping the {} mode: {reason}", mode.as_str());
    }
    let machine = Machine::describe()?;
    let rounds = options.rounds.unwrap_or(1);
    let plan = flood::plan(&options, rounds, &skipped, !options.no_bpf_stats);

    let net = BenchNet::create()?;
    let runs = flood::run_plan(&options, &plan, &net, &tools, &out_dir);
    drop(net);

    let report = Report {
        date: date.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        elapsed: started.elapsed(),
        machine,
        load_average_end: measure::load_average(),
        flows_per_run: options.flows,
        settings: settings_json(&options, tools.fwlog.as_deref()),
        runs,
        skipped,
    };
    print!("{}", report::markdown(&report));
    save_json(&out_dir, "bench", date, &report::to_json(&report))
}

/// Where a running bench holds its lock: the machine's, since benches share namespace names.
const LOCK_PATH: &str = "/run/fwlog-bench.lock";

/// Makes this the machine's only bench until the lock is dropped: a second one would take the
/// first's namespaces for a killed bench's leftovers, and share its files in target/bench.
fn lock_the_machine() -> Result<Flock<fs::File>> {
    let file = fs::File::create(LOCK_PATH).with_context(|| format!("creating {LOCK_PATH}"))?;
    Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| {
        if errno == nix::errno::Errno::EWOULDBLOCK {
            anyhow::anyhow!("another `cargo xtask bench` is running on this machine (it holds {LOCK_PATH}): wait for it")
        } else {
            anyhow::anyhow!("locking {LOCK_PATH}: {errno}")
        }
    })
}

/// Writes the report to OUT_DIR/PREFIX-<date>.json; fails afterwards if the bench was
/// interrupted, so that a partial report is not taken for a whole one.
fn save_json(
    out_dir: &std::path::Path,
    prefix: &str,
    date: jiff::Timestamp,
    report: &serde_json::Value,
) -> Result<()> {
    let json_path = out_dir.join(format!("{prefix}-{}.json", date.strftime("%Y%m%dT%H%M%SZ")));
    let json = serde_json::to_string_pretty(report).context("serialising the report")?;
    fs::write(&json_path, json + "\n")
        .with_context(|| format!("writing {}", json_path.display()))?;
    eprintln!("bench: wrote {}", json_path.display());
    if INTERRUPTED.load(Ordering::Relaxed) {
        bail!("interrupted: the report above is partial; namespaces and rules were removed");
    }
    Ok(())
}

/// The bench times its own threads (the flood, the /dev/kmsg reader): in the dev profile that
/// `cargo xtask` runs, they would measure unoptimised Rust (3x the reader's CPU, a slower flood).
/// So a dev build rebuilds xtask with `--release` and replaces itself with it; returns only in
/// an optimised build.
fn run_optimised_build() -> Result<()> {
    if !cfg!(debug_assertions) {
        return Ok(());
    }
    let mut build = cmd::cargo();
    build.args(["build", "--release", "--package", "xtask"]);
    cmd::run(&mut build).context("building an optimised xtask for the bench failed")?;
    let binary = build::target_dir()?.join("release").join("xtask");
    eprintln!("bench: running the optimised build {}", binary.display());
    let error = Command::new(&binary).args(env::args_os().skip(1)).exec();
    Err(error).with_context(|| format!("could not run {}", binary.display()))
}

/// `--fwlog-bin`, else a release build of the workspace's fwlog.
pub fn fwlog_binary(options: &Options) -> Result<std::path::PathBuf> {
    match &options.fwlog_bin {
        Some(binary) if binary.is_file() => binary
            .canonicalize()
            .with_context(|| format!("resolving {}", binary.display())),
        Some(binary) => bail!("--fwlog-bin {} is not a file", binary.display()),
        None => build::build_fwlog(true),
    }
}

fn settings_json(options: &Options, fwlog: Option<&std::path::Path>) -> serde_json::Value {
    let output_of = |command: &mut Command| {
        cmd::output(command)
            .map(|output| output.trim().to_owned())
            .ok()
    };
    let workspace = output_of(
        Command::new("git")
            .arg("-C")
            .arg(cmd::workspace_root())
            .args(["describe", "--always", "--dirty"]),
    );
    let fwlog_version = fwlog.and_then(|fwlog| output_of(Command::new(fwlog).arg("--version")));
    json!({
        "workspace_commit": workspace,
        "fwlog_version": fwlog_version,
        "flows_per_run": options.flows,
        "rates": options.rates.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "modes": options.modes.iter().map(|mode| mode.as_str()).collect::<Vec<_>>(),
        "protos": options.protos.iter().map(|proto| proto.as_str()).collect::<Vec<_>>(),
        "batch": options.batch,
        "threads": options.threads,
        "rounds": options.rounds,
        "bpf_stats_run": !options.no_bpf_stats,
        "max_send_secs": options.max_send_secs,
        "max_drain_secs": options.max_drain_secs,
        "fwlog_bin": options.fwlog_bin.as_ref().map(|binary| binary.display().to_string()),
        "fwlog_ring_size": options.ring_size,
        "fwlog_args": options.fwlog_args,
        "clock_ticks_per_sec": measure::ticks_per_second(),
        "log_prefix": modes::LOG_PREFIX_DROP,
        "nflog_group": modes::NFLOG_GROUP,
        "dest": format!("{}:{}", netns::HOST_ADDR, generator::DEST_PORT),
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;
    use crate::{Cli, Task};

    #[test]
    fn defaults_cover_every_mode_protocol_and_three_rates() {
        let Ok(Cli {
            task: Task::Bench(options),
        }) = Cli::try_parse_from(["xtask", "bench"])
        else {
            panic!("`xtask bench` did not parse");
        };
        assert_eq!(options.flows, 200_000);
        assert_eq!(
            options.modes,
            [Mode::None, Mode::Floor, Mode::Log, Mode::Nflog, Mode::Fwlog]
        );
        assert_eq!(options.protos, [Proto::Udp, Proto::Tcp]);
        assert_eq!(options.rates.len(), 3);
        assert_eq!(options.rates.last(), Some(&Rate::Max));
    }

    #[test]
    fn lists_and_rates_parse() {
        let parsed = Cli::try_parse_from([
            "xtask",
            "bench",
            "--flows",
            "1000",
            "--rates",
            "10k,max",
            "--modes",
            "fwlog",
            "--protos",
            "tcp",
            "--fwlog-arg=--events=verdict",
            "--fwlog-arg",
            "--stats=0",
        ]);
        let Ok(Cli {
            task: Task::Bench(options),
        }) = parsed
        else {
            panic!("the options did not parse");
        };
        assert_eq!(options.flows, 1000);
        assert_eq!(options.modes, [Mode::Fwlog]);
        assert_eq!(options.protos, [Proto::Tcp]);
        assert_eq!(options.rates[0].to_string(), "10k/s");
        assert_eq!(options.fwlog_args, ["--events=verdict", "--stats=0"]);
        assert!(Cli::try_parse_from(["xtask", "bench", "--modes", "syslog"]).is_err());
        assert!(Cli::try_parse_from(["xtask", "bench", "--flows", "0"]).is_err());
    }
}
