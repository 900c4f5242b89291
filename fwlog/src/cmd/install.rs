//! `fwlog install`: put fwlog in place to stay. The verdict programs, the maps a reader needs
//! and the tc and cgroup links are pinned under bpffs, the rules installed; the firewall then
//! enforces and records with no reader running, until `fwlog uninstall`.

use anyhow::Result;

use crate::{
    args::InstallArgs,
    installation::{self, Slot},
    interfaces, interrupt, loader,
    netns::{InstanceLock, NetNs},
    pin_dir::record::Mode,
    preflight,
    session::setup::set_up,
    settings, systemd,
    unread::{self, EarlierRing},
};

pub fn run(args: InstallArgs) -> Result<()> {
    let watch = &args.watch;
    let mut settings = settings::watch_settings(watch, &settings::load_config(&watch.rules)?);
    preflight::require_root("install")?;
    let interfaces = interfaces::resolve(&settings.rules.interfaces)?;
    preflight::require_kernel()?;
    settings.name_processes =
        preflight::require_kernel_for(settings.flows, settings.name_processes)?;
    preflight::require_bpffs()?;
    preflight::require_iptables()?;
    interrupt::catch()?;
    let netns = NetNs::current()?;
    let _lock = InstanceLock::acquire(netns)?;
    let pin_dir = netns.pin_dir();
    if matches!(installation::inspect_slot(netns)?, Slot::Installed) {
        eprintln!(
            "fwlog: replacing the setup installed here (its rules enforce until the new ones \
             replace them)"
        );
    }
    let mut setup = set_up(&settings, interfaces, netns, Mode::Installed)?;
    // The earlier install's rules and links are gone: nothing writes into its ring any more.
    let unread = setup
        .installation
        .take_earlier_ring()
        .map(EarlierRing::count)
        .unwrap_or_default();
    setup.installation.wait_for_grace()?;
    loader::pin_maps(&setup.ebpf, &pin_dir)?;
    if unread.total() > 0 {
        unread::carry(&pin_dir, unread.total())?;
        eprintln!(
            "fwlog: the earlier install recorded {} events no reader read ({} still in its ring, \
             {} lost to its full ring): the next reader reports them as lost (where: replaced)",
            unread.total(),
            unread.pending,
            unread.lost
        );
    }
    if let Some(flows) = setup.flows.take() {
        flows.pin(&pin_dir)?;
    }
    if let Some(processes) = setup.processes.take() {
        processes.pin(&mut setup.ebpf, &pin_dir)?;
    }
    interrupt::check(0)?;
    let interfaces = setup.options.interfaces.join(", ");
    setup.installation.keep()?;
    crate::pin_dir::mention_orphans(netns);
    eprintln!(
        "fwlog: installed on {interfaces}: `fwlog watch` reads it, `fwlog status` shows it, \
         `fwlog uninstall` removes it"
    );
    if args.enable {
        let exe = std::env::current_exe()?;
        let install_args = unit_install_args(std::env::args().skip(2));
        let reader_args = unit_reader_args(&install_args);
        let output = settings
            .output
            .clone()
            .unwrap_or_else(|| systemd::DEFAULT_LOG.into());
        let did = systemd::enable(
            &args.unit_dir,
            &systemd::unit_text(&exe, &install_args, &reader_args, &output),
        )?;
        eprintln!("fwlog: {did}");
    }
    Ok(())
}

/// The arguments the unit's `fwlog install` repeats: this one's, less `--enable` and
/// `--unit-dir`.
fn unit_install_args(args: impl Iterator<Item = String>) -> Vec<String> {
    let mut kept = Vec::new();
    let mut skip_value = false;
    for arg in args {
        if std::mem::take(&mut skip_value) {
            continue;
        }
        match arg.as_str() {
            "--enable" => {}
            "--unit-dir" => skip_value = true,
            _ if arg.starts_with("--unit-dir=") => {}
            _ => kept.push(arg),
        }
    }
    kept
}

/// The options of `args` that the unit's reader (`fwlog watch`) needs as well: what it serves
/// and sends, and how its lines name the host; and the configuration file, where those may be.
fn unit_reader_args(args: &[String]) -> Vec<String> {
    const WITH_VALUE: [&str; 6] = [
        "--metrics",
        "--ipfix",
        "--ipfix-enterprise",
        "--ipfix-template-refresh",
        "--host-name",
        "--config",
    ];
    let mut kept = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let name = arg.split_once('=').map_or(arg.as_str(), |(name, _)| name);
        if arg == "--host-id" {
            kept.push(arg.clone());
        } else if WITH_VALUE.contains(&name) {
            kept.push(arg.clone());
            if !arg.contains('=') {
                kept.extend(args.next().cloned());
            }
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_unit_repeats_the_install_arguments() {
        let args = [
            "wlan0",
            "--enable",
            "--unit-dir",
            "/tmp/u",
            "--allow-in",
            "22/tcp",
            "--unit-dir=/x",
        ];
        assert_eq!(
            super::unit_install_args(args.iter().map(|a| a.to_string())),
            ["wlan0", "--allow-in", "22/tcp"]
        );
    }

    #[test]
    fn the_reader_repeats_what_it_serves_and_sends() {
        let args: Vec<String> = [
            "wlan0",
            "--metrics",
            "127.0.0.1:9477",
            "--allow-in",
            "22/tcp",
            "--ipfix=udp://192.0.2.9:4739",
            "--host-id",
            "--host-name",
            "web-1",
        ]
        .iter()
        .map(|a| a.to_string())
        .collect();
        assert_eq!(
            super::unit_reader_args(&args),
            [
                "--metrics",
                "127.0.0.1:9477",
                "--ipfix=udp://192.0.2.9:4739",
                "--host-id",
                "--host-name",
                "web-1"
            ]
        );
    }
}
