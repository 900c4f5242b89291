//! What tc shows of an interface: its qdiscs and the eBPF filters on its clsact hooks
//! (iproute2's JSON), for tests of fwlog's netlink attach mode (kernels without TCX), and the
//! flow programs on it however they are attached.

use anyhow::{Context as _, Result};
use aya::programs::{SchedClassifier, TcAttachType};
use serde_json::Value;

use crate::NetNsGuard;

/// Forces fwlog's netlink attach mode on kernels that have TCX (see fwlog's `tc_attach`).
pub const NETLINK_MODE: (&str, &str) = ("FWLOG_TC_ATTACH", "netlink");

/// A filter on one clsact hook, as `tc filter show` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcFilter {
    /// `ingress` or `egress`.
    pub hook: &'static str,
    pub priority: u64,
    /// `0x1` and the like.
    pub handle: String,
    pub kind: String,
    /// The eBPF program's name, for cls_bpf filters with one.
    pub program: Option<String>,
}

/// The filters on the clsact hooks of `interface` (none when it has no clsact qdisc).
pub fn filters(netns: &NetNsGuard, interface: &str) -> Result<Vec<TcFilter>> {
    let mut filters = Vec::new();
    for hook in ["ingress", "egress"] {
        let output = netns
            .command("tc")
            .args(["-j", "filter", "show", "dev", interface, hook])
            .output()
            .context("running tc filter show")?;
        let shown = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() || shown.trim().is_empty() {
            continue;
        }
        let listed: Value = serde_json::from_str(&shown).context("tc's JSON")?;
        for filter in listed.as_array().into_iter().flatten() {
            // Each priority is also listed once without options (its chain head).
            let Some(options) = filter.get("options") else {
                continue;
            };
            filters.push(TcFilter {
                hook,
                priority: filter["pref"].as_u64().unwrap_or(0),
                handle: options["handle"].as_str().unwrap_or("").to_string(),
                kind: filter["kind"].as_str().unwrap_or("").to_string(),
                program: options["prog"]["name"]
                    .as_str()
                    .or_else(|| options["name"].as_str())
                    .map(str::to_string),
            });
        }
    }
    Ok(filters)
}

/// fwlog's flow programs among the filters of `interface`.
pub fn fwlog_filters(netns: &NetNsGuard, interface: &str) -> Result<Vec<TcFilter>> {
    Ok(filters(netns, interface)?
        .into_iter()
        .filter(|filter| {
            filter
                .program
                .as_deref()
                .is_some_and(|name| name.starts_with("flow_"))
        })
        .collect())
}

/// Whether `interface` has a clsact qdisc.
pub fn has_clsact(netns: &NetNsGuard, interface: &str) -> Result<bool> {
    let shown = netns.output("tc", &["-j", "qdisc", "show", "dev", interface])?;
    let listed: Value = serde_json::from_str(&shown).context("tc's JSON")?;
    Ok(listed
        .as_array()
        .into_iter()
        .flatten()
        .any(|qdisc| qdisc["kind"] == "clsact"))
}

/// fwlog's flow programs on `interface`, as (hook, program name) sorted, whether attached as
/// TCX links or as netlink filters.
pub fn flow_programs(netns: &NetNsGuard, interface: &str) -> Result<Vec<(&'static str, String)>> {
    let mut programs: Vec<(&'static str, String)> = fwlog_filters(netns, interface)?
        .into_iter()
        .filter_map(|filter| Some((filter.hook, filter.program?)))
        .collect();
    let name = interface.to_string();
    let tcx = netns.enter(move || {
        let mut found = Vec::new();
        for (hook, attach_type) in [
            ("ingress", TcAttachType::Ingress),
            ("egress", TcAttachType::Egress),
        ] {
            // Kernels without TCX refuse the question: no TCX programs there.
            if let Ok((_, attached)) = SchedClassifier::query_tcx(&name, attach_type) {
                for program in attached {
                    if let Some(program) = program.name_as_str().filter(|n| n.starts_with("flow_"))
                    {
                        found.push((hook, program.to_string()));
                    }
                }
            }
        }
        found
    })?;
    programs.extend(tcx);
    programs.sort();
    Ok(programs)
}
