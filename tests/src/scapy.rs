//! Hostile traffic: raw frames built with scapy and sent from inside a namespace, as an attacker
//! on the wire would (spoofed sources, broken lengths, bad checksums, forged TCP segments).
//!
//! scapy comes from the system's package (Debian's `python3-scapy`, installed by
//! `cargo xtask setup`); the interpreter is the one its `scapy` launcher names, so a Python on
//! PATH without scapy (pyenv, a virtualenv) does not get in the way.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};

use crate::NetNsGuard;

/// Where the scapy launcher is looked for, besides PATH.
const LAUNCHER_DIRS: [&str; 2] = ["/usr/bin", "/usr/local/bin"];

/// The Python interpreter that has scapy: the one in the `#!` line of the `scapy` launcher.
pub fn python() -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let launcher = std::env::split_paths(&path)
        .chain(LAUNCHER_DIRS.iter().map(PathBuf::from))
        .map(|dir| dir.join("scapy"))
        .find(|candidate| candidate.is_file())
        .context(
            "scapy is not installed: the hostile-traffic tests need it \
             (`cargo xtask setup` installs python3-scapy)",
        )?;
    interpreter_of(&launcher)
}

fn interpreter_of(launcher: &Path) -> Result<PathBuf> {
    let text = std::fs::read_to_string(launcher)
        .with_context(|| format!("reading {}", launcher.display()))?;
    let first = text.lines().next().unwrap_or_default();
    let interpreter = first
        .strip_prefix("#!")
        .and_then(|rest| rest.split_whitespace().next())
        .with_context(|| format!("{} has no #! line", launcher.display()))?;
    Ok(PathBuf::from(interpreter))
}

/// Runs `script` (Python, with `from scapy.all import *` done and scapy quiet) inside `netns`;
/// returns what it printed. `IFACE` in the script is the interface to send on.
pub fn run(netns: &NetNsGuard, interface: &str, script: &str) -> Result<String> {
    let program = format!(
        "import sys\nfrom scapy.all import *\nconf.verb = 0\nIFACE = {interface:?}\n{script}\n"
    );
    let output = netns
        .command(python()?)
        .args(["-c", &program])
        .output()
        .context("running scapy")?;
    if !output.status.success() {
        bail!(
            "the scapy script failed: {}\n{program}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The MAC address of `interface` in `netns` (frames to it are for the host, `PACKET_HOST`).
pub fn mac_of(netns: &NetNsGuard, interface: &str) -> Result<String> {
    let shown = netns.output("ip", &["-j", "link", "show", "dev", interface])?;
    let links: serde_json::Value = serde_json::from_str(&shown).context("ip -j link")?;
    links[0]["address"]
        .as_str()
        .map(str::to_string)
        .with_context(|| format!("no address for {interface}: {shown}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interpreter_comes_from_the_launchers_first_line() -> Result<()> {
        let dir = std::env::temp_dir().join(format!("fwlog-scapy-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let launcher = dir.join("scapy");
        std::fs::write(&launcher, "#!/usr/bin/python3 -O\nimport scapy\n")?;
        assert_eq!(
            interpreter_of(&launcher)?,
            PathBuf::from("/usr/bin/python3")
        );
        std::fs::write(&launcher, "import scapy\n")?;
        assert!(interpreter_of(&launcher).is_err());
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }
}
