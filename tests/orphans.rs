//! Whose pins are whose: the pins of a namespace that is gone are found, shown with the memory
//! they hold and removed on request; the pins of a namespace that is alive, however it is held
//! and from wherever fwlog looks, are never touched; a namespace that gets a dead one's inode
//! does not adopt its pins.
//!
//! Every test runs fwlog in a private mount namespace with a bpffs of its own (PrivateBpffs),
//! so that orphan removal, before or after a fix, can only ever see the test's own pins.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    time::Duration,
};

use anyhow::{Context as _, Result};
use fwlog_tests::{
    fwlog::fwlog_bin,
    netns::{self, HOST_V4},
    private_bpffs::PrivateBpffs,
    traffic::ping,
    Fwlog, TestNet,
};
use nix::sys::signal::Signal;
use serde_json::Value;

fn output(command: &mut Command) -> Result<(Output, String)> {
    let output = command
        .output()
        .with_context(|| format!("running {command:?}"))?;
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    Ok((output, stderr))
}

/// `fwlog ARGS` in `netns` and the private bpffs; fails unless it succeeds.
fn fwlog_ok(bpffs: &PrivateBpffs, netns: &Path, args: &[&str]) -> Result<String> {
    let (out, stderr) = output(bpffs.fwlog(netns).args(args))?;
    anyhow::ensure!(out.status.success(), "fwlog {args:?} failed: {stderr}");
    Ok(String::from_utf8_lossy(&out.stdout).into_owned() + &stderr)
}

fn status(bpffs: &PrivateBpffs, netns: &Path) -> Result<Value> {
    let printed = fwlog_ok(bpffs, netns, &["status", "--json"])?;
    serde_json::from_str(printed.lines().next().unwrap_or("")).context("status --json")
}

/// The namespace's inode, as fwlog names its pin directory.
fn inode_of(netns: &Path) -> Result<u64> {
    use std::os::unix::fs::MetadataExt as _;
    Ok(std::fs::metadata(netns)?.ino())
}

/// Ids of the links pinned in `dir` whose name starts with `prefix`.
fn link_ids(dir: &Path, prefix: &str) -> Result<Vec<u64>> {
    let mut ids = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(prefix))
        {
            let shown = Command::new("bpftool")
                .args(["-j", "link", "show", "pinned"])
                .arg(&path)
                .output()?;
            let link: Value = serde_json::from_slice(&shown.stdout).context("bpftool's JSON")?;
            ids.push(link["id"].as_u64().context("a link id")?);
        }
    }
    Ok(ids)
}

fn link_exists(id: u64) -> Result<bool> {
    Ok(Command::new("bpftool")
        .args(["link", "show", "id", &id.to_string()])
        .output()?
        .status
        .success())
}

#[test]
fn a_killed_sessions_pins_are_listed_with_their_memory_and_removed_only_on_request() -> Result<()> {
    let bpffs = PrivateBpffs::new()?;
    let TestNet {
        host,
        peer,
        host_if,
        ..
    } = TestNet::new()?;
    let inode = host.inode();
    let mut command = bpffs.fwlog(&host.path());
    command.args(["watch", &host_if]);
    let mut watch = Fwlog::start(command, host.path(), Some(bpffs.mount_ns()))?;
    watch.wait_until_watching()?;
    watch.stop(Signal::SIGKILL)?;
    // The namespace goes (as a container's does); nothing removes its pins.
    drop(host);
    let dir = bpffs.pin_dir(inode);
    assert!(dir.exists(), "the killed session's pins stay");

    let seen = status(&bpffs, &peer.path())?;
    assert_eq!(seen["mode"], "none", "{seen}");
    let orphans = seen["orphans"].as_array().context("an orphans list")?;
    assert_eq!(orphans.len(), 1, "{seen}");
    let orphan = &orphans[0];
    assert_eq!(orphan["dir"], format!("/sys/fs/bpf/fwlog/{inode}"));
    assert_eq!(orphan["mode"], "session");
    assert_eq!(orphan["interfaces"], serde_json::json!([host_if]));
    let memory = orphan["memory_bytes"].as_u64().context("memory")?;
    assert!(
        memory > 16 << 20,
        "at least the 16 MiB ring buffer is counted: {memory}"
    );
    assert!(
        orphan["why"]
            .as_str()
            .is_some_and(|w| w.contains("has exited")),
        "{orphan}"
    );

    let said = fwlog_ok(&bpffs, &peer.path(), &["uninstall"])?;
    assert!(
        said.contains("`fwlog uninstall --orphans` removes them"),
        "{said}"
    );
    assert!(
        dir.exists(),
        "a plain uninstall leaves other namespaces' pins"
    );

    let said = fwlog_ok(&bpffs, &peer.path(), &["uninstall", "--orphans"])?;
    assert!(
        said.contains(&format!("removed the orphaned /sys/fs/bpf/fwlog/{inode} (")),
        "{said}"
    );
    assert!(!dir.exists(), "--orphans removes them");
    let seen = status(&bpffs, &peer.path())?;
    assert_eq!(seen["orphans"], serde_json::json!([]));
    Ok(())
}

