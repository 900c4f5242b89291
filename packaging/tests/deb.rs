//! The package by itself: lintian, and dpkg in a throwaway Debian root (install, the files,
//! systemd-analyze verify, upgrade, remove, purge), with fwlog's firewall installed in the
//! root's network namespace in between.

use std::{fs, os::unix::fs::PermissionsExt as _, process::Command};

use anyhow::Result;
use fwlog_package_tests::{checked, deb_path, fwlog_rules, Root};
use fwlog_tests::TestNet;

/// lintian finds nothing; the tags it would report are justified one by one in
/// packaging/debian/lintian-overrides, shown here with `--show-overrides`.
#[test]
fn lintian_is_clean() -> Result<()> {
    let output = Command::new("lintian")
        .args(["--fail-on", "error,warning,info,pedantic"])
        .args(["--info", "--pedantic", "--show-overrides"])
        .arg(deb_path())
        .output()?;
    let report = checked("lintian (apt-get install lintian)", output)?;
    println!("lintian {}:\n{report}", deb_path().display());
    let unjustified: Vec<&str> = report
        .lines()
        .filter(|line| !line.starts_with("N:") && !line.starts_with("O:"))
        .collect();
    assert!(unjustified.is_empty(), "lintian: {unjustified:#?}");
    Ok(())
}

#[test]
fn control_fields_name_the_dependencies() -> Result<()> {
    let field = |name: &str| -> Result<String> {
        let output = Command::new("dpkg-deb")
            .args(["--field"])
            .arg(deb_path())
            .arg(name)
            .output()?;
        Ok(checked("dpkg-deb --field", output)?.trim().to_string())
    };
    assert_eq!(field("Package")?, "fwlog");
    assert_eq!(field("Architecture")?, "amd64");
    let depends = field("Depends")?;
    assert!(depends.contains("iptables"), "Depends: {depends}");
    assert!(
        depends.contains("procps"),
        "Depends: {depends} (the unit's /bin/kill)"
    );
    assert!(depends.contains("libc6"), "Depends: {depends}");
    let file = deb_path();
    let file_name = file.file_name().map(|n| n.to_string_lossy().into_owned());
    assert_eq!(
        file_name.as_deref(),
        Some(format!("fwlog_{}_amd64.deb", field("Version")?).as_str())
    );
    Ok(())
}

