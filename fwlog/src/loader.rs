//! Loading fwlog's eBPF object, pinning the verdict programs where iptables' `-m bpf` finds them
//! and the namespace link that tells later fwlogs whether this namespace still exists. Taking
//! pin directories away is `pin_dir`'s job.

use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result};
use aya::{
    programs::{
        cgroup_sock_addr::CgroupSockAddrLinkId, links::FdLink, CgroupAttachMode, CgroupSockAddr,
        SkLookup, SocketFilter,
    },
    Ebpf, EbpfLoader,
};
use fwlog_common::{
    event::{Action, CtState},
    flow::flow_table_entries,
    programs::{
        verdict_program, COUNTERS_MAP, DNS_CAPTURE_GLOBAL, EVENTS_MAP, EVENT_RINGS_MAP, FLOWS_MAP,
        FLOW_FILTER_MAP, FLOW_TRACKING_GLOBAL, NETNS_ALIVE_PROGRAM, PROCESS_PROGRAMS,
        RING_WAKE_GLOBAL,
    },
};

use crate::{cpu_rings, pin_dir::NETNS_LINK_PIN};

/// The object built from fwlog-ebpf by build.rs.
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/fwlog"));

/// Sizes chosen on the command line.
pub struct LoadOptions {
    /// The size of each ring buffer: the shared one and each CPU's.
    pub ring_bytes: u32,
    /// `Some(entries)`: keep the flow table (tc programs) with that many entries.
    pub flow_table: Option<u32>,
    /// Copy DNS answers to the collector (needs the tc programs: `flow_table`).
    pub dns: bool,
    /// Load the cgroup hooks that record which process uses each socket.
    pub processes: bool,
}

/// Loads the object with the chosen map sizes and loads (verifies) every program it will use,
/// except the tc programs, which `tc_attach` loads for the interfaces' link type.
pub fn load(options: &LoadOptions) -> Result<Ebpf> {
    let kernel_log_level = log::max_level() as u8;
    let flow_tracking = u8::from(options.flow_table.is_some());
    let dns_capture = u8::from(options.dns && options.flow_table.is_some());
    let ring_wake_bytes = u64::from(options.ring_bytes / 8);
    let cpus = cpu_rings::possible_cpus()?;
    let mut loader = EbpfLoader::new();
    loader
        .map_max_entries(EVENTS_MAP, options.ring_bytes)
        .map_max_entries(EVENT_RINGS_MAP, cpus)
        .override_global(aya_log::LEVEL, &kernel_log_level, false)
        .override_global(RING_WAKE_GLOBAL, &ring_wake_bytes, true)
        .override_global(FLOW_TRACKING_GLOBAL, &flow_tracking, true)
        .override_global(DNS_CAPTURE_GLOBAL, &dns_capture, true);
    if let Some(flows) = options.flow_table {
        // One LRU for all CPUs, with room for the free entries each CPU may hold back, so it
        // holds `flows` in all before the kernel evicts any.
        loader.map_max_entries(FLOWS_MAP, flow_table_entries(flows, cpus));
    }
    let mut ebpf = loader.load(EBPF_OBJECT).context(
        "loading fwlog's eBPF object (does this kernel have BPF, BTF and ring buffers?)",
    )?;
    cpu_rings::create(&mut ebpf, options.ring_bytes)?;
    for (action, state) in verdict_programs() {
        let name = verdict_program(action, state);
        socket_filter(&mut ebpf, name)?
            .load()
            .with_context(|| format!("loading the eBPF program {name} into the kernel"))?;
    }
    if options.processes {
        for name in PROCESS_PROGRAMS {
            sock_addr_program(&mut ebpf, name)?
                .load()
                .with_context(|| format!("loading the eBPF program {name} into the kernel"))?;
        }
    }
    Ok(ebpf)
}

/// The cgroup hooks, attached to the root of the cgroup v2 hierarchy (links: detached when
/// fwlog exits, however it exits). `None` when the machine has no cgroup v2 mount.
pub fn attach_process_programs(ebpf: &mut Ebpf) -> Result<Option<ProcessAttachments>> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").context("reading mountinfo")?;
    let Some(root) = cgroup2_mount(&mountinfo) else {
        return Ok(None);
    };
    let cgroup = fs::File::open(&root).with_context(|| format!("opening the cgroup {root}"))?;
    let mut links = Vec::new();
    for name in PROCESS_PROGRAMS {
        // Link-based attachment: the kernel wants no flags here (links always allow several
        // programs; kernel/bpf/cgroup.c, cgroup_bpf_link_attach), which aya's `Single` means.
        let link = sock_addr_program(ebpf, name)?
            .attach(&cgroup, CgroupAttachMode::Single)
            .with_context(|| format!("attaching {name} to the cgroup {root}"))?;
        links.push((name, link));
    }
    Ok(Some(ProcessAttachments { links }))
}

