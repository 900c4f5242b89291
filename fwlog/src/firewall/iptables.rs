//! Running iptables-save and iptables-restore (and their ip6tables twins). No shell is involved:
//! scripts go to iptables-restore's standard input.

use std::{
    io::{Read as _, Write as _},
    os::unix::process::{CommandExt as _, ExitStatusExt as _},
    process::{Child, Command, ExitStatus, Stdio},
    time::Duration,
};

use anyhow::{bail, Context as _, Result};

use super::{removal::FilterTable, Family};
use crate::interrupt;

/// The filter table of `family` as it is now.
pub fn save(family: Family) -> Result<FilterTable> {
    let command = format!("{}-save", family.command());
    let output = Command::new(&command)
        .args(["-t", "filter"])
        .stderr(Stdio::piped())
        .output()
        .with_context(|| format!("running {command}"))?;
    if !output.status.success() {
        bail!(
            "{command} -t filter failed: {}",
            reason(output.status, &String::from_utf8_lossy(&output.stderr))
        );
    }
    Ok(FilterTable::parse(&String::from_utf8_lossy(&output.stdout)))
}

/// Applies `script` in one transaction with `iptables-restore --noflush`: all of it or nothing
/// (one table, one commit: nf_tables' batch or legacy's table replace).
///
/// A stop request that comes after `stops_seen` ([`interrupt::stops`]) ends the wait: the child
/// is killed, which cuts its transaction off before or after the commit, never inside it; the
/// caller then takes away whatever of its own may have landed. The child is in its own process
/// group (a terminal's Ctrl-C reaches fwlog, which decides) and dies with fwlog (a SIGKILLed
/// fwlog leaves no restore that applies rules later).
pub fn restore(family: Family, script: &str, stops_seen: usize) -> Result<()> {
    let command = format!("{}-restore", family.command());
    let mut child = spawn_restore(&command)?;
    // The scripts are a few KiB, less than a pipe holds: this cannot block on a child that
    // has not started reading.
    let written = child
        .stdin
        .take()
        .context("iptables-restore has no standard input")?
        .write_all(script.as_bytes());
    let status = loop {
        if let Some(status) = child
            .try_wait()
            .with_context(|| format!("waiting for {command}"))?
        {
            break status;
        }
        if interrupt::check(stops_seen).is_err() {
            kill_group(&mut child);
            bail!("interrupted while {command} was running (it was stopped)");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    if !status.success() {
        bail!(
            "{}",
            explain_restore_failure(family, &reason(status, &stderr))
        );
    }
    written.with_context(|| format!("writing the rules to {command}"))?;
    Ok(())
}

fn spawn_restore(command: &str) -> Result<Child> {
    let parent = std::process::id() as libc::pid_t;
    let mut restore = Command::new(command);
    restore
        .args(["--noflush", "--wait"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: only async-signal-safe calls (setpgid, prctl, getppid, _exit) between fork and exec.
    unsafe {
        restore.pre_exec(move || {
            if libc::setpgid(0, 0) != 0
                || libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            // fwlog died before the death signal was armed: apply nothing.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    restore
        .spawn()
        .with_context(|| format!("running {command}"))
}

/// Kills the child's process group (a wrapper script's children too) and reaps the child.
fn kill_group(child: &mut Child) {
    if let Ok(pgid) = i32::try_from(child.id()) {
        // SAFETY: a plain kill(2) of the group the child leads.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// What a failed command said, or how it ended when it said nothing.
fn reason(status: ExitStatus, stderr: &str) -> String {
    let said = one_line(stderr);
    if !said.is_empty() {
        return said;
    }
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}, and nothing on stderr"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        (None, None) => format!("{status}"),
    }
}

/// Turns iptables-restore's complaint into a message that says what to do.
pub fn explain_restore_failure(family: Family, stderr: &str) -> String {
    let stderr = one_line(stderr);
    let stderr = stderr.as_str();
    let stderr = if stderr.is_empty() {
        "nothing on stderr"
    } else {
        stderr
    };
    let command = format!("{}-restore", family.command());
    let bpf_match_missing = stderr.contains("match `bpf'")
        || stderr.contains("match \"bpf\"")
        || stderr.contains("Extension bpf")
        || (stderr.contains("bpf") && stderr.contains("missing kernel module"));
    if bpf_match_missing {
        format!(
            "the iptables bpf match (xt_bpf) is missing for {}: load the kernel module with \
             `modprobe xt_bpf` (CONFIG_NETFILTER_XT_MATCH_BPF) and make sure the iptables \
             extension libxt_bpf.so is installed ({command} said: {stderr})",
            family.command()
        )
    } else if stderr.contains("conntrack") && stderr.contains("missing kernel module") {
        format!(
            "the iptables conntrack match is missing: `modprobe xt_conntrack` \
             ({command} said: {stderr})"
        )
    } else {
        format!("{command} refused fwlog's rules: {stderr}")
    }
}

/// iptables' complaint on one line, without its "Try `iptables-restore -h'" advice.
fn one_line(stderr: &str) -> String {
    stderr
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with("Try `"))
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_bpf_match_says_what_to_do() {
        let stderr = "iptables-restore v1.8.9 (nf_tables): Couldn't load match `bpf':No such file or directory\n\nError occurred at line: 5\nTry `iptables-restore -h' or 'iptables-restore --help' for more information.\n";
        let message = explain_restore_failure(Family::V4, stderr);
        assert!(!message.contains('\n'));
        assert!(
            message.ends_with("No such file or directory; Error occurred at line: 5)"),
            "{message}"
        );
        assert!(message.starts_with("the iptables bpf match (xt_bpf) is missing for iptables"));
        assert!(message.contains("modprobe xt_bpf"));
    }

    #[test]
    fn other_failures_keep_iptables_words() {
        let message = explain_restore_failure(Family::V6, "line 3 failed");
        assert_eq!(
            message,
            "ip6tables-restore refused fwlog's rules: line 3 failed"
        );
    }

    #[test]
    fn a_silent_failure_still_has_a_reason() {
        let exited = ExitStatus::from_raw(1 << 8);
        assert_eq!(reason(exited, "\n"), "exit status 1, and nothing on stderr");
        let killed = ExitStatus::from_raw(9);
        assert_eq!(reason(killed, ""), "killed by signal 9");
        let message = explain_restore_failure(Family::V4, &reason(exited, ""));
        assert!(!message.ends_with(": "), "{message}");
        assert!(explain_restore_failure(Family::V4, "").ends_with("nothing on stderr"));
    }
}
