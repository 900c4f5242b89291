//! The `nflog` mode's consumer: ulogd2 (NFLOG → BASE → IFINDEX → IP2STR → JSON) run in the host
//! namespace as our child, with Debian's ulogd2 and ulogd2-json installed on demand, without
//! letting the package start a system-wide ulogd.

use std::{
    fs,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use nix::{sys::signal::Signal, unistd::geteuid};

use super::{
    child::{stop_with_parent, ChildGuard, OutputTail},
    NFLOG_GROUP,
};
use crate::{bench::netns::NetNsGuard, cmd};

const PACKAGES: [&str; 2] = ["ulogd2", "ulogd2-json"];
/// The plugins of the stack; the JSON one comes with ulogd2-json.
const PLUGINS: [&str; 5] = [
    "ulogd_inppkt_NFLOG.so",
    "ulogd_raw2packet_BASE.so",
    "ulogd_filter_IFINDEX.so",
    "ulogd_filter_IP2STR.so",
    "ulogd_output_JSON.so",
];
/// invoke-rc.d asks this script whether a package may start its service; 101 means no.
const POLICY_RC_D: &str = "/usr/sbin/policy-rc.d";
/// How long ulogd gets to bind its NFLOG group.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// An installed ulogd with the plugins the bench's stack needs.
#[derive(Clone, Debug)]
pub struct Ulogd {
    pub binary: PathBuf,
    pub plugin_dir: PathBuf,
}

/// Finds ulogd, installing Debian's packages when missing (unless `may_install` is false).
pub fn ensure_installed(may_install: bool) -> Result<Ulogd> {
    if let Ok(ulogd) = find() {
        return Ok(ulogd);
    }
    let is_debian = Path::new("/etc/debian_version").exists();
    if !may_install || !is_debian || !geteuid().is_root() {
        bail!(
            "ulogd2 with its JSON plugin is not installed: install {} (Debian/Ubuntu: \
             `apt-get install --no-install-recommends {}`)",
            PACKAGES.join(" and "),
            PACKAGES.join(" ")
        );
    }
    install()?;
    find().context("ulogd2 was installed but its binary or plugins are still not found")
}

fn find() -> Result<Ulogd> {
    let binary = ["/usr/sbin/ulogd", "/sbin/ulogd", "/usr/bin/ulogd"]
        .into_iter()
        .map(PathBuf::from)
        .find(|path| path.is_file())
        .context("no ulogd binary")?;
    let plugin_dir = plugin_dir_candidates()
        .into_iter()
        .find(|dir| PLUGINS.iter().all(|plugin| dir.join(plugin).is_file()))
        .with_context(|| format!("no directory with ulogd's {}", PLUGINS.join(", ")))?;
    Ok(Ulogd { binary, plugin_dir })
}

/// `/usr/lib/<multiarch triple>/ulogd` and the plain library directories.
fn plugin_dir_candidates() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.path().join("ulogd"))
        .collect();
    dirs.extend(["/usr/lib/ulogd", "/usr/lib64/ulogd"].map(PathBuf::from));
    dirs
}

fn install() -> Result<()> {
    let before = ulogd_pids();
    let _no_service_start = ServiceStartsDenied::new()?;
    // apt's chatter goes to stderr: stdout is for the report.
    let mut update = Command::new("apt-get");
    update.arg("update").stdout(std::io::stderr());
    let mut install = Command::new("apt-get");
    install
        .args(["install", "-y", "--no-install-recommends"])
        .args(PACKAGES)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdout(std::io::stderr());
    eprintln!(
        "bench: installing {} for the nflog mode ({}; the package's service is not started)",
        PACKAGES.join(" "),
        cmd::describe(&install)
    );
    cmd::run(&mut update).context("apt-get update failed; check the apt sources")?;
    cmd::run(&mut install).with_context(|| {
        format!(
            "installing {} failed; see apt-get's errors above",
            PACKAGES.join(" ")
        )
    })?;
    // Belt and braces: if a ulogd appeared anyway, stop it with the package's own script.
    let started: Vec<u32> = ulogd_pids()
        .into_iter()
        .filter(|pid| !before.contains(pid))
        .collect();
    if !started.is_empty() {
        eprintln!("bench: the ulogd2 package started a system ulogd ({started:?}); stopping it");
        cmd::run(Command::new("/etc/init.d/ulogd2").arg("stop"))
            .context("stopping the system ulogd the package started")?;
    }
    Ok(())
}

/// Pids of running processes named ulogd.
fn ulogd_pids() -> Vec<u32> {
    fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|comm| comm.trim() == "ulogd")
        })
        .collect()
}

/// A policy-rc.d that denies every service start, present while held (only if there was none).
struct ServiceStartsDenied {
    created: bool,
}

impl ServiceStartsDenied {
    fn new() -> Result<Self> {
        if Path::new(POLICY_RC_D).exists() {
            return Ok(ServiceStartsDenied { created: false });
        }
        fs::write(
            POLICY_RC_D,
            "#!/bin/sh\n# Written by `cargo xtask bench` while it installs ulogd2; removed after.\nexit 101\n",
        )
        .with_context(|| format!("writing {POLICY_RC_D}"))?;
        fs::set_permissions(POLICY_RC_D, fs::Permissions::from_mode(0o755))
            .with_context(|| format!("making {POLICY_RC_D} executable"))?;
        Ok(ServiceStartsDenied { created: true })
    }
}

