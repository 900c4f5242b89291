//! Inside a guest (`xtask kernel-guest PLAN`): checks it is the kernel and the isolated machine the
//! host meant, mounts bpffs, selects each iptables backend through PATH, runs the test binaries
//! and writes their logs and a report into the shared directory. Its exit status is vng's.

use std::{
    fs::{self, File},
    path::{Path, PathBuf},
    process::{Command, ExitCode, Stdio},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Mutex,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use clap::Args;
use nix::{
    mount::{mount, MsFlags},
    sys::statfs::{statfs, BPF_FS_MAGIC},
};

use super::{
    backend::Backend,
    child::{self, Ending},
    plan::{self, BackendPlan, BinaryRun, GuestReport, Plan, Selected},
};

/// PATH in the guest after the backend's directory: where Debian keeps ip, nsenter, bpftool, ….
const SYSTEM_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Args)]
pub struct Options {
    /// The plan the host wrote into the shared directory.
    plan: PathBuf,
}

/// Exit status when every test binary passed, when some failed, when the guest could not test.
const PASSED: u8 = 0;
const FAILED: u8 = 1;
const NOT_TESTED: u8 = 2;

/// `xtask kernel-guest PLAN`.
pub fn run(options: Options) -> Result<ExitCode> {
    let plan: Plan = plan::read_json(&options.plan)?;
    let report_path = plan.results.join(plan::REPORT_FILE);
    let mut report = GuestReport {
        release: release()?,
        boot_secs: uptime_secs().unwrap_or(0.0),
        ..GuestReport::default()
    };
    println!(
        "guest: {} up after {:.0} s",
        report.release, report.boot_secs
    );
    if let Err(error) = prepare(&plan, &report.release) {
        println!("guest: cannot test: {error:#}");
        report.setup_error = Some(format!("{error:#}"));
        plan::write_json(&report_path, &report)?;
        return Ok(ExitCode::from(NOT_TESTED));
    }
    plan::write_json(&report_path, &report)?;

    let report = Mutex::new(report);
    for backend_plan in &plan.runs {
        if child::interrupted() {
            break;
        }
        let backend = backend_plan.backend;
        let started = Instant::now();
        let outcome = run_backend(&plan, backend_plan, &report, &report_path, started);
        let mut report = report
            .lock()
            .map_err(|_| anyhow::anyhow!("a runner panicked"))?;
        record_backend_time(&mut report, backend, started);
        if let Err(error) = outcome {
            println!("guest: {backend}: {error:#}");
            report.warnings.push(format!("{backend}: {error:#}"));
        }
    }
    let mut report = report
        .into_inner()
        .map_err(|_| anyhow::anyhow!("a runner panicked"))?;
    report.modules = loaded_modules();
    report.finished = !child::interrupted();
    plan::write_json(&report_path, &report)?;
    let all_passed = report.finished
        && report.runs.len()
            == plan
                .runs
                .iter()
                .map(|one| one.binaries.len())
                .sum::<usize>()
        && report.runs.iter().all(|run| run.exit_code == Some(0));
    Ok(ExitCode::from(if all_passed { PASSED } else { FAILED }))
}

/// The checks and setup before any test: the right kernel, no way out to the host's network, bpffs.
fn prepare(plan: &Plan, release: &str) -> Result<()> {
    if release != plan.release {
        bail!("the guest runs {release}, the host meant {}", plan.release);
    }
    // vng gives the guest no network device without --network; a guest that has one could
    // send the tests' traffic out, so it refuses.
    let mut devices = Vec::new();
    for entry in fs::read_dir("/sys/class/net").context("listing /sys/class/net")? {
        let name = entry.context("reading /sys/class/net")?.file_name();
        if name != "lo" {
            devices.push(name.to_string_lossy().into_owned());
        }
    }
    if !devices.is_empty() {
        bail!(
            "the guest has network devices besides lo ({}); it must not reach any network",
            devices.join(", ")
        );
    }
    mount_bpffs()?;
    child::catch_interrupts()
}

fn mount_bpffs() -> Result<()> {
    const BPFFS: &str = "/sys/fs/bpf";
    let mounted = statfs(BPFFS)
        .with_context(|| format!("statfs {BPFFS}: does the guest kernel have BPF?"))?
        .filesystem_type()
        == BPF_FS_MAGIC;
    if !mounted {
        mount(
            Some("bpf"),
            BPFFS,
            Some("bpf"),
            MsFlags::empty(),
            None::<&str>,
        )
        .with_context(|| format!("mounting bpffs on {BPFFS}"))?;
    }
    Ok(())
}

