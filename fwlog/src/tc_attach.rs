//! Attaching the tc flow programs to the watched interfaces: TCX links where the kernel has
//! them (Linux 6.6+), else cls_bpf filters on a `clsact` qdisc over netlink, with a record of
//! every filter (and qdisc) fwlog added in the pin directory, so that the end of a session,
//! `uninstall`, and a later fwlog after a SIGKILL remove exactly those.
//!
//! A netlink filter is not a link: it has no fd to pin and does not go away with the process.
//! The records are symlinks in the pin directory (bpffs holds pins, directories and symlinks,
//! no regular files) whose target is the filter's JSON description: removing the pins always
//! goes through [`remove_recorded`] first.

use std::{
    fs,
    io::ErrorKind,
    os::unix::fs::symlink,
    path::{Path, PathBuf},
};

use anyhow::{bail, Context as _, Result};
use aya::{
    programs::{
        links::FdLink,
        tc::{self, NlOptions, SchedClassifierLink, TcAttachOptions, TcError},
        Link as _, LinkOrder, ProgramError, SchedClassifier, TcAttachType,
    },
    sys::SyscallError,
    Ebpf,
};
use fwlog_common::programs::{
    FLOW_EGRESS_L3_PROGRAM, FLOW_EGRESS_PROGRAM, FLOW_INGRESS_L3_PROGRAM, FLOW_INGRESS_PROGRAM,
};
use serde::{Deserialize, Serialize};

use crate::{
    netns::NetNs,
    rtnl::{self, ClsactHook},
};

/// Forces the netlink mode on kernels that have TCX (`FWLOG_TC_ATTACH=netlink`), so the
/// tests of that mode run on any kernel. Not a user option.
pub const MODE_VARIABLE: &str = "FWLOG_TC_ATTACH";

const FILTER_RECORD: &str = "tc_filter_";
const QDISC_RECORD: &str = "tc_qdisc_";

/// How the tc programs are attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachMode {
    /// TCX links (6.6+): detached by the kernel when fwlog exits, pinned by `install`.
    Tcx,
    /// cls_bpf filters on a clsact qdisc: removed by fwlog, by priority and handle.
    Netlink,
}

impl AttachMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AttachMode::Tcx => "tcx",
            AttachMode::Netlink => "netlink",
        }
    }

    /// TCX where the kernel has it: asking for the TCX programs of `lo` is refused with EINVAL
    /// by kernels that do not know the attach type (kernel/bpf/syscall.c, bpf_prog_query).
    pub fn detect() -> Result<AttachMode> {
        match std::env::var(MODE_VARIABLE).as_deref() {
            Ok("netlink") => return Ok(AttachMode::Netlink),
            Ok(other) => bail!("{MODE_VARIABLE}={other:?}: the only value is `netlink`"),
            Err(_) => {}
        }
        match SchedClassifier::query_tcx("lo", TcAttachType::Ingress) {
            Ok(_) => Ok(AttachMode::Tcx),
            Err(ProgramError::SyscallError(SyscallError { io_error, .. }))
                if io_error.raw_os_error() == Some(libc::EINVAL) =>
            {
                Ok(AttachMode::Netlink)
            }
            Err(error) => Err(error).context("asking the kernel whether it has TCX links"),
        }
    }
}

/// One netlink filter fwlog attached, as recorded in the pin directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilterRecord {
    pub interface: String,
    pub ifindex: u32,
    /// `ingress` or `egress`.
    pub hook: String,
    pub program: String,
    pub priority: u16,
    pub handle: u32,
}

/// A clsact qdisc fwlog added (it was not there before), as recorded in the pin directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QdiscRecord {
    pub interface: String,
    pub ifindex: u32,
}

impl FilterRecord {
    fn clsact_hook(&self) -> Option<ClsactHook> {
        match self.hook.as_str() {
            "ingress" => Some(ClsactHook::Ingress),
            "egress" => Some(ClsactHook::Egress),
            _ => None,
        }
    }
}

