//! `cargo xtask bench --summary`: `fwlog summary` over a generated log of about 1 GiB (issue 7's
//! speed goal), timed with its peak memory, instead of the flood.

use std::{path::Path, process::Command, time::Instant};

use anyhow::{ensure, Context as _, Result};

use crate::{build, cmd};

/// Size of the generated log.
const LOG_BYTES: u64 = 1 << 30;

pub fn run() -> Result<()> {
    let fwlog = build::build_fwlog(true)?;
    let dir = build::target_dir()?.join("bench");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let log = dir.join("summary-1g.jsonl");
    if std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0) < LOG_BYTES {
        generate(&log)?;
    }
    let bytes = std::fs::metadata(&log)?.len();
    let started = Instant::now();
    let child = Command::new(&fwlog)
        .args(["summary", "--json"])
        .arg(&log)
        .stdout(std::process::Stdio::null())
        .spawn()
        .with_context(|| format!("running {} summary", fwlog.display()))?;
    let (status, peak_kib) = wait_with_peak_rss(child.id() as i32)?;
    let seconds = started.elapsed().as_secs_f64();
    ensure!(status == 0, "fwlog summary failed (wait status {status})");
    println!(
        "summary: {:.2} GiB of JSON lines in {seconds:.2} s ({:.0} MB/s), peak RSS {:.1} MiB",
        bytes as f64 / (1u64 << 30) as f64,
        bytes as f64 / 1e6 / seconds,
        peak_kib as f64 / 1024.0
    );
    Ok(())
}

/// Writes the log with fwlog's own generator (an ignored test of the summary module).
fn generate(log: &Path) -> Result<()> {
    eprintln!("bench: generating {} (once)", log.display());
    let mut test = cmd::cargo();
    test.args([
        "test",
        "--release",
        "-p",
        "fwlog",
        "--",
        "--ignored",
        "--exact",
        "summary::bench::generate_benchmark_log",
    ])
    .env("FWLOG_BENCH_LOG", log)
    .env("FWLOG_BENCH_BYTES", LOG_BYTES.to_string());
    cmd::run(&mut test).context("generating the summary log")
}

/// Waits for `pid` and returns its wait status and its own peak resident set (wait4(2)).
fn wait_with_peak_rss(pid: i32) -> Result<(i32, i64)> {
    let mut status = 0;
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: wait4 on our own child, with out-pointers to live locals.
    let waited = unsafe { libc::wait4(pid, &mut status, 0, usage.as_mut_ptr()) };
    ensure!(waited == pid, "wait4: {}", std::io::Error::last_os_error());
    // SAFETY: filled by the successful wait4 above.
    Ok((status, unsafe { usage.assume_init() }.ru_maxrss))
}
