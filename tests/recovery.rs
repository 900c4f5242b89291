//! Removal that cannot wedge and installs that cannot be left half-done: an iptables-restore
//! that fails, blocks or outlives fwlog; pins someone deleted; a watch racing an install; what
//! `status` says after each; and the errors of those paths.

use std::{
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use fwlog_tests::{fwlog::fwlog_command, fwlog_bin, netns::HOST_V4, traffic::ping, Fwlog, TestNet};
use nix::sys::signal::Signal;
use serde_json::Value;

/// A directory of wrapper scripts that fwlog finds first in PATH; removed on drop.
struct Wrappers {
    dir: PathBuf,
}

impl Wrappers {
    fn new(tag: &str) -> Result<Self> {
        let dir = std::env::temp_dir().join(format!("fwlog-wrap-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        Ok(Wrappers { dir })
    }

    /// `name` becomes `script` (sh), which can run the real command as `"$REAL" "$@"`.
    fn add(&self, name: &str, script: &str) -> Result<()> {
        let real = ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
            .iter()
            .map(|dir| Path::new(dir).join(name))
            .find(|path| path.exists())
            .with_context(|| format!("no {name} on this machine"))?;
        let path = self.dir.join(name);
        std::fs::write(
            &path,
            format!("#!/bin/sh\nREAL={}\n{script}\n", real.display()),
        )?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
        Ok(())
    }

    fn path_var(&self) -> String {
        format!("{}:/usr/sbin:/usr/bin:/sbin:/bin", self.dir.display())
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for Wrappers {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn fwlog_ok(net: &TestNet, args: &[&str]) -> Result<String> {
    let output = fwlog_command(&net.host).args(args).output()?;
    anyhow::ensure!(
        output.status.success(),
        "fwlog {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8(output.stdout)? + &String::from_utf8(output.stderr)?)
}

fn status(net: &TestNet) -> Result<Value> {
    let printed = fwlog_ok(net, &["status", "--json"])?;
    serde_json::from_str(printed.lines().next().unwrap_or("")).context("status --json")
}

fn fwlog_rules(net: &TestNet) -> Result<usize> {
    Ok(net
        .host
        .saved_rules()?
        .lines()
        .filter(|l| l.contains("fwlog") && l.starts_with("-A"))
        .count())
}

/// Waits (bounded) until `path` exists.
fn wait_for_file(path: &Path, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while !path.exists() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "{} did not appear",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Runs `fwlog uninstall` in the host namespace when dropped (a failing test leaves nothing).
struct UninstallOnDrop<'a>(&'a TestNet);

impl Drop for UninstallOnDrop<'_> {
    fn drop(&mut self) {
        let _ = fwlog_command(&self.0.host).arg("uninstall").output();
    }
}

#[test]
fn a_failed_removal_keeps_the_pins_and_uninstall_finishes_it() -> Result<()> {
    let net = TestNet::new()?;
    let before = net.host.saved_rules()?;
    let _cleanup = UninstallOnDrop(&net);
    let wrappers = Wrappers::new("fail-once")?;
    let armed = wrappers.file("armed");
    // Fails silently once the marker exists, then works again.
    wrappers.add(
        "ip6tables-restore",
        &format!(
            "if [ -e {0} ]; then rm -f {0}; exit 1; fi\nexec \"$REAL\" \"$@\"",
            armed.display()
        ),
    )?;
    let path = wrappers.path_var();
    let mut fwlog = Fwlog::watch_with_env(&net.host, &[&net.host_if], &[("PATH", &path)])?;
    std::fs::write(&armed, "")?;
    let status_code = fwlog.stop(Signal::SIGINT)?;
    let said = fwlog.stderr_text();
    assert!(net.host.pin_dir().exists(), "the pins stay: {said}");
    assert!(fwlog_rules(&net)? > 0, "the IPv6 rules are still there");
    assert!(
        !status_code.success(),
        "a failed removal is an error: {said}"
    );
    let line = said
        .lines()
        .find(|l| l.contains("ip6tables"))
        .context("a line about ip6tables")?;
    assert!(
        line.contains("exit status 1, and nothing on stderr"),
        "a silent failure still has a reason: {line}"
    );
    assert!(line.contains("stay"), "{line}");
    assert!(
        line.contains(&format!(
            "`nsenter --net={} fwlog uninstall`",
            net.host.path().display()
        )),
        "says what to run: {line}"
    );

    let seen = status(&net)?;
    assert_eq!(seen["mode"], "leftover", "{seen}");
    let said = fwlog_ok(&net, &["uninstall"])?;
    assert!(
        said.contains("fwlog: removed ip6tables rules, pins in"),
        "{said}"
    );
    assert_eq!(net.host.saved_rules()?, before);
    assert!(!net.host.pin_dir().exists());
    let again = fwlog_ok(&net, &["uninstall"])?;
    assert!(
        again.contains("nothing of fwlog is installed here"),
        "{again}"
    );
    Ok(())
}

#[test]
fn rules_whose_pins_were_deleted_are_still_removed() -> Result<()> {
    let net = TestNet::new()?;
    let before = net.host.saved_rules()?;
    let _cleanup = UninstallOnDrop(&net);
    let mut fwlog = Fwlog::watch(&net.host, &[&net.host_if])?;
    fwlog.stop(Signal::SIGKILL)?;
    // Someone (an older fwlog's orphan sweep, a script) deletes the pins the rules name.
    std::fs::remove_dir_all(net.host.pin_dir())?;
    assert!(fwlog_rules(&net)? > 0);

    let said = fwlog_ok(&net, &["uninstall"])?;
    assert!(said.contains("pinning stand-ins"), "{said}");
    assert!(
        said.contains("fwlog: removed iptables rules, ip6tables rules"),
        "{said}"
    );
    assert_eq!(net.host.saved_rules()?, before);
    assert!(!net.host.pin_dir().exists(), "the stand-ins went too");
    // And a new session installs as usual.
    let mut again = Fwlog::watch(&net.host, &[&net.host_if])?;
    assert!(again.stop(Signal::SIGINT)?.success());
    Ok(())
}

/// An ip6tables-restore that blocks: it writes its pid to `started` and sleeps before running.
fn blocking_restore(wrappers: &Wrappers, seconds: u32) -> Result<PathBuf> {
    let started = wrappers.file("started");
    wrappers.add(
        "ip6tables-restore",
        &format!(
            "echo $$ > {}\nsleep {seconds}\nexec \"$REAL\" \"$@\"",
            started.display()
        ),
    )?;
    Ok(started)
}

fn process_exists(pid: &str) -> bool {
    Path::new("/proc").join(pid.trim()).exists()
}

#[test]
fn a_stop_signal_ends_a_blocked_restore_and_rolls_back() -> Result<()> {
    let net = TestNet::new()?;
    let before = net.host.saved_rules()?;
    let _cleanup = UninstallOnDrop(&net);
    let wrappers = Wrappers::new("block")?;
    let started = blocking_restore(&wrappers, 30)?;
    let mut command = fwlog_command(&net.host);
    command
        .args(["watch", &net.host_if])
        .env("PATH", wrappers.path_var());
    let mut fwlog = Fwlog::start(command, net.host.path(), None)?;
    wait_for_file(&started, Duration::from_secs(20))?;
    let restore = std::fs::read_to_string(&started)?;
    assert!(fwlog_rules(&net)? > 0, "the IPv4 rules are in, IPv6 waits");

    let asked = Instant::now();
    let exit = fwlog.stop(Signal::SIGTERM)?;
    let took = asked.elapsed();
    println!("stopped {took:?} after SIGTERM");
    assert!(
        took < Duration::from_secs(3),
        "stopped {took:?} after SIGTERM, not when the restore would have finished"
    );
    assert!(!exit.success(), "an interrupted set-up is an error");
    assert!(
        fwlog.stderr_text().contains("interrupted"),
        "{}",
        fwlog.stderr_text()
    );
    assert!(!process_exists(&restore), "the blocked restore was killed");
    assert_eq!(
        net.host.saved_rules()?,
        before,
        "the IPv4 rules were rolled back"
    );
    assert!(!net.host.pin_dir().exists());
    Ok(())
}

#[test]
fn a_killed_fwlogs_restore_never_applies_rules_later() -> Result<()> {
    let net = TestNet::new()?;
    let before = net.host.saved_rules()?;
    let _cleanup = UninstallOnDrop(&net);
    let wrappers = Wrappers::new("late")?;
    let started = wrappers.file("started");
    wrappers.add(
        "iptables-restore",
        &format!(
            "echo $$ > {}\nsleep 1.5\nexec \"$REAL\" \"$@\"",
            started.display()
        ),
    )?;
    let mut command = fwlog_command(&net.host);
    command
        .args(["watch", &net.host_if])
        .env("PATH", wrappers.path_var());
    let mut fwlog = Fwlog::start(command, net.host.path(), None)?;
    wait_for_file(&started, Duration::from_secs(20))?;
    fwlog.stop(Signal::SIGKILL)?;
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        net.host.saved_rules()?,
        before,
        "no rules appear after fwlog died"
    );
    Ok(())
}

#[test]
fn status_after_a_killed_install_or_uninstall_says_what_is_left() -> Result<()> {
    let net = TestNet::new()?;
    let before = net.host.saved_rules()?;
    let _cleanup = UninstallOnDrop(&net);
    let wrappers = Wrappers::new("killed")?;
    let started = blocking_restore(&wrappers, 30)?;

    // An install killed half-way (IPv4 in, IPv6 blocked).
    let mut command = fwlog_command(&net.host);
    command
        .args(["install", "--no-process", &net.host_if])
        .env("PATH", wrappers.path_var());
    let mut install = Fwlog::start(command, net.host.path(), None)?;
    wait_for_file(&started, Duration::from_secs(20))?;
    install.stop(Signal::SIGKILL)?;
    let seen = status(&net)?;
    assert_eq!(seen["mode"], "leftover", "not a session: {seen}");
    assert!(
        seen["note"]
            .as_str()
            .is_some_and(|n| n.contains("before it finished installing")),
        "{seen}"
    );
    fwlog_ok(&net, &["uninstall"])?;
    assert_eq!(net.host.saved_rules()?, before);

    // An uninstall killed half-way (IPv4 out, IPv6 blocked).
    std::fs::remove_file(&started)?;
    fwlog_ok(&net, &["install", "--no-process", &net.host_if])?;
    let mut command = fwlog_command(&net.host);
    command.arg("uninstall").env("PATH", wrappers.path_var());
    let mut uninstall = Fwlog::start(command, net.host.path(), None)?;
    wait_for_file(&started, Duration::from_secs(20))?;
    uninstall.stop(Signal::SIGKILL)?;
    let seen = status(&net)?;
    assert_eq!(seen["mode"], "leftover", "not installed: {seen}");
    assert!(
        seen["note"]
            .as_str()
            .is_some_and(|n| n.contains("removal") && n.contains("did not finish")),
        "{seen}"
    );
    fwlog_ok(&net, &["uninstall"])?;
    assert_eq!(net.host.saved_rules()?, before);
    assert!(!net.host.pin_dir().exists());
    Ok(())
}

#[test]
fn status_into_a_closed_pipe_is_no_error() -> Result<()> {
    let net = TestNet::new()?;
    let _cleanup = UninstallOnDrop(&net);
    fwlog_ok(&net, &["install", "--no-process", &net.host_if])?;
    // `fwlog status | head -0`: the reader is gone before fwlog writes.
    let (reader, writer) = std::io::pipe()?;
    drop(reader);
    let output = fwlog_command(&net.host)
        .arg("status")
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{:?}: {stderr}", output.status);
    assert!(!stderr.contains("panicked"), "{stderr}");
    Ok(())
}

#[test]
fn ip_netns_exec_is_told_to_use_nsenter() -> Result<()> {
    let net = TestNet::new()?;
    let _cleanup = UninstallOnDrop(&net);
    fwlog_ok(&net, &["install", "--no-process", &net.host_if])?;
    let output: Output = Command::new("ip")
        .args(["netns", "exec", net.host.name()])
        .arg(fwlog_bin())
        .arg("uninstall")
        .env_remove("SSH_CONNECTION")
        .output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "run it with `nsenter --net={} fwlog …` instead",
            net.host.path().display()
        )),
        "{stderr}"
    );
    assert_eq!(status(&net)?["mode"], "installed", "nothing was removed");
    Ok(())
}

#[test]
fn a_watch_never_takes_an_install_that_finished_meanwhile_for_a_leftover() -> Result<()> {
    let net = TestNet::new()?;
    let _cleanup = UninstallOnDrop(&net);
    // The watch's first lock request is held back 30 s (strace), long enough for an install to
    // run from start to end in between: a watch that looked at the slot before locking saw it
    // empty, and then removed the finished install as something left behind.
    let mut command = net.host.command("strace");
    command
        .args([
            "-qq",
            "-o",
            "/dev/null",
            "-e",
            "trace=flock",
            "-e",
            "inject=flock:delay_enter=30000000:when=1",
        ])
        .arg(fwlog_bin())
        .args(["watch", "--no-process", &net.host_if])
        .env_remove("SSH_CONNECTION");
    let mut watch = Fwlog::start(command, net.host.path(), None)?;
    std::thread::sleep(Duration::from_millis(500));
    let installing = Instant::now();
    fwlog_ok(&net, &["install", "--no-process", &net.host_if])?;
    assert!(
        installing.elapsed() < Duration::from_secs(25),
        "the install took {:?}, too long for the watch's held-back lock: the test cannot \
         race them on a machine this busy",
        installing.elapsed()
    );
    let exit = watch.wait(Duration::from_secs(60))?;
    assert!(
        !exit.success(),
        "the watch refuses: {}",
        watch.stderr_text()
    );
    assert!(
        watch
            .stderr_text()
            .contains("fwlog is installed in this network namespace"),
        "{}",
        watch.stderr_text()
    );
    let seen = status(&net)?;
    assert_eq!(seen["mode"], "installed", "the install is intact: {seen}");
    assert!(!ping(&net.peer, HOST_V4)?, "and enforcing");
    Ok(())
}

#[test]
fn a_watch_without_rules_never_removes_pins_that_leftover_rules_name() -> Result<()> {
    let net = TestNet::new()?;
    let before = net.host.saved_rules()?;
    let _cleanup = UninstallOnDrop(&net);
    let mut killed = Fwlog::watch(&net.host, &[&net.host_if])?;
    killed.stop(Signal::SIGKILL)?;
    let mut command = fwlog_command(&net.host);
    command.args(["watch", "--no-rules", &net.host_if]);
    let mut fwlog = Fwlog::start(command, net.host.path(), None)?;
    let exit = fwlog.wait(Duration::from_secs(20))?;
    let said = fwlog.stderr_text();
    assert!(
        net.host.pin_dir().exists(),
        "the pins the rules name stay: {said}"
    );
    assert!(!exit.success(), "{said}");
    assert!(
        said.contains("has rules an earlier fwlog left here, which name its pins: run `nsenter"),
        "{said}"
    );
    fwlog_ok(&net, &["uninstall"])?;
    assert_eq!(net.host.saved_rules()?, before);
    Ok(())
}