impl Drop for ServiceStartsDenied {
    fn drop(&mut self) {
        if self.created {
            if let Err(error) = fs::remove_file(POLICY_RC_D) {
                eprintln!("warning: could not remove {POLICY_RC_D}: {error}; remove it by hand");
            }
        }
    }
}

/// ulogd's configuration: one stack, JSON lines into `json_file`.
///
/// The socket buffer sizes are the ones suggested in Debian's /etc/ulogd.conf; `sync=1` (a
/// flush per line) is that file's default for the JSON output.
pub fn config(plugin_dir: &Path, json_file: &Path, log_file: &Path) -> String {
    let mut text = String::from("[global]\n");
    text.push_str(&format!("logfile=\"{}\"\nloglevel=3\n", log_file.display()));
    for plugin in PLUGINS {
        text.push_str(&format!(
            "plugin=\"{}\"\n",
            plugin_dir.join(plugin).display()
        ));
    }
    text.push_str("stack=log1:NFLOG,base1:BASE,ifi1:IFINDEX,ip2str1:IP2STR,json1:JSON\n\n");
    text.push_str(&format!(
        "[log1]\ngroup={NFLOG_GROUP}\nnetlink_socket_buffer_size=217088\nnetlink_socket_buffer_maxsize=1085440\n\n"
    ));
    text.push_str(&format!(
        "[json1]\nsync=1\nfile=\"{}\"\n",
        json_file.display()
    ));
    text
}

/// A ulogd child in the host namespace and the JSON file it writes.
pub struct UlogdConsumer {
    child: ChildGuard,
    tail: OutputTail,
    pub files: Vec<PathBuf>,
}

impl UlogdConsumer {
    /// Starts ulogd and waits until it has bound the NFLOG group.
    pub fn start(ulogd: &Ulogd, host: &NetNsGuard, out_dir: &Path, run_name: &str) -> Result<Self> {
        let json_file = out_dir.join(format!("{run_name}.ulogd.json"));
        let log_file = out_dir.join(format!("{run_name}.ulogd.log"));
        let config_file = out_dir.join(format!("{run_name}.ulogd.conf"));
        fs::write(&json_file, "").with_context(|| format!("creating {}", json_file.display()))?;
        fs::write(
            &config_file,
            config(&ulogd.plugin_dir, &json_file, &log_file),
        )
        .with_context(|| format!("writing {}", config_file.display()))?;
        let mut command = host.command(&ulogd.binary);
        command
            .arg("-c")
            .arg(&config_file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        stop_with_parent(&mut command, Signal::SIGTERM);
        let child = command
            .spawn()
            .with_context(|| format!("could not start `{}`", cmd::describe(&command)))?;
        let mut consumer = UlogdConsumer {
            child: ChildGuard::new(child, "ulogd", Signal::SIGTERM),
            tail: OutputTail::open(&json_file, None)?,
            files: vec![json_file, log_file.clone(), config_file],
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = consumer.child.exited()? {
                bail!(
                    "ulogd exited at start ({status}); its log {} says: {}",
                    log_file.display(),
                    fs::read_to_string(&log_file).unwrap_or_default().trim()
                );
            }
            if group_bound(host)? {
                return Ok(consumer);
            }
            if Instant::now() > deadline {
                bail!(
                    "ulogd did not bind NFLOG group {NFLOG_GROUP} within {START_TIMEOUT:?}; see {}",
                    log_file.display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn events(&mut self) -> Result<u64> {
        self.tail.lines()
    }

    /// When ulogd last wrote to its output, as far as [`UlogdConsumer::events`] saw.
    pub fn last_output(&self) -> Option<Instant> {
        self.tail.grown_at()
    }

    pub fn proc_dir(&self) -> Option<PathBuf> {
        self.child.proc_dir()
    }

    /// Stops ulogd (SIGTERM: it closes its output) and returns the lines it wrote.
    pub fn stop(&mut self) -> Result<(u64, bool)> {
        let stopped = self.child.stop()?;
        let killed = stopped.is_some_and(|stopped| stopped.killed);
        Ok((self.tail.lines()?, killed))
    }
}

/// Whether a process in `host` listens on the NFLOG group (/proc/net/netfilter/nfnetlink_log:
/// one line per bound group, the group number first).
fn group_bound(host: &NetNsGuard) -> Result<bool> {
    let groups = host.output("cat", &["/proc/net/netfilter/nfnetlink_log"])?;
    Ok(groups
        .lines()
        .any(|line| line.split_whitespace().next() == Some(&NFLOG_GROUP.to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_has_one_json_stack_on_our_group() {
        let text = config(
            Path::new("/usr/lib/x86_64-linux-gnu/ulogd"),
            Path::new("/t/run.json"),
            Path::new("/t/run.log"),
        );
        assert!(text.starts_with("[global]\nlogfile=\"/t/run.log\"\n"));
        assert!(text.contains("plugin=\"/usr/lib/x86_64-linux-gnu/ulogd/ulogd_output_JSON.so\"\n"));
        assert!(
            text.contains("stack=log1:NFLOG,base1:BASE,ifi1:IFINDEX,ip2str1:IP2STR,json1:JSON\n")
        );
        assert!(text.contains(&format!("[log1]\ngroup={NFLOG_GROUP}\n")));
        assert!(text.ends_with("[json1]\nsync=1\nfile=\"/t/run.json\"\n"));
    }
}