/// A file with a namespace bind-mounted on it (`unshare --net=FILE`), in the private mount
/// namespace: nothing but that mount holds the namespace. The file goes on drop.
struct HeldNamespace<'a> {
    bpffs: &'a PrivateBpffs,
    file: PathBuf,
}

impl<'a> HeldNamespace<'a> {
    fn new(bpffs: &'a PrivateBpffs) -> Result<Self> {
        let file = std::env::temp_dir().join(format!("fwlog-held-{}", std::process::id()));
        let held = HeldNamespace { bpffs, file };
        bpffs.shell(&format!(
            "touch {0} && unshare --net={0} true",
            held.file.display()
        ))?;
        Ok(held)
    }

    /// The namespace file, through the private namespace's root.
    fn path(&self) -> PathBuf {
        self.bpffs
            .root()
            .join(self.file.strip_prefix("/").unwrap_or(&self.file))
    }
}

impl Drop for HeldNamespace<'_> {
    fn drop(&mut self) {
        let _ = self.bpffs.shell(&format!("umount {}", self.file.display()));
        let _ = std::fs::remove_file(&self.file);
    }
}

#[test]
fn a_namespace_held_only_by_a_bind_mount_keeps_its_pins() -> Result<()> {
    let bpffs = PrivateBpffs::new()?;
    let elsewhere = netns::create("else")?;
    let held = HeldNamespace::new(&bpffs)?;
    let netns = held.path();
    for args in [
        &[
            "link", "add", "fwheld0", "type", "veth", "peer", "name", "fwheld1",
        ][..],
        &["link", "set", "fwheld0", "up"],
        &["link", "set", "fwheld1", "up"],
    ] {
        let (out, stderr) = output(bpffs.command(&netns, "ip").args(args))?;
        anyhow::ensure!(out.status.success(), "ip {args:?}: {stderr}");
    }
    fwlog_ok(&bpffs, &netns, &["install", "--no-process", "fwheld0"])?;
    let dir = bpffs.pin_dir(inode_of(&netns)?);
    assert!(dir.exists());

    for args in [&["uninstall"][..], &["uninstall", "--orphans"]] {
        fwlog_ok(&bpffs, &elsewhere.path(), args)?;
        assert!(
            dir.exists(),
            "`fwlog {args:?}` elsewhere keeps the pins of a namespace a bind mount holds"
        );
    }
    let seen = status(&bpffs, &netns)?;
    assert_eq!(seen["mode"], "installed", "{seen}");
    fwlog_ok(&bpffs, &netns, &["uninstall"])?;
    assert!(!dir.exists());
    Ok(())
}

#[test]
fn fwlog_in_a_container_with_its_own_pid_namespace_touches_no_live_pins() -> Result<()> {
    let bpffs = PrivateBpffs::new()?;
    let net = TestNet::new()?;
    fwlog_ok(
        &bpffs,
        &net.host.path(),
        &["install", "--no-process", &net.host_if],
    )?;
    let dir = bpffs.pin_dir(net.host.inode());
    assert!(!ping(&net.peer, HOST_V4)?, "installed: the ping is dropped");

    // As in a container: a PID namespace with its own /proc, the host's bpffs, and no view of
    // the host's /run/netns (the private mount namespace never had net.host's mount).
    for args in [&["uninstall"][..], &["uninstall", "--orphans"], &["status"]] {
        let mut container = bpffs.command(&net.peer.path(), "unshare");
        container
            .args(["--pid", "--fork", "--mount-proc"])
            .arg(fwlog_bin())
            .args(args);
        let (out, stderr) = output(&mut container)?;
        assert!(
            out.status.success(),
            "fwlog {args:?} in the container: {stderr}"
        );
        assert!(
            dir.exists(),
            "fwlog {args:?} in the container kept the host namespace's pins: {stderr}"
        );
    }
    let seen = status(&bpffs, &net.host.path())?;
    assert_eq!(seen["mode"], "installed", "{seen}");
    assert!(!ping(&net.peer, HOST_V4)?, "still enforcing");
    assert_eq!(
        seen["counters"]["events"], 1,
        "and still recording: the first ping's event is in the kept ring ({seen})"
    );
    fwlog_ok(&bpffs, &net.host.path(), &["uninstall"])?;
    Ok(())
}

