//! Putting fwlog in place, shared by `watch` (for a session) and `install` (to stay): load the
//! programs, attach the flow and process hooks, pin the verdict programs, install the rules.

use anyhow::Result;
use aya::Ebpf;

use crate::{
    collector::KernelLogger,
    firewall::{iptables, plan::install_script, plan::RuleOptions, Family},
    installation::{self, Installation},
    loader::{self, LoadOptions, ProcessAttachments},
    netns::NetNs,
    pin_dir::record::Mode,
    settings::WatchSettings,
    ssh_guard,
    tc_attach::{self, FlowAttachments},
};

/// Everything in place; `installation` removes the pins and rules on drop unless kept.
pub struct Setup {
    pub ebpf: Ebpf,
    pub installation: Installation,
    pub options: RuleOptions,
    pub flows: Option<FlowAttachments>,
    pub processes: Option<ProcessAttachments>,
    pub logger: Option<KernelLogger>,
}

pub fn set_up(
    settings: &WatchSettings,
    interfaces: Vec<String>,
    netns: NetNs,
    mode: Mode,
) -> Result<Setup> {
    // What an earlier fwlog left here keeps enforcing while the programs load: the pins make
    // way for the new ones (`Installation::pin`), its rules go in the transactions that add the
    // new rules (`Installation::install_rules`).
    if !settings.install_rules {
        installation::refuse_leftover_rules(netns)?;
    }
    let track_flows = settings.flows;
    let mut ebpf = loader::load(&LoadOptions {
        ring_bytes: settings.ring_size,
        flow_table: track_flows.then_some(settings.flow_table_size),
        dns: settings.learn_names,
        processes: settings.name_processes,
    })?;
    crate::interrupt::check(0)?;
    let processes = if !settings.name_processes {
        None
    } else {
        let links = loader::attach_process_programs(&mut ebpf)?;
        if links.is_none() {
            eprintln!("fwlog: no cgroup v2 mount found: processes will not be named");
        }
        links
    };
    let logger = match aya_log::EbpfLogger::init(&mut ebpf) {
        Ok(logger) => Some(logger),
        Err(error) => {
            log::warn!("kernel-side diagnostics unavailable: {error}");
            None
        }
    };
    let mut installation = Installation::new(netns, mode);
    installation.pin(&mut ebpf)?;
    let options = settings.rules.options(interfaces, netns);
    let flows = if track_flows {
        Some(tc_attach::attach_flow_programs(
            &mut ebpf,
            &options.interfaces,
            &netns.pin_dir(),
        )?)
    } else {
        None
    };
    if !settings.install_rules {
        eprintln!("fwlog: programs pinned, no rules installed; rules that use them:");
        for family in Family::ALL {
            let existing = iptables::save(family).map(|t| t.chains).unwrap_or_default();
            eprint!(
                "# {}-restore --noflush\n{}",
                family.command(),
                install_script(&options, &existing)
            );
        }
    } else {
        if !settings.rules.force {
            let session = std::env::var("SSH_CONNECTION").ok();
            ssh_guard::check(
                session.as_deref(),
                &ssh_guard::interface_addresses(),
                &options,
            )
            .map_err(anyhow::Error::msg)?;
        }
        installation.install_rules(&options)?;
    }
    if let Some(record) = installation.record_mut() {
        record.interfaces = options.interfaces.clone();
    }
    // An install is in place once its maps and links are pinned too (`Installation::keep`).
    if mode == Mode::Session {
        installation.activate()?;
    }
    Ok(Setup {
        ebpf,
        installation,
        options,
        flows,
        processes,
        logger,
    })
}
