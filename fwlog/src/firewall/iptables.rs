//! Running iptables-save and iptables-restore (and their ip6tables twins). No shell is involved:
//! scripts go to iptables-restore's standard input.

use std::{
    io::Write as _,
    process::{Command, Stdio},
};

use anyhow::{bail, Context as _, Result};

use super::{removal::FilterTable, Family};

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
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(FilterTable::parse(&String::from_utf8_lossy(&output.stdout)))
}

/// Applies `script` in one transaction with `iptables-restore --noflush`: all of it or nothing.
pub fn restore(family: Family, script: &str) -> Result<()> {
    let command = format!("{}-restore", family.command());
    let mut child = Command::new(&command)
        .args(["--noflush", "--wait"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {command}"))?;
    child
        .stdin
        .take()
        .context("iptables-restore has no standard input")?
        .write_all(script.as_bytes())
        .with_context(|| format!("writing the rules to {command}"))?;
    let output = child
        .wait_with_output()
        .with_context(|| format!("waiting for {command}"))?;
    if !output.status.success() {
        bail!(
            "{}",
            explain_restore_failure(family, &String::from_utf8_lossy(&output.stderr))
        );
    }
    Ok(())
}

/// Turns iptables-restore's complaint into a message that says what to do.
pub fn explain_restore_failure(family: Family, stderr: &str) -> String {
    let stderr = one_line(stderr);
    let stderr = stderr.as_str();
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
}
