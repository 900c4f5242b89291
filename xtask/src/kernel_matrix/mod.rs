//! The kernel matrix (`cargo xtask test --kernel 6.1|6.12|all`): boots Debian's kernels under
//! qemu with virtme-ng, the host's root filesystem copy-on-write, and runs the kernel tests built
//! on the host inside each guest, with one or both iptables backends: the kernel set
//! (`kernel_set.rs`) by default, every test with `--all-tests`.

mod accel;
mod apt;
mod backend;
mod binaries;
mod child;
pub mod guest;
mod kernel_set;
mod kernels;
mod plan;
mod report;
mod results;
mod tools;
mod vng;

use std::{
    env,
    ffi::OsString,
    fs::{self, File},
    io::{BufRead as _, BufReader, Read, Write as _},
    path::Path,
    process::{Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use clap::Args;

use self::{
    accel::{Accel, AccelChoice},
    backend::{Backend, BackendChoice},
    child::Ending,
    kernel_set::Selection,
    kernels::{ImagePackage, KernelChoice, Series},
    plan::{Plan, TestBinary},
    report::{GuestRun, Row},
    tools::Tools,
};
use crate::{build, cmd, setup};

#[derive(Args)]
pub struct MatrixOptions {
    /// Only the kernel matrix, on these Debian kernels (6.1, 6.12, or all; comma-separated or
    /// repeated) with --backend; without it the matrix is 6.1 with both backends and 6.12 with nft.
    #[arg(long = "kernel", value_delimiter = ',', value_name = "SERIES")]
    pub kernels: Vec<KernelChoice>,
    /// Every kernel test in the guests, not just the kernel set (over 40 minutes a kernel under
    /// software emulation).
    #[arg(long)]
    all_tests: bool,
    /// iptables backend the guests' tests use with --kernel: nft, legacy, or both (one after the
    /// other in each guest; the second runs only the kernel set's tests that go through the rules).
    #[arg(long, value_enum, default_value = "nft", requires = "kernels")]
    backend: BackendChoice,
    /// How qemu runs the guests: auto uses KVM only where it can boot a stock kernel.
    #[arg(long, value_enum, default_value = "auto")]
    accel: AccelChoice,
    /// CPUs per guest.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
    cpus: u32,
    /// Memory per guest (qemu's -m: 2G, 3072M).
    #[arg(long, default_value = "2G")]
    memory: String,
    /// Test binaries run at once in a guest (each runs its tests on --test-threads threads).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=16))]
    jobs: u64,
    /// libtest's --test-threads for each test binary in a guest. One: with two binaries at once,
    /// as many fwlog starts as virtual CPUs (four at once on two, at host load 13, took a 6.1
    /// start past its 200 s).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=64))]
    test_threads: u64,
    /// How many times longer the tests' fixtures wait for fwlog (FWLOG_TEST_SLOWDOWN); default
    /// 1 under KVM and 10 under software emulation.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100))]
    slowdown: Option<u32>,
    /// Minutes a test binary may run in a guest before it is killed and its unfinished tests fail.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=600))]
    binary_timeout_mins: u64,
    /// Minutes a guest may run, boot included, before it is stopped and its unfinished tests fail.
    #[arg(long, default_value_t = 40, value_parser = clap::value_parser!(u64).range(1..=600))]
    guest_timeout_mins: u64,
}

/// The tests' patience under software emulation: fwlog's start (mostly the kernel's verifier)
/// takes this many times longer in a TCG guest than on the host.
const SLOWDOWN_UNDER_TCG: u32 = 10;

/// `cargo xtask setup --kernel …`.
#[derive(Args)]
pub struct SetupOptions {
    /// Also install what the kernel matrix needs for these kernels (6.1, 6.12, all): qemu,
    /// busybox-static, virtme-ng and the newest Debian image of each.
    #[arg(long = "kernel", value_delimiter = ',', value_name = "SERIES")]
    kernels: Vec<KernelChoice>,
}

/// Installs the matrix's tools and kernel images when `--kernel` asks for them.
pub fn setup(options: SetupOptions) -> Result<()> {
    if options.kernels.is_empty() {
        return Ok(());
    }
    let tools = tools::prepare(&build::target_dir()?)?;
    println!(
        "ok: qemu, busybox-static, virtme-ng ({})",
        tools.vng.display()
    );
    for series in kernels::expand(&options.kernels) {
        let image = kernels::ensure_image(series)?;
        println!(
            "ok: {series}: {} ({})",
            image.package,
            image.image().display()
        );
    }
    Ok(())
}

/// The timings that make up one matrix run, for its closing report.
struct Timings {
    setup: Duration,
    build: Duration,
    /// Per guest: release, boot, wall and qemu CPU seconds.
    guests: Vec<(String, f64, f64, f64)>,
}

/// What `cargo xtask test` runs in guests when no `--kernel` narrows it: Debian 12's 6.1 with
/// both iptables backends (its default nf_tables and legacy), and 6.12 with nf_tables. Measured
/// to fit CI's budget with the kernel set (README, "Tests").
pub const CI_MATRIX: [(Series, BackendChoice); 2] = [
    (Series::V6_1, BackendChoice::Both),
    (Series::V6_12, BackendChoice::Nft),
];

/// The guests to boot: `--kernel` with `--backend`, else [`CI_MATRIX`].
fn guests(options: &MatrixOptions) -> Vec<(Series, Vec<Backend>)> {
    if options.kernels.is_empty() {
        CI_MATRIX
            .iter()
            .map(|(series, backends)| (*series, backends.backends()))
            .collect()
    } else {
        kernels::expand(&options.kernels)
            .into_iter()
            .map(|series| (series, options.backend.backends()))
            .collect()
    }
}

/// The kernel matrix: `test_args` (a filter, `--exact`, `--skip NAME`) go to every test binary
/// instead of the kernel set; `--all-tests` runs every test.
pub fn run(options: &MatrixOptions, test_args: &[OsString]) -> Result<()> {
    let started = Instant::now();
    let test_args = test_args
        .iter()
        .map(|arg| {
            arg.to_str()
                .map(str::to_owned)
                .with_context(|| format!("test argument {arg:?} is not UTF-8"))
        })
        .collect::<Result<Vec<_>>>()?;
    let selection = if !test_args.is_empty() {
        Selection::Args(test_args)
    } else if options.all_tests {
        Selection::AllTests
    } else {
        Selection::KernelSet
    };
    setup::prepare(setup::Report::ChangesOnly)?;
    let target_dir = build::target_dir()?;
    let tools = tools::prepare(&target_dir)?;
    let guests = guests(options);
    let images = guests
        .iter()
        .map(|(series, backends)| Ok((*series, kernels::ensure_image(*series)?, backends)))
        .collect::<Result<Vec<(Series, ImagePackage, &Vec<Backend>)>>>()?;
    let setup_time = started.elapsed();

    let fwlog = build::build_fwlog(false)?;
    let binaries = binaries::build()?;
    let xtask = env::current_exe().context("cannot find xtask's own executable")?;
    let frozen = binaries::freeze(
        &binaries,
        &fwlog,
        &xtask,
        &target_dir.join("kernel-matrix").join("bin"),
    )?;
    let build_time = started.elapsed() - setup_time;

    let (accel, why) = accel::choose(options.accel);
    let slowdown = options.slowdown.unwrap_or(match accel {
        Accel::Kvm => 1,
        Accel::Tcg => SLOWDOWN_UNDER_TCG,
    });
    let mut planned = Vec::new();
    for (series, image, backends) in &images {
        let runs = kernel_set::plan(&frozen.binaries, backends, &selection, listed_tests)?;
        if runs.iter().all(|run| run.test_count() == 0) {
            bail!("no kernel test matches {selection:?}");
        }
        println!(
            "kernel matrix: {} ({}): {}",
            image.release,
            series,
            runs.iter()
                .map(|run| format!(
                    "{} {} tests in {} binaries",
                    run.backend,
                    run.test_count(),
                    run.binaries.len()
                ))
                .collect::<Vec<_>>()
                .join(", then ")
        );
        planned.push((*series, image, runs));
    }
    println!(
        "kernel matrix: {} with {accel} ({why}), {} CPUs and {} per guest, test waits ×{slowdown}",
        match selection {
            Selection::KernelSet => "the kernel set (xtask/src/kernel_matrix/kernel_set.rs)",
            Selection::AllTests => "every test",
            Selection::Args(_) => "the tests the arguments after -- choose",
        },
        options.cpus,
        options.memory,
    );
    child::catch_interrupts()?;

    let mut rows: Vec<Row> = Vec::new();
    let mut timings = Timings {
        setup: setup_time,
        build: build_time,
        guests: Vec::new(),
    };
    for (series, image, runs) in planned {
        if child::interrupted() {
            break;
        }
        let dir = target_dir.join("kernel-matrix").join(series.name());
        let plan = Plan {
            release: image.release.clone(),
            runs,
            fwlog: frozen.fwlog.clone(),
            test_threads: usize::try_from(options.test_threads).unwrap_or(1),
            jobs: usize::try_from(options.jobs).unwrap_or(1),
            slowdown,
            binary_timeout_secs: options.binary_timeout_mins * 60,
            results: dir.clone(),
        };
        let guest = boot(&tools, &frozen.xtask, image, &plan, accel, options)?;
        let guest_rows = report::rows(&guest, &plan.runs);
        println!("\n{}", report::render(&guest_rows));
        let boot_secs = guest.report.as_ref().map_or(0.0, |report| report.boot_secs);
        timings.guests.push((
            image.release.clone(),
            boot_secs,
            guest.wall_secs,
            guest.cpu_secs,
        ));
        rows.extend(guest_rows);
    }

    println!(
        "\nkernel matrix ({accel}, {} CPUs, {}):",
        options.cpus, options.memory
    );
    print!("{}", report::render(&rows));
    println!();
    print!("{}", report::render_verified(&rows));
    println!(
        "\ntime: setup {:.0} s, build {:.0} s",
        timings.setup.as_secs_f64(),
        timings.build.as_secs_f64()
    );
    for (release, boot_secs, wall_secs, cpu_secs) in &timings.guests {
        println!(
            "time: {release}: {wall_secs:.0} s in all, {boot_secs:.0} s of it booting; qemu used \
             {cpu_secs:.0} CPU s ({:.1} of the host's CPUs on average; {} virtual CPUs)",
            cpu_secs / wall_secs.max(1.0),
            options.cpus
        );
    }
    println!("time: {:.0} s in all", started.elapsed().as_secs_f64());
    println!("{}", report::closing_line(&rows));
    if child::interrupted() {
        bail!("interrupted: the guests were stopped; the matrix above is partial");
    }
    let expected_rows: usize = images.iter().map(|(_, _, backends)| backends.len()).sum();
    if rows.len() < expected_rows || !rows.iter().all(Row::ok) {
        bail!(
            "the kernel matrix failed: see the table above and the logs under {}",
            target_dir.join("kernel-matrix").display()
        );
    }
    Ok(())
}

/// The tests a binary would run with `test_args`, from its `--list` on the host.
fn listed_tests(binary: &TestBinary, test_args: &[String]) -> Result<Vec<String>> {
    let mut list = Command::new(&binary.path);
    list.args(test_args).args(["--list", "--format", "terse"]);
    let listed = cmd::output(&mut list)
        .with_context(|| format!("cannot list the tests of {}", binary.path.display()))?;
    Ok(results::listed_tests(&listed))
}

/// Boots one guest on `image`, runs `plan` in it, and collects what it left.
fn boot(
    tools: &Tools,
    xtask: &Path,
    image: &ImagePackage,
    plan: &Plan,
    accel: Accel,
    options: &MatrixOptions,
) -> Result<GuestRun> {
    let dir = &plan.results;
    if dir.exists() {
        fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let plan_path = dir.join(plan::PLAN_FILE);
    plan::write_json(&plan_path, plan)?;

    let guest = vng::Guest {
        image: &image.image(),
        cpus: options.cpus,
        memory: &options.memory,
        accel,
        shared_dir: dir,
        command: vec![
            xtask.into(),
            "kernel-guest".into(),
            plan_path.clone().into(),
        ],
    };
    let mut command = Command::new(&tools.vng);
    command
        .args(guest.vng_args()?)
        .env("PATH", &tools.path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    println!(
        "\n{}: booting ({}), logs in {}",
        image.release,
        cmd::describe(&command),
        dir.display()
    );
    let console_path = dir.join("console.log");
    let console = Arc::new(Mutex::new(
        File::create(&console_path)
            .with_context(|| format!("creating {}", console_path.display()))?,
    ));
    let started = Instant::now();
    let cpu_before = children_cpu_secs();
    let mut vng = child::spawn(&mut command)?;
    let tees: Vec<_> = [
        vng.stdout
            .take()
            .map(|out| Box::new(out) as Box<dyn Read + Send>),
        vng.stderr
            .take()
            .map(|err| Box::new(err) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    .map(|stream| {
        let console = Arc::clone(&console);
        let prefix = format!("[{}] ", image.release);
        std::thread::spawn(move || tee(stream, &prefix, &console))
    })
    .collect();
    let timeout = Duration::from_secs(options.guest_timeout_mins * 60);
    let ending = child::wait(&mut vng, timeout)?;
    for tee in tees {
        let _ = tee.join();
    }
    let wall_secs = started.elapsed().as_secs_f64();
    let cpu_secs = children_cpu_secs() - cpu_before;
    let ending = match ending {
        Ending::Exited(status) if status.success() => None,
        Ending::Exited(status) => Some(match status.code() {
            Some(code) => format!("vng exited {code}"),
            None => format!("vng ended by {status}"),
        }),
        Ending::TimedOut => Some(format!(
            "stopped after {} min (--guest-timeout-mins)",
            options.guest_timeout_mins
        )),
        Ending::Interrupted => Some("stopped: interrupted".to_owned()),
    };
    let report = plan::read_json(&dir.join(plan::REPORT_FILE)).ok();
    Ok(GuestRun {
        release: image.release.clone(),
        dir: dir.clone(),
        wall_secs,
        cpu_secs,
        ending,
        report,
    })
}

/// CPU seconds (user and system) of the children this process has waited for, theirs included:
/// after a guest, what its qemu used. On an idle machine a guest's wall time is about this over
/// the CPUs it can use (qemu runs each virtual CPU on a host thread); the difference is the wait
/// for a loaded machine's CPUs.
fn children_cpu_secs() -> f64 {
    use nix::sys::resource::{getrusage, UsageWho};
    getrusage(UsageWho::RUSAGE_CHILDREN).map_or(0.0, |usage| {
        let secs = |time: nix::sys::time::TimeVal| {
            time.tv_sec() as f64 + f64::from(i32::try_from(time.tv_usec()).unwrap_or(0)) / 1e6
        };
        secs(usage.user_time()) + secs(usage.system_time())
    })
}

/// Copies a guest's output line by line to the terminal (prefixed with its kernel) and to console.log.
fn tee(stream: Box<dyn Read + Send>, prefix: &str, console: &Mutex<File>) {
    for line in BufReader::new(stream).split(b'\n').map_while(Result::ok) {
        let line = String::from_utf8_lossy(&line);
        let line = line.trim_end_matches('\r');
        println!("{prefix}{line}");
        if let Ok(mut file) = console.lock() {
            let _ = writeln!(file, "{line}");
        }
    }
}
