//! `fwlog install --enable`: a systemd unit that installs fwlog at boot and keeps a reader
//! writing the log file; `fwlog uninstall` disables and removes it.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result};

pub const UNIT_DIR: &str = "/etc/systemd/system";
pub const UNIT_NAME: &str = "fwlog.service";
/// Where the unit's reader writes, unless the install named an output.
pub const DEFAULT_LOG: &str = "/var/log/fwlog/fwlog.jsonl";

/// The unit's text: `install_args` are the arguments `fwlog install` got (without `--enable`).
pub fn unit_text(exe: &Path, install_args: &[String], output: &Path) -> String {
    let quote = |arg: &str| {
        if arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@".contains(c))
        {
            arg.to_string()
        } else {
            format!("\"{}\"", arg.replace('\\', "\\\\").replace('"', "\\\""))
        }
    };
    let args: Vec<String> = install_args.iter().map(|a| quote(a)).collect();
    let exe = exe.display();
    format!(
        "[Unit]\n\
         Description=fwlog: iptables LOG_AND_* firewall with eBPF logging\n\
         Documentation=man:fwlog(1)\n\
         After=network-online.target\n\
         Wants=network-online.target\n\
         \n\
         [Service]\n\
         Type=simple\n\
         ExecStartPre={exe} install {}\n\
         ExecStart={exe} watch --format json --output {}\n\
         Restart=on-failure\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n",
        args.join(" "),
        quote(&output.to_string_lossy()),
    )
}

/// Writes the unit into `unit_dir` and enables it where systemd runs. Returns what it did.
pub fn enable(unit_dir: &Path, text: &str) -> Result<String> {
    std::fs::create_dir_all(unit_dir)
        .with_context(|| format!("creating {}", unit_dir.display()))?;
    let path = unit_dir.join(UNIT_NAME);
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    if !systemd_runs() {
        return Ok(format!(
            "wrote {}; systemd is not running here, so nothing enables it: to install at boot \
             without systemd, run the unit's two commands from your init (e.g. /etc/rc.local)",
            path.display()
        ));
    }
    for args in [vec!["daemon-reload"], vec!["enable", UNIT_NAME]] {
        let status = Command::new("systemctl")
            .args(&args)
            .status()
            .context("running systemctl")?;
        anyhow::ensure!(
            status.success(),
            "systemctl {} failed ({status})",
            args.join(" ")
        );
    }
    Ok(format!("wrote and enabled {}", path.display()))
}

/// Disables and removes the unit, if there is one. Returns whether there was.
pub fn disable(unit_dir: &Path) -> Result<bool> {
    let path: PathBuf = unit_dir.join(UNIT_NAME);
    if !path.exists() {
        return Ok(false);
    }
    if systemd_runs() {
        let _ = Command::new("systemctl")
            .args(["disable", UNIT_NAME])
            .status();
    }
    std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
    if systemd_runs() {
        let _ = Command::new("systemctl").arg("daemon-reload").status();
    }
    Ok(true)
}

/// sd_booted(3): systemd is PID 1 when /run/systemd/system exists.
fn systemd_runs() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unit_reinstalls_and_reads() {
        let text = unit_text(
            Path::new("/usr/local/bin/fwlog"),
            &[
                "wlan0".into(),
                "--allow-in".into(),
                "22/tcp".into(),
                "--prefix".into(),
                "O Y".into(),
            ],
            Path::new(DEFAULT_LOG),
        );
        assert!(text.contains("ExecStartPre=/usr/local/bin/fwlog install wlan0 --allow-in 22/tcp --prefix \"O Y\"\n"), "{text}");
        assert!(text.contains("ExecStart=/usr/local/bin/fwlog watch --format json --output /var/log/fwlog/fwlog.jsonl\n"));
        assert!(text.contains("WantedBy=multi-user.target\n"));
        assert!(text.starts_with("[Unit]\n"));
    }
}