#[test]
fn an_orphaned_installs_cgroup_hooks_are_listed_and_removed() -> Result<()> {
    let bpffs = PrivateBpffs::new()?;
    let TestNet {
        host,
        peer,
        host_if,
        ..
    } = TestNet::new()?;
    let inode = host.inode();
    fwlog_ok(&bpffs, &host.path(), &["install", &host_if])?;
    let dir = bpffs.pin_dir(inode);
    let hooks = link_ids(&dir, "link_process_")?;
    assert_eq!(
        hooks.len(),
        4,
        "connect4/6 and sendmsg4/6 on the root cgroup"
    );
    drop(host);

    let seen = status(&bpffs, &peer.path())?;
    let orphan = &seen["orphans"][0];
    assert_eq!(orphan["mode"], "installed", "{seen}");
    assert_eq!(orphan["cgroup_hooks"], 4, "{seen}");
    for id in &hooks {
        assert!(
            link_exists(*id)?,
            "hook {id} still runs for the whole machine"
        );
    }
    let said = fwlog_ok(&bpffs, &peer.path(), &["uninstall", "--orphans"])?;
    assert!(said.contains(", 4 cgroup hooks)"), "{said}");
    for id in hooks {
        assert!(!link_exists(id)?, "hook {id} is gone");
    }
    assert!(!dir.exists());
    Ok(())
}

#[test]
fn a_namespace_that_gets_a_dead_ones_inode_does_not_adopt_its_pins() -> Result<()> {
    let bpffs = PrivateBpffs::new()?;
    let dead = TestNet::new()?;
    let net = TestNet::new()?;
    fwlog_ok(
        &bpffs,
        &dead.host.path(),
        &["install", "--no-process", &dead.host_if],
    )?;
    let dead_dir = bpffs.pin_dir(dead.host.inode());
    drop(dead);
    // The kernel hands a dead namespace's inode to the next one (seen 3 times in 4): the
    // directory named by this namespace's inode is then the dead one's. Renaming it there
    // makes that happen every time.
    let slot = bpffs.pin_dir(net.host.inode());
    std::fs::rename(&dead_dir, &slot).context("renaming the pin directory")?;

    let seen = status(&bpffs, &net.host.path())?;
    assert_eq!(seen["mode"], "none", "not installed here: {seen}");
    assert!(
        seen["note"]
            .as_str()
            .is_some_and(|n| n.contains("is not this namespace's")),
        "{seen}"
    );
    assert_eq!(seen["orphans"].as_array().map(Vec::len), Some(1), "{seen}");
    assert_eq!(seen["counters"], Value::Null, "no counters read from it");

    let mut command = bpffs.fwlog(&net.host.path());
    command.args(["watch", &net.host_if]);
    let mut watch = Fwlog::start(command, net.host.path(), Some(bpffs.mount_ns()))?;
    watch.wait_until_watching()?;
    let said = watch.stderr_text();
    assert!(
        said.contains(&format!(
            "fwlog: removed /sys/fs/bpf/fwlog/{}, not this namespace's",
            net.host.inode()
        )),
        "{said}"
    );
    assert!(watch.stop(Signal::SIGINT)?.success());
    assert!(!slot.exists(), "the session removed its own pins at exit");
    std::thread::sleep(Duration::from_millis(100));
    Ok(())
}