/// One backend's binaries, `plan.jobs` at a time.
fn run_backend(
    plan: &Plan,
    backend_plan: &BackendPlan,
    report: &Mutex<GuestReport>,
    report_path: &Path,
    started: Instant,
) -> Result<()> {
    let backend = backend_plan.backend;
    // /tmp is copy-on-write in the guest: nothing lands in the host's /tmp.
    let programs = PathBuf::from(format!("/tmp/fwlog-iptables-{backend}"));
    backend.link_programs(&programs)?;
    let path = format!("{}:{SYSTEM_PATH}", programs.display());
    let version = Command::new("iptables")
        .arg("-V")
        .env("PATH", &path)
        .output()
        .context("running iptables -V")?;
    let version = String::from_utf8_lossy(&version.stdout).trim().to_owned();
    if !version.contains(backend.version_tag()) {
        bail!("iptables through {} says {version:?}", programs.display());
    }
    let logs = plan.results.join(backend.to_string());
    fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    println!("guest: {backend}: {version}");

    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| -> Result<()> {
        let workers: Vec<_> = (0..plan.jobs.max(1))
            .map(|_| {
                scope.spawn(|| -> Result<()> {
                    loop {
                        let index = next.fetch_add(1, Ordering::Relaxed);
                        let Some(selected) = backend_plan.binaries.get(index) else {
                            return Ok(());
                        };
                        if child::interrupted() {
                            return Ok(());
                        }
                        let run = run_binary(plan, backend, selected, &path, &logs)?;
                        let mut report = report
                            .lock()
                            .map_err(|_| anyhow::anyhow!("a runner panicked"))?;
                        report.runs.push(run);
                        record_backend_time(&mut report, backend, started);
                        plan::write_json(report_path, &*report)?;
                    }
                })
            })
            .collect();
        for worker in workers {
            worker
                .join()
                .map_err(|_| anyhow::anyhow!("a test runner thread panicked"))??;
        }
        Ok(())
    })
}

/// The backend's time so far, kept current so that a guest stopped half-way still says it.
fn record_backend_time(report: &mut GuestReport, backend: Backend, started: Instant) {
    let secs = started.elapsed().as_secs_f64();
    match report
        .backend_secs
        .iter_mut()
        .find(|(one, _)| *one == backend)
    {
        Some(entry) => entry.1 = secs,
        None => report.backend_secs.push((backend, secs)),
    }
}

fn run_binary(
    plan: &Plan,
    backend: Backend,
    selected: &Selected,
    path: &str,
    logs: &Path,
) -> Result<BinaryRun> {
    let binary = &selected.binary;
    let log_path = logs.join(format!("{}.log", binary.name));
    let log =
        File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
    let mut command = Command::new(&binary.path);
    command
        .arg(format!("--test-threads={}", plan.test_threads))
        // Passing tests' stdout too: the verifier budget test prints each program's count.
        .arg("--show-output")
        .args(&selected.args)
        .env("PATH", path)
        .env("FWLOG_BIN", &plan.fwlog)
        .env("FWLOG_TEST_SLOWDOWN", plan.slowdown.to_string())
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::null())
        .stdout(log.try_clone().context("duplicating a log file")?)
        .stderr(log);
    println!("guest: {backend}: {} started", binary.name);
    let started = Instant::now();
    let mut test = child::spawn(&mut command)?;
    let ending = child::wait(&mut test, Duration::from_secs(plan.binary_timeout_secs))?;
    let secs = started.elapsed().as_secs_f64();
    let (exit_code, timed_out) = match ending {
        Ending::Exited(status) => (status.code(), false),
        Ending::TimedOut => (None, true),
        Ending::Interrupted => (None, false),
    };
    let how = match (exit_code, timed_out) {
        (Some(0), _) => "passed".to_owned(),
        (Some(code), _) => format!("failed (exit {code})"),
        (None, true) => format!("killed after {} s", plan.binary_timeout_secs),
        (None, false) => "killed".to_owned(),
    };
    println!("guest: {backend}: {} {how} in {secs:.0} s", binary.name);
    Ok(BinaryRun {
        backend,
        name: binary.name.clone(),
        exit_code,
        timed_out,
        secs,
        log: log_path
            .strip_prefix(&plan.results)
            .unwrap_or(&log_path)
            .to_path_buf(),
    })
}

fn release() -> Result<String> {
    Ok(nix::sys::utsname::uname()
        .context("uname")?
        .release()
        .to_string_lossy()
        .into_owned())
}

/// Seconds since the guest kernel started.
fn uptime_secs() -> Option<f64> {
    fs::read_to_string("/proc/uptime")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The modules loaded now, from /proc/modules.
fn loaded_modules() -> Vec<String> {
    let modules = fs::read_to_string("/proc/modules").unwrap_or_default();
    let mut names: Vec<String> = modules
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect();
    names.sort();
    names
}
