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

/// The package's unit (`cargo xtask deb` ships it as the vendor unit): the one text both the
/// package and `--enable` use.
pub const PACKAGED_UNIT: &str = include_str!("../../packaging/fwlog.service");
/// Where the package installs fwlog, as the packaged unit names it.
const PACKAGED_EXE: &str = "/usr/sbin/fwlog";

/// The unit's text: the packaged unit with `exe` for fwlog, `install_args` (the arguments
/// `fwlog install` got, without `--enable`) after its `install`, `output` for the log file and
/// `reader_args` (those of the install's arguments the reader repeats: metrics, IPFIX, the
/// host's name, the configuration file) after its `watch`.
pub fn unit_text(
    exe: &Path,
    install_args: &[String],
    reader_args: &[String],
    output: &Path,
) -> String {
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
    let exe = quote(&exe.to_string_lossy());
    let mut install = format!("ExecStartPre={exe} install");
    for arg in install_args {
        install.push(' ');
        install.push_str(&quote(arg));
    }
    let mut watch = format!(
        "ExecStart={exe} watch --output {}",
        quote(&output.to_string_lossy())
    );
    for arg in reader_args {
        watch.push(' ');
        watch.push_str(&quote(arg));
    }
    PACKAGED_UNIT
        .lines()
        .map(|line| {
            if line == format!("ExecStartPre={PACKAGED_EXE} install") {
                install.as_str()
            } else if line.starts_with(&format!("ExecStart={PACKAGED_EXE} watch ")) {
                watch.as_str()
            } else {
                line
            }
        })
        .flat_map(|line| [line, "\n"])
        .collect()
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
            &["--metrics".into(), "127.0.0.1:9477".into()],
            Path::new(DEFAULT_LOG),
        );
        assert!(text.contains("ExecStartPre=/usr/local/bin/fwlog install wlan0 --allow-in 22/tcp --prefix \"O Y\"\n"), "{text}");
        assert!(text.contains("ExecStart=/usr/local/bin/fwlog watch --output /var/log/fwlog/fwlog.jsonl --metrics 127.0.0.1:9477\n"));
        assert!(text.contains("WantedBy=multi-user.target\n"));
        assert!(!text.contains(PACKAGED_EXE), "{text}");
    }

    #[test]
    fn the_packaged_unit_is_the_enable_unit_with_the_package_paths() {
        let text = unit_text(Path::new(PACKAGED_EXE), &[], &[], Path::new(DEFAULT_LOG));
        assert_eq!(text, PACKAGED_UNIT);
        // The lines `unit_text` replaces are there to be replaced.
        assert!(PACKAGED_UNIT.contains(&format!("\nExecStartPre={PACKAGED_EXE} install\n")));
        assert!(PACKAGED_UNIT.contains(&format!(
            "\nExecStart={PACKAGED_EXE} watch --output {DEFAULT_LOG}\n"
        )));
    }
}