/// A pin directory without a namespace link (a kernel before 5.9, a version of fwlog before
/// records) is judged by what holds its namespace: kept while something does, kept and listed
/// as undetermined where fwlog cannot see every holder, removed once nothing in full view does.
#[test]
fn without_a_namespace_link_what_fwlog_cannot_see_is_kept_and_reported() -> Result<()> {
    let bpffs = PrivateBpffs::new()?;
    let net = TestNet::new()?;
    let elsewhere = netns::create("else")?;
    fwlog_ok(
        &bpffs,
        &net.host.path(),
        &["install", "--no-process", &net.host_if],
    )?;
    let dir = bpffs.pin_dir(net.host.inode());
    std::fs::remove_file(dir.join("link_netns")).context("unpinning the namespace link")?;

    // In a container (a PID namespace of its own), fwlog cannot see every holder: it keeps the
    // directory and says why.
    let mut container = bpffs.command(&elsewhere.path(), "unshare");
    container
        .args(["--pid", "--fork", "--mount-proc"])
        .arg(fwlog_bin())
        .args(["status", "--json"]);
    let (out, stderr) = output(&mut container)?;
    anyhow::ensure!(out.status.success(), "status in the container: {stderr}");
    let seen: Value = serde_json::from_slice(&out.stdout).context("status --json")?;
    let undetermined = seen["undetermined"].as_array().context("undetermined")?;
    assert_eq!(undetermined.len(), 1, "{seen}");
    assert!(
        undetermined[0]["why"]
            .as_str()
            .is_some_and(|why| why.contains("PID namespace of its own")),
        "{seen}"
    );
    assert_eq!(seen["orphans"].as_array().map(Vec::len), Some(0), "{seen}");
    let mut container = bpffs.command(&elsewhere.path(), "unshare");
    container
        .args(["--pid", "--fork", "--mount-proc"])
        .arg(fwlog_bin())
        .args(["uninstall", "--orphans"]);
    let (out, stderr) = output(&mut container)?;
    anyhow::ensure!(out.status.success(), "uninstall in the container: {stderr}");
    assert!(dir.exists(), "kept when in doubt: {stderr}");

    // In full view, a namespace that `ip netns` holds is alive.
    fwlog_ok(&bpffs, &elsewhere.path(), &["uninstall", "--orphans"])?;
    assert!(dir.exists(), "the namespace is alive: its pins stay");

    // Once it is gone, nothing holds it: where fwlog sees every process's namespaces, the
    // directory is an orphan and goes on request; where it cannot (this VM's PID 1 refuses
    // even root), it stays undetermined and is kept, with the reason.
    let inode = net.host.inode();
    drop(net);
    let seen = status(&bpffs, &elsewhere.path())?;
    let said = fwlog_ok(&bpffs, &elsewhere.path(), &["uninstall", "--orphans"])?;
    match unreadable_namespace() {
        None => {
            let orphans = seen["orphans"].as_array().context("orphans")?;
            assert_eq!(orphans.len(), 1, "{seen}");
            let why = orphans[0]["why"].as_str().unwrap_or_default();
            assert!(
                why.contains(&format!(
                    "no process, thread, open file or mount holds network namespace {inode}"
                )),
                "{seen}"
            );
            assert!(said.contains("removed the orphaned"), "{said}");
            assert!(!dir.exists());
        }
        Some(pid) => {
            println!("pid {pid}'s namespace cannot be read: the dead namespace's pins are kept");
            let undetermined = seen["undetermined"].as_array().context("undetermined")?;
            assert_eq!(undetermined.len(), 1, "{seen}");
            let why = undetermined[0]["why"].as_str().unwrap_or_default();
            assert!(
                why.contains(&format!("nothing in sight holds network namespace {inode}"))
                    && why.contains("cannot be read"),
                "{seen}"
            );
            assert!(dir.exists(), "kept when in doubt: {said}");
        }
    }
    Ok(())
}

/// A process whose threads' network namespaces this test cannot read, if there is one.
fn unreadable_namespace() -> Option<String> {
    let processes = std::fs::read_dir("/proc").ok()?;
    for process in processes.filter_map(|p| p.ok()) {
        let pid = process.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(tasks) = std::fs::read_dir(process.path().join("task")) else {
            continue;
        };
        for task in tasks.filter_map(|t| t.ok()) {
            if let Err(error) = std::fs::metadata(task.path().join("ns/net")) {
                if error.kind() != std::io::ErrorKind::NotFound && process.path().exists() {
                    return Some(pid);
                }
            }
        }
    }
    None
}