/// The tc programs attached by this process.
pub struct FlowAttachments {
    mode: AttachMode,
    pin_dir: PathBuf,
    /// TCX links, or netlink filters as aya's links (aya detaches them when they are dropped).
    links: Vec<(&'static str, SchedClassifierLink)>,
}

/// Loads and attaches the flow programs on ingress and egress of every interface: those for
/// Ethernet-like interfaces, or those for interfaces without a link-layer header.
pub fn attach_flow_programs(
    ebpf: &mut Ebpf,
    interfaces: &[String],
    pin_dir: &Path,
) -> Result<FlowAttachments> {
    let mode = AttachMode::detect()?;
    let mut attachments = FlowAttachments {
        mode,
        pin_dir: pin_dir.to_path_buf(),
        links: Vec::new(),
    };
    for interface in interfaces {
        let programs = if has_link_header(interface)? {
            [FLOW_INGRESS_PROGRAM, FLOW_EGRESS_PROGRAM]
        } else {
            [FLOW_INGRESS_L3_PROGRAM, FLOW_EGRESS_L3_PROGRAM]
        };
        if mode == AttachMode::Netlink {
            add_clsact(interface, pin_dir)?;
        }
        for (name, attach_type) in programs
            .into_iter()
            .zip([TcAttachType::Ingress, TcAttachType::Egress])
        {
            let program = classifier(ebpf, name)?;
            if program.fd().is_err() {
                program
                    .load()
                    .with_context(|| format!("loading the eBPF program {name} into the kernel"))?;
            }
            let options = match mode {
                AttachMode::Tcx => TcAttachOptions::TcxOrder(LinkOrder::default()),
                // Priority 0: the kernel picks one ahead of the filters already there.
                AttachMode::Netlink => TcAttachOptions::Netlink(NlOptions::default()),
            };
            let id = program
                .attach_with_options(interface, attach_type, options)
                .with_context(|| format!("attaching {name} to {interface} ({})", mode.as_str()))?;
            let link = program.take_link(id)?;
            if mode == AttachMode::Netlink {
                record_filter(pin_dir, interface, attach_type, name, &link)?;
            }
            attachments.links.push((name, link));
        }
    }
    Ok(attachments)
}

impl FlowAttachments {
    /// Keeps the tc programs attached after fwlog exits (`fwlog install`): TCX links are
    /// pinned; netlink filters stay where they are, found again through their records.
    pub fn pin(self, pin_dir: &Path) -> Result<()> {
        for (index, (name, link)) in self.links.into_iter().enumerate() {
            match self.mode {
                AttachMode::Tcx => {
                    let path = pin_dir.join(format!("link_{name}_{index}"));
                    FdLink::try_from(link)
                        .context("a tc link that cannot be pinned")?
                        .pin(&path)
                        .with_context(|| format!("pinning {}", path.display()))?;
                }
                // aya would delete the filter when its link is dropped; the link holds no
                // fd or memory, only the filter's numbers, so forgetting it leaks nothing.
                AttachMode::Netlink => std::mem::forget(link),
            }
        }
        Ok(())
    }