/// The cgroup hooks' links (detached when dropped with the object, unless pinned).
pub struct ProcessAttachments {
    links: Vec<(&'static str, CgroupSockAddrLinkId)>,
}

impl ProcessAttachments {
    /// Pins the links, so the hooks stay after fwlog exits (`fwlog install`).
    pub fn pin(self, ebpf: &mut Ebpf, pin_dir: &Path) -> Result<()> {
        for (name, link) in self.links {
            let link = sock_addr_program(ebpf, name)?.take_link(link)?;
            let path = pin_dir.join(format!("link_{name}"));
            FdLink::try_from(link)
                .context("a cgroup link that cannot be pinned")?
                .pin(&path)
                .with_context(|| format!("pinning {}", path.display()))?;
        }
        Ok(())
    }
}

/// Where cgroup v2 is mounted (the fifth field of a mountinfo line whose filesystem type,
/// after the ` - ` separator, is cgroup2).
pub fn cgroup2_mount(mountinfo: &str) -> Option<String> {
    mountinfo.lines().find_map(|line| {
        let (mount, fs) = line.split_once(" - ")?;
        (fs.split_whitespace().next()? == "cgroup2")
            .then(|| mount.split_whitespace().nth(4).map(str::to_string))
            .flatten()
    })
}

fn sock_addr_program<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut CgroupSockAddr> {
    ebpf.program_mut(name)
        .with_context(|| format!("the eBPF object has no program {name}"))?
        .try_into()
        .with_context(|| format!("{name} is not a cgroup/sock_addr program"))
}

/// Pins every verdict program under `pin_dir`.
pub fn pin_verdict_programs(ebpf: &mut Ebpf, pin_dir: &Path) -> Result<()> {
    fs::create_dir_all(pin_dir).with_context(|| format!("creating {}", pin_dir.display()))?;
    for (action, state) in verdict_programs() {
        let name = verdict_program(action, state);
        pin_verdict_program(ebpf, name, &pin_dir.join(name))?;
    }
    Ok(())
}

/// Pins the verdict program `name` at `path`.
pub fn pin_verdict_program(ebpf: &mut Ebpf, name: &str, path: &Path) -> Result<()> {
    socket_filter(ebpf, name)?
        .pin(path)
        .with_context(|| format!("pinning {name} at {}", path.display()))
}

/// The verdict programs' names.
pub fn verdict_program_names() -> impl Iterator<Item = &'static str> {
    verdict_programs().map(|(action, state)| verdict_program(action, state))
}

/// Attaches `netns_alive` to this network namespace and pins the link in `pin_dir`, so that
/// any fwlog can later tell whether the namespace still exists. Returns false, after saying
/// why, on kernels without sk_lookup programs (before 5.9): their pin directories are judged
/// by what holds their namespace instead.
pub fn pin_netns_link(ebpf: &mut Ebpf, pin_dir: &Path) -> Result<bool> {
    let program: &mut SkLookup = ebpf
        .program_mut(NETNS_ALIVE_PROGRAM)
        .with_context(|| format!("the eBPF object has no program {NETNS_ALIVE_PROGRAM}"))?
        .try_into()
        .with_context(|| format!("{NETNS_ALIVE_PROGRAM} is not an sk_lookup program"))?;
    if let Err(error) = program.load() {
        log::warn!("no namespace link (sk_lookup programs need Linux 5.9): {error}");
        return Ok(false);
    }
    let netns = fs::File::open("/proc/self/ns/net").context("opening /proc/self/ns/net")?;
    let link = program
        .attach(&netns)
        .context("attaching netns_alive to this network namespace")?;
    let link = FdLink::from(program.take_link(link)?);
    let path = pin_dir.join(NETNS_LINK_PIN);
    link.pin(&path)
        .with_context(|| format!("pinning {}", path.display()))?;
    Ok(true)
}

/// Pinned maps of an installed fwlog, by the name the reader opens them under.
pub const PINNED_MAPS: [&str; 5] = [
    EVENTS_MAP,
    EVENT_RINGS_MAP,
    COUNTERS_MAP,
    FLOWS_MAP,
    FLOW_FILTER_MAP,
];

fn map_pin(pin_dir: &Path, name: &str) -> PathBuf {
    pin_dir.join(format!("map_{name}"))
}

/// Whether `fwlog install` left a setup here (its ring buffer is pinned).
pub fn is_installed(pin_dir: &Path) -> bool {
    map_pin(pin_dir, EVENTS_MAP).exists()
}

/// Pins the maps a later reader needs (`fwlog install`).
pub fn pin_maps(ebpf: &Ebpf, pin_dir: &Path) -> Result<()> {
    for name in PINNED_MAPS {
        let map = ebpf
            .map(name)
            .with_context(|| format!("the eBPF object has no map {name}"))?;
        let path = map_pin(pin_dir, name);
        map.pin(&path)
            .with_context(|| format!("pinning {name} at {}", path.display()))?;
    }
    Ok(())
}

/// The maps of an installed setup, opened from their pins (`fwlog watch`, `fwlog status`).
pub fn open_pinned_map(pin_dir: &Path, name: &str) -> Result<aya::maps::MapData> {
    let path = map_pin(pin_dir, name);
    aya::maps::MapData::from_pin(&path)
        .with_context(|| format!("opening the pinned map {}", path.display()))
}

fn verdict_programs() -> impl Iterator<Item = (Action, CtState)> {
    Action::ALL
        .into_iter()
        .flat_map(|action| CtState::ALL.into_iter().map(move |state| (action, state)))
}

fn socket_filter<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut SocketFilter> {
    ebpf.program_mut(name)
        .with_context(|| format!("the eBPF object has no program {name}"))?
        .try_into()
        .with_context(|| format!("{name} is not a socket filter"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_cgroup2_mount() {
        let hybrid = "30 24 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755\n\
                      41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
        assert_eq!(
            cgroup2_mount(hybrid).as_deref(),
            Some("/sys/fs/cgroup/unified")
        );
        let unified = "35 24 0:30 / /sys/fs/cgroup rw,nosuid shared:9 - cgroup2 cgroup2 rw\n";
        assert_eq!(cgroup2_mount(unified).as_deref(), Some("/sys/fs/cgroup"));
        assert_eq!(cgroup2_mount("22 1 0:5 / /proc rw - proc proc rw\n"), None);
    }
}