#[test]
fn install_upgrade_remove_purge_in_a_throwaway_root() -> Result<()> {
    let net = TestNet::new()?;
    let root = Root::new()?;
    let installed = root.run_ok(&net.host, "dpkg -i /var/tmp/fwlog.deb 2>&1")?;
    println!("dpkg -i:\n{installed}");

    // The files, where Debian looks for them.
    for (path, mode) in [
        ("/usr/sbin/fwlog", 0o755),
        ("/usr/lib/systemd/system/fwlog.service", 0o644),
        ("/etc/fwlog/fwlog.toml", 0o644),
        ("/etc/logrotate.d/fwlog", 0o644),
        ("/usr/share/man/man8/fwlog.8.gz", 0o644),
        ("/usr/share/man/man8/fwlog-install.8.gz", 0o644),
        ("/usr/share/bash-completion/completions/fwlog", 0o644),
        ("/usr/share/zsh/vendor-completions/_fwlog", 0o644),
        ("/usr/share/fish/vendor_completions.d/fwlog.fish", 0o644),
        ("/usr/share/doc/fwlog/copyright", 0o644),
        ("/usr/share/doc/fwlog/changelog.gz", 0o644),
    ] {
        let metadata = fs::metadata(root.path(path))
            .map_err(|error| anyhow::anyhow!("{path} after dpkg -i: {error}"))?;
        assert_eq!(metadata.permissions().mode() & 0o7777, mode, "{path}");
    }
    let unit = fs::read_to_string(root.path("/usr/lib/systemd/system/fwlog.service"))?;
    assert_eq!(
        unit,
        include_str!("../fwlog.service"),
        "the packaged unit is packaging/fwlog.service"
    );
    let conffiles = fs::read_to_string(root.path("/var/lib/dpkg/info/fwlog.conffiles"))?;
    assert!(
        conffiles.contains("/etc/fwlog/fwlog.toml") && conffiles.contains("/etc/logrotate.d/fwlog"),
        "conffiles: {conffiles}"
    );

    // Installed, not enabled, not started; the unit and the conffile pass their checkers.
    let enabled = root.run(&net.host, "systemctl is-enabled fwlog.service")?;
    assert_eq!(String::from_utf8_lossy(&enabled.stdout).trim(), "disabled");
    let verify = root.run_ok(
        &net.host,
        "systemd-analyze verify /usr/lib/systemd/system/fwlog.service 2>&1",
    )?;
    println!("systemd-analyze verify fwlog.service: {verify:?}");
    assert_eq!(verify.trim(), "", "systemd-analyze verify complained");
    let config = root.run_ok(&net.host, "fwlog config check")?;
    assert!(config.contains("allow_in = [\"22/tcp\"]"), "{config}");
    assert!(fwlog_rules(&net.host.saved_rules()?).is_empty());

    // The firewall installed, as an admin would; an upgrade (the same package again) leaves it.
    root.run_ok(&net.host, &format!("fwlog install {} 2>&1", net.host_if))?;
    let before = net.host.saved_rules()?;
    assert!(
        before.contains("LOG_AND_DROP"),
        "no fwlog rules after install: {before}"
    );
    let pins = root.fwlog_pins();
    assert!(pins.len() > 1, "no pins after install: {pins:?}");
    let upgrade = root.run_ok(&net.host, "dpkg -i /var/tmp/fwlog.deb 2>&1")?;
    assert_eq!(
        fwlog_rules(&net.host.saved_rules()?),
        fwlog_rules(&before),
        "the upgrade changed the firewall: {upgrade}"
    );
    assert_eq!(root.fwlog_pins(), pins, "the upgrade changed the pins");

    // An admin's edit, which purge must remove as well.
    fs::write(
        root.path("/etc/fwlog/fwlog.toml"),
        format!("interfaces = [\"{}\"]\n", net.host_if),
    )?;

    // Remove: the firewall goes with the package; the conffiles stay.
    let removed = root.run_ok(&net.host, "dpkg -r fwlog 2>&1")?;
    println!("dpkg -r:\n{removed}");
    let after = net.host.saved_rules()?;
    assert!(
        fwlog_rules(&after).is_empty(),
        "fwlog rules left after dpkg -r: {after}"
    );
    let pins = root.fwlog_pins();
    assert!(
        pins.iter().all(|pin| !pin.contains('/')),
        "pins left after dpkg -r: {pins:?}"
    );
    assert!(!root.path("/usr/sbin/fwlog").exists());
    assert!(root.path("/etc/fwlog/fwlog.toml").exists());
    let status = root.run_ok(&net.host, "dpkg-query -W -f '${Status}' fwlog")?;
    assert_eq!(status, "deinstall ok config-files");

    // Purge: the conffiles (edited or not) and the logs go too.
    fs::create_dir_all(root.path("/var/log/fwlog"))?;
    fs::write(root.path("/var/log/fwlog/fwlog.jsonl"), "{}\n")?;
    let purged = root.run_ok(&net.host, "dpkg -P fwlog 2>&1")?;
    println!("dpkg -P:\n{purged}");
    for gone in ["/etc/fwlog", "/etc/logrotate.d/fwlog", "/var/log/fwlog"] {
        assert!(!root.path(gone).exists(), "{gone} left after dpkg -P");
    }
    let status = root.run(&net.host, "dpkg-query -W -f '${Status}' fwlog")?;
    assert!(
        !status.status.success()
            || String::from_utf8_lossy(&status.stdout).contains("not-installed"),
        "dpkg still knows fwlog after purge: {status:?}"
    );
    Ok(())
}