    /// Detaches every tc program now (before the last sweep of the flow table).
    pub fn detach(self) -> Result<()> {
        let mut first_error = None;
        for (name, link) in self.links {
            if let Err(error) = link.detach() {
                // A filter already removed through its record is not an error.
                if self.mode == AttachMode::Tcx {
                    first_error.get_or_insert(
                        anyhow::Error::new(error).context(format!("detaching {name}")),
                    );
                }
            }
        }
        if self.mode == AttachMode::Netlink {
            if let Err(error) = remove_recorded(&self.pin_dir) {
                first_error.get_or_insert(error);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// Adds a clsact qdisc to the interface unless it has one, and records that fwlog added it.
fn add_clsact(interface: &str, pin_dir: &Path) -> Result<()> {
    match tc::qdisc_add_clsact(interface) {
        Ok(()) => {
            let ifindex = ifindex(interface)?;
            let record = QdiscRecord {
                interface: interface.to_string(),
                ifindex,
            };
            write_record(
                &pin_dir.join(format!("{QDISC_RECORD}{ifindex}")),
                &serde_json::to_string(&record)?,
            )
        }
        Err(TcError::NetlinkError(error)) if error.raw_os_error() == Some(libc::EEXIST) => {
            // An `ingress` qdisc sits where clsact would, with one hook: filters meant for
            // egress would land on ingress (net/sched/sch_ingress.c), silently wrong.
            match rtnl::ingress_qdisc(ifindex(interface)?)?.as_deref() {
                Some("clsact") => Ok(()),
                Some(kind) => bail!(
                    "{interface} has an `{kind}` qdisc where fwlog needs `clsact` for its tc \
                     programs without TCX (clsact has the same ingress hook and an egress one): \
                     replace it (`tc qdisc del dev {interface} {kind}`, `tc qdisc add dev \
                     {interface} clsact`, then add its filters again), or watch with \
                     `--events verdict`"
                ),
                None => bail!(
                    "adding a clsact qdisc to {interface}: the kernel says one exists, \
                     but lists none"
                ),
            }
        }
        Err(error) => Err(error).with_context(|| {
            format!("adding a clsact qdisc to {interface} (needed for tc programs without TCX)")
        }),
    }
}

fn record_filter(
    pin_dir: &Path,
    interface: &str,
    attach_type: TcAttachType,
    program: &str,
    link: &SchedClassifierLink,
) -> Result<()> {
    let hook = match attach_type {
        TcAttachType::Ingress => "ingress",
        _ => "egress",
    };
    let record = FilterRecord {
        interface: interface.to_string(),
        ifindex: ifindex(interface)?,
        hook: hook.to_string(),
        program: program.to_string(),
        priority: link.priority()?,
        handle: u32::from(link.handle()?),
    };
    write_record(
        &pin_dir.join(format!("{FILTER_RECORD}{}_{hook}", record.ifindex)),
        &serde_json::to_string(&record)?,
    )
}

fn write_record(path: &Path, json: &str) -> Result<()> {
    symlink(json, path).with_context(|| format!("recording a tc filter at {}", path.display()))
}

/// The netlink filters and qdiscs recorded in `pin_dir`.
pub fn recorded(pin_dir: &Path) -> Result<(Vec<FilterRecord>, Vec<QdiscRecord>)> {
    let mut filters = Vec::new();
    let mut qdiscs = Vec::new();
    for (path, name) in record_paths(pin_dir)? {
        let target = fs::read_link(&path).with_context(|| format!("reading {}", path.display()))?;
        let json = target.to_string_lossy();
        if name.starts_with(FILTER_RECORD) {
            filters.push(
                serde_json::from_str(&json)
                    .with_context(|| format!("reading the record {}", path.display()))?,
            );
        } else {
            qdiscs.push(
                serde_json::from_str(&json)
                    .with_context(|| format!("reading the record {}", path.display()))?,
            );
        }
    }
    Ok((filters, qdiscs))
}

fn record_paths(pin_dir: &Path) -> Result<Vec<(PathBuf, String)>> {
    let entries = match fs::read_dir(pin_dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(error).with_context(|| format!("reading {}", pin_dir.display())),
    };
    let mut paths = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("reading {}", pin_dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(FILTER_RECORD) || name.starts_with(QDISC_RECORD) {
            paths.push((entry.path(), name));
        }
    }
    paths.sort();
    Ok(paths)
}

/// Removes the netlink filters recorded in `pin_dir`, then the qdiscs fwlog added when no
/// filter is left on them, and their records. A record of another network namespace (an
/// orphaned pin directory) is only deleted: its devices are not this namespace's, and the
/// filters went with its devices. Returns whether there was any record.
pub fn remove_recorded(pin_dir: &Path) -> Result<bool> {
    let paths = record_paths(pin_dir)?;
    if paths.is_empty() {
        return Ok(false);
    }
    let ours = NetNs::current()?.pin_dir() == pin_dir;
    let (filters, qdiscs) = recorded(pin_dir)?;
    if ours {
        for filter in &filters {
            remove_filter(filter)?;
        }
        for qdisc in &qdiscs {
            remove_qdisc(qdisc)?;
        }
    }
    for (path, _) in paths {
        fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
    }
    Ok(true)
}

/// Deletes the filter if it is still there with fwlog's program (the interface may have gone,
/// and its index been given to another).
fn remove_filter(record: &FilterRecord) -> Result<()> {
    let Some(hook) = record.clsact_hook() else {
        return Ok(());
    };
    let present = rtnl::filters(record.ifindex, hook)?
        .into_iter()
        .any(|filter| {
            filter.priority == record.priority
                && filter.handle == record.handle
                && filter.program.as_deref() == Some(record.program.as_str())
        });
    if present {
        rtnl::delete_filter(record.ifindex, hook, record.priority, record.handle).with_context(
            || {
                format!(
                    "removing {} from {} {}",
                    record.program, record.interface, record.hook
                )
            },
        )?;
    }
    Ok(())
}

/// Deletes a qdisc fwlog added, unless someone else's filters use it now.
fn remove_qdisc(record: &QdiscRecord) -> Result<()> {
    let mut others = rtnl::filters(record.ifindex, ClsactHook::Ingress)?;
    others.extend(rtnl::filters(record.ifindex, ClsactHook::Egress)?);
    if others.is_empty() {
        rtnl::delete_clsact(record.ifindex)
            .with_context(|| format!("removing the clsact qdisc of {}", record.interface))?;
    } else {
        eprintln!(
            "fwlog: left the clsact qdisc fwlog added to {}: other tc filters use it now",
            record.interface
        );
    }
    Ok(())
}

/// What `fwlog status` shows of the tc programs.
#[derive(Debug, Serialize)]
pub struct TcStatus {
    /// `tcx` or `netlink`.
    pub mode: &'static str,
    pub filters: Vec<FilterStatus>,
}

#[derive(Debug, Serialize)]
pub struct FilterStatus {
    #[serde(flatten)]
    pub record: FilterRecord,
    /// Whether the kernel still has the filter.
    pub attached: bool,
}

/// How the tc programs of this namespace's fwlog are attached, if they are: netlink filters
/// when records are there, TCX when links are pinned (`install`) or the interfaces have
/// fwlog's programs as TCX programs (a running `watch`).
pub fn status(pin_dir: &Path, interfaces: &[String]) -> Result<Option<TcStatus>> {
    let (filters, _) = recorded(pin_dir)?;
    if !filters.is_empty() {
        let mut statuses = Vec::new();
        for record in filters {
            let attached = match record.clsact_hook() {
                Some(hook) => rtnl::filters(record.ifindex, hook)?.iter().any(|filter| {
                    filter.priority == record.priority && filter.handle == record.handle
                }),
                None => false,
            };
            statuses.push(FilterStatus { record, attached });
        }
        return Ok(Some(TcStatus {
            mode: AttachMode::Netlink.as_str(),
            filters: statuses,
        }));
    }
    let pinned_links = fs::read_dir(pin_dir).is_ok_and(|entries| {
        entries.filter_map(|entry| entry.ok()).any(|entry| {
            entry
                .file_name()
                .to_string_lossy()
                .starts_with("link_flow_")
        })
    });
    let tcx_programs = interfaces.iter().any(|interface| {
        [TcAttachType::Ingress, TcAttachType::Egress]
            .into_iter()
            .any(|hook| {
                SchedClassifier::query_tcx(interface, hook).is_ok_and(|(_, programs)| {
                    programs.iter().any(|program| {
                        program
                            .name_as_str()
                            .is_some_and(|name| name.starts_with("flow_"))
                    })
                })
            })
    });
    Ok((pinned_links || tcx_programs).then_some(TcStatus {
        mode: AttachMode::Tcx.as_str(),
        filters: Vec::new(),
    }))
}

fn ifindex(interface: &str) -> Result<u32> {
    nix::net::if_::if_nametoindex(interface)
        .with_context(|| format!("finding the index of interface {interface}"))
}

fn classifier<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut SchedClassifier> {
    ebpf.program_mut(name)
        .with_context(|| format!("the eBPF object has no program {name}"))?
        .try_into()
        .with_context(|| format!("{name} is not a tc classifier"))
}

/// Whether the interface's packets start with an Ethernet header at tc, by its type as this
/// namespace's kernel reports it (under `nsenter --net`, /sys is the root namespace's, where
/// the interface is missing or another one).
fn has_link_header(interface: &str) -> Result<bool> {
    let link_type = rtnl::link_type(interface)?;
    Ok(rtnl::has_ethernet_header(link_type))
}
