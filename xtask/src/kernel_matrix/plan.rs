//! What the host asks a guest to run (`plan.json`) and what the guest says it ran (`report.json`),
//! both in the directory the guest shares with the host.

use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result};
use serde::{Deserialize, Serialize};

use super::backend::Backend;

/// The plan's file name in the shared directory.
pub const PLAN_FILE: &str = "plan.json";
/// The guest's report's file name in the shared directory.
pub const REPORT_FILE: &str = "report.json";

/// One kernel test binary, as cargo built it on the host (the guest sees the host's files).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestBinary {
    /// The `[[test]]` target's name: `watch`, `flows`, …
    pub name: String,
    /// Its absolute path under the target directory.
    pub path: PathBuf,
}

/// A test binary with the arguments that choose its tests (`--exact NAME…`, a filter, none).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Selected {
    pub binary: TestBinary,
    pub args: Vec<String>,
    /// The tests it lists with `args` on the host: what its run must report.
    pub tests: Vec<String>,
}

/// One iptables backend and what runs with it, `jobs` binaries at a time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendPlan {
    pub backend: Backend,
    pub binaries: Vec<Selected>,
}

impl BackendPlan {
    /// The tests this backend's runs must report.
    pub fn test_count(&self) -> usize {
        self.binaries
            .iter()
            .map(|selected| selected.tests.len())
            .sum()
    }
}

/// Everything the guest needs to know, written by the host before it boots the guest.
#[derive(Debug, Serialize, Deserialize)]
pub struct Plan {
    /// `uname -r` the guest must be running: a guest on another kernel refuses to test.
    pub release: String,
    /// Each iptables backend in turn, with the binaries to run with it.
    pub runs: Vec<BackendPlan>,
    /// The fwlog binary under test (`FWLOG_BIN`).
    pub fwlog: PathBuf,
    /// `--test-threads` for each binary.
    pub test_threads: usize,
    /// Test binaries running at once.
    pub jobs: usize,
    /// `FWLOG_TEST_SLOWDOWN` for the tests: how many times longer their fixtures wait for fwlog.
    pub slowdown: u32,
    /// A test binary still running after this many seconds is killed and counted as failed.
    pub binary_timeout_secs: u64,
    /// Where the guest writes its logs and report: the shared directory.
    pub results: PathBuf,
}

/// How one test binary's run ended in the guest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BinaryRun {
    pub backend: Backend,
    pub name: String,
    /// Its exit code; `None` when it was killed (by the timeout or a signal).
    pub exit_code: Option<i32>,
    pub timed_out: bool,
    pub secs: f64,
    /// Its stdout and stderr, relative to the shared directory.
    pub log: PathBuf,
}

/// What the guest did, rewritten after every test binary so a guest that dies leaves what it had.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct GuestReport {
    /// `uname -r` inside the guest.
    pub release: String,
    /// Seconds from the guest kernel's start to the runner's start (`/proc/uptime`).
    pub boot_secs: f64,
    /// Setup steps that did not go as planned (a module that did not load, …), for the summary.
    pub warnings: Vec<String>,
    /// Kernel modules loaded at the end, by the kernel on demand (the guest loads none by hand).
    pub modules: Vec<String>,
    /// Wall-clock seconds each backend's runs took so far, all binaries together.
    pub backend_secs: Vec<(Backend, f64)>,
    /// The runs so far, in the order they ended.
    pub runs: Vec<BinaryRun>,
    /// Set when the runner got through every binary of every backend.
    pub finished: bool,
    /// Why the runner stopped before its first test binary, when it did.
    pub setup_error: Option<String>,
}

/// Writes `value` as pretty JSON to `path`, through a temporary file so a reader never sees half.
pub fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(value).context("serialising to JSON")?;
    let partial = path.with_extension("json.partial");
    fs::write(&partial, text).with_context(|| format!("writing {}", partial.display()))?;
    fs::rename(&partial, path)
        .with_context(|| format!("renaming {} to {}", partial.display(), path.display()))
}

/// Reads a JSON file written by [`write_json`].
pub fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{} is not what xtask wrote", path.display()))
}
