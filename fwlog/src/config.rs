//! The configuration file (`/etc/fwlog/fwlog.toml`): parsed, validated, rendered back as TOML.
//!
//! Every value is optional, so a caller overlays the command-line flags it was given on top
//! of the file and fills the rest from the defaults below. A bad file is reported as
//! `PATH:LINE:COLUMN: reason`, pointing at the offending value.

use std::{
    io,
    ops::Range,
    path::{Path, PathBuf},
};

use serde::Deserialize;
use toml::Spanned;

mod fields;

/// Where `watch` and `config check` look when no `--config` is given.
pub const DEFAULT_PATH: &str = "/etc/fwlog/fwlog.toml";
pub const DEFAULT_INBOUND: Policy = Policy::Drop;
pub const DEFAULT_OUTBOUND: Policy = Policy::Accept;
pub const DEFAULT_PREFIX: &str = "FW";
pub const DEFAULT_FORMAT: LineFormat = LineFormat::Json;
/// Old files kept when `rotate_size` is set and `rotate_keep` is not.
pub const DEFAULT_ROTATE_KEEP: u32 = 5;
pub const MAX_ROTATE_KEEP: u32 = 999;
/// Below this, rotation would mostly shuffle files around.
pub const MIN_ROTATE_SIZE: u64 = 1 << 10;
/// The most a ring gets by default, 16 MiB: about 210 000 inbound verdict records (120 000
/// outbound ones), a quarter of a second at the fastest rate `cargo xtask bench` reaches on a
/// 2-CPU machine, for a collector held up by its output (a full page cache, a slow disk).
pub const DEFAULT_RING_SIZE: u32 = 16 << 20;
/// What all the rings (one per possible CPU, one shared) may take by default, together.
const DEFAULT_RINGS_BUDGET: u64 = 64 << 20;
/// The least a ring gets by default, however many CPUs share the budget.
const MIN_DEFAULT_RING_SIZE: u32 = 1 << 20;

/// Each ring's size when none is given, for `cpus` possible CPUs: [`DEFAULT_RING_SIZE`] up to
/// 3 CPUs, then the power of two that keeps all the rings within [`DEFAULT_RINGS_BUDGET`],
/// but not under [`MIN_DEFAULT_RING_SIZE`] (a 64-CPU machine: 1 MiB each, 65 MiB in all,
/// where 16 MiB each would pin over a GiB of kernel memory).
pub fn default_ring_size_for(cpus: u32) -> u32 {
    let share = DEFAULT_RINGS_BUDGET / (u64::from(cpus) + 1);
    let power = if share == 0 { 0 } else { 1u64 << share.ilog2() };
    power.clamp(MIN_DEFAULT_RING_SIZE.into(), DEFAULT_RING_SIZE.into()) as u32
}

/// Each ring's size when none is given, on this machine (one CPU assumed when the possible
/// CPUs cannot be read, which then fails the load with its own error).
pub fn default_ring_size() -> u32 {
    default_ring_size_for(aya::util::nr_cpus().map_or(1, |cpus| cpus as u32))
}
pub const DEFAULT_FLOW_TABLE_SIZE: u32 = 65_536;
pub const FLOW_TABLE_SIZES: Range<u32> = 16..16_777_217;
pub const DEFAULT_IDLE_TIMEOUT: u64 = 60;
pub const IDLE_TIMEOUTS: Range<u64> = 1..86_401;
/// Seconds of the connectionless-flow grace at install (`--grace`, `grace`).
pub const DEFAULT_GRACE: u64 = 5;
/// Up to an hour: longer would leave the policy open to new datagrams for no flow's sake.
pub const GRACES: Range<u64> = 0..3_601;
/// Established TCP: conntrack's `nf_conntrack_tcp_timeout_established` (five days). A flow
/// ended sooner is lost for good, since the connection's next packet is mid-stream and starts
/// nothing; the kernel keeps the connection that long, and so does fwlog (a crowded table is
/// made room in by the sweep, `evicted`).
pub const DEFAULT_TCP_IDLE_TIMEOUT: u64 = 432_000;
pub const TCP_IDLE_TIMEOUTS: Range<u64> = 1..31_536_001;

/// The whole file. `None` everywhere means "not in the file".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// External interfaces; `None`: the interface of the default route.
    pub interfaces: Option<Vec<String>>,
    /// What happens to new inbound connections on the external interfaces.
    pub inbound: Option<Policy>,
    /// What happens to new outbound connections.
    pub outbound: Option<Policy>,
    /// Inbound ports let through despite `inbound` (still logged).
    pub allow_in: Option<Vec<PortRule>>,
    /// Seconds new connectionless attempts are accepted after install (`--grace`).
    pub grace: Option<u64>,
    /// Keep the article's `-j LOG` kernel log lines too.
    pub kernel_log: Option<bool>,
    /// `[PREFIX-A]:` in kernel and syslog lines.
    pub prefix: Option<String>,
    pub output: OutputSection,
    pub maps: MapsSection,
    pub host: HostSection,
    pub metrics: MetricsSection,
    pub ipfix: IpfixSection,
}

/// `[host]`: how every line names this machine.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostSection {
    /// `host` in every line; `None`: the kernel's host name.
    #[serde(default, deserialize_with = "fields::host_name")]
    pub name: Option<String>,
    /// Also `host_id`, the machine id from /etc/machine-id.
    pub id: Option<bool>,
}

/// `[metrics]`: the Prometheus endpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    /// Serve `/metrics` on this address; `None`: no endpoint.
    #[serde(default, deserialize_with = "fields::parsed")]
    pub listen: Option<MetricsAddress>,
}

/// `[ipfix]`: flow export.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpfixSection {
    /// `udp://HOST:PORT` or `tcp://HOST:PORT`; `None`: no export.
    #[serde(default, deserialize_with = "fields::parsed")]
    pub collector: Option<IpfixTarget>,
    /// Private enterprise number of fwlog's own elements.
    pub enterprise: Option<u32>,
    /// Seconds between template sendings over UDP.
    #[serde(default, deserialize_with = "fields::template_refresh")]
    pub template_refresh: Option<u64>,
}

/// `[output]`: where the lines go.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSection {
    /// Append lines to this file instead of stdout.
    #[serde(default, deserialize_with = "fields::non_empty_path")]
    pub file: Option<PathBuf>,
    /// Rotate `file` before it would grow past this many bytes; `None`: never rotate.
    #[serde(default, deserialize_with = "fields::rotate_size")]
    pub rotate_size: Option<u64>,
    /// Rotated files kept: `file.1` … `file.N`.
    #[serde(default, deserialize_with = "fields::rotate_keep")]
    pub rotate_keep: Option<u32>,
    /// Also send every line to the system log (daemon.info through /dev/log).
    pub syslog: Option<bool>,
    pub format: Option<LineFormat>,
}

/// `[maps]`: sizes of the kernel's maps and the flow timeout.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MapsSection {
    /// Each kernel-to-collector ring buffer (one per CPU, one shared), bytes: a power of two,
    /// 4K to 1G.
    #[serde(default, deserialize_with = "fields::ring_size")]
    pub ring_size: Option<u32>,
    #[serde(default, deserialize_with = "fields::flow_table_size")]
    pub flow_table_size: Option<u32>,
    /// Seconds without a packet before a flow is reported idle.
    #[serde(default, deserialize_with = "fields::idle_timeout")]
    pub idle_timeout: Option<u64>,
    /// Seconds without a packet before an established TCP connection is reported idle.
    #[serde(default, deserialize_with = "fields::tcp_idle_timeout")]
    pub tcp_idle_timeout: Option<u64>,
}

use crate::{
    endpoints::{IpfixTarget, MetricsAddress, DEFAULT_IPFIX_ENTERPRISE, DEFAULT_TEMPLATE_REFRESH},
    values::{check_interface_name, format_size, OutputFormat as LineFormat, Policy, PortRule},
};

/// Why there is no configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: no such configuration file", path.display())]
    NotFound { path: PathBuf },
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A value, key or piece of syntax at a known place is wrong.
    #[error("{}:{line}:{column}: {reason}", path.display())]
    Invalid {
        path: PathBuf,
        line: usize,
        column: usize,
        reason: String,
    },
    /// The file is wrong somewhere toml could not place.
    #[error("{}: {reason}", path.display())]
    Unplaced { path: PathBuf, reason: String },
}

/// Reads and validates the file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => ConfigError::NotFound {
            path: path.to_path_buf(),
        },
        _ => ConfigError::Read {
            path: path.to_path_buf(),
            source,
        },
    })?;
    parse(&text, path)
}

/// The file given with `--config` (which must exist), else [`DEFAULT_PATH`] if it exists, else
/// an empty configuration.
pub fn load_or_empty(explicit: Option<&Path>) -> Result<Config, ConfigError> {
    match explicit {
        Some(path) => load(path),
        None => match load(Path::new(DEFAULT_PATH)) {
            Err(ConfigError::NotFound { .. }) => Ok(Config::default()),
            result => result,
        },
    }
}

/// Parses configuration `text`; `path` only names it in errors.
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let place = |span: Option<Range<usize>>, reason: &str| {
        let reason = one_line(reason);
        match span {
            Some(span) => {
                let (line, column) = line_and_column(text, span.start);
                ConfigError::Invalid {
                    path: path.to_path_buf(),
                    line,
                    column,
                    reason,
                }
            }
            None => ConfigError::Unplaced {
                path: path.to_path_buf(),
                reason,
            },
        }
    };
    let raw: RawConfig =
        toml::from_str(text).map_err(|error| place(error.span(), error.message()))?;
    raw.validate()
        .map_err(|(span, reason)| place(Some(span), &reason))
}

/// The file as toml sees it: lists keep each element's place, so an error can point at it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    interfaces: Option<Vec<Spanned<String>>>,
    inbound: Option<Policy>,
    outbound: Option<Policy>,
    allow_in: Option<Vec<Spanned<String>>>,
    #[serde(default, deserialize_with = "fields::grace")]
    grace: Option<u64>,
    kernel_log: Option<bool>,
    #[serde(default, deserialize_with = "fields::prefix")]
    prefix: Option<String>,
    #[serde(default)]
    output: OutputSection,
    #[serde(default)]
    maps: MapsSection,
    #[serde(default)]
    host: HostSection,
    #[serde(default)]
    metrics: MetricsSection,
    #[serde(default)]
    ipfix: IpfixSection,
}

impl RawConfig {
    fn validate(self) -> Result<Config, (Range<usize>, String)> {
        let interfaces = self
            .interfaces
            .map(|names| {
                names
                    .into_iter()
                    .map(|name| {
                        let span = name.span();
                        let name = name.into_inner();
                        check_interface_name(&name)
                            .map(|()| name)
                            .map_err(|e| (span, e))
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?;
        let allow_in = self
            .allow_in
            .map(|rules| {
                rules
                    .into_iter()
                    .map(|rule| {
                        let span = rule.span();
                        rule.get_ref().parse().map_err(|e: String| (span, e))
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?;
        Ok(Config {
            interfaces,
            inbound: self.inbound,
            outbound: self.outbound,
            allow_in,
            grace: self.grace,
            kernel_log: self.kernel_log,
            prefix: self.prefix,
            output: self.output,
            maps: self.maps,
            host: self.host,
            metrics: self.metrics,
            ipfix: self.ipfix,
        })
    }
}

impl Config {
    /// The configuration with every default filled in, except those whose absence means
    /// something: `interfaces` (the default route's), `output.file` (stdout) and
    /// `output.rotate_size` (no rotation).
    pub fn with_defaults(&self) -> Config {
        let rotates = self.output.rotate_size.is_some();
        Config {
            interfaces: self.interfaces.clone(),
            inbound: Some(self.inbound.unwrap_or(DEFAULT_INBOUND)),
            outbound: Some(self.outbound.unwrap_or(DEFAULT_OUTBOUND)),
            allow_in: Some(self.allow_in.clone().unwrap_or_default()),
            grace: Some(self.grace.unwrap_or(DEFAULT_GRACE)),
            kernel_log: Some(self.kernel_log.unwrap_or(false)),
            prefix: Some(
                self.prefix
                    .clone()
                    .unwrap_or_else(|| DEFAULT_PREFIX.to_string()),
            ),
            output: OutputSection {
                file: self.output.file.clone(),
                rotate_size: self.output.rotate_size,
                rotate_keep: self
                    .output
                    .rotate_keep
                    .or(rotates.then_some(DEFAULT_ROTATE_KEEP)),
                syslog: Some(self.output.syslog.unwrap_or(false)),
                format: Some(self.output.format.unwrap_or(DEFAULT_FORMAT)),
            },
            maps: MapsSection {
                ring_size: Some(self.maps.ring_size.unwrap_or_else(default_ring_size)),
                flow_table_size: Some(self.maps.flow_table_size.unwrap_or(DEFAULT_FLOW_TABLE_SIZE)),
                idle_timeout: Some(self.maps.idle_timeout.unwrap_or(DEFAULT_IDLE_TIMEOUT)),
                tcp_idle_timeout: Some(
                    self.maps
                        .tcp_idle_timeout
                        .unwrap_or(DEFAULT_TCP_IDLE_TIMEOUT),
                ),
            },
            host: HostSection {
                name: self.host.name.clone(),
                id: Some(self.host.id.unwrap_or(false)),
            },
            metrics: self.metrics.clone(),
            ipfix: IpfixSection {
                collector: self.ipfix.collector.clone(),
                enterprise: Some(self.ipfix.enterprise.unwrap_or(DEFAULT_IPFIX_ENTERPRISE)),
                template_refresh: Some(
                    self.ipfix
                        .template_refresh
                        .unwrap_or(DEFAULT_TEMPLATE_REFRESH),
                ),
            },
        }
    }

    /// The effective configuration as a TOML file that [`parse`] reads back; what is left
    /// unset on purpose is said in comments.
    pub fn render(&self) -> String {
        let config = self.with_defaults();
        let mut out = String::from("# fwlog configuration in effect (defaults filled in)\n");
        match &config.interfaces {
            Some(names) => out += &format!("interfaces = {}\n", toml_list(names)),
            None => {
                out += "# interfaces: none given, fwlog watches the default route's interface\n"
            }
        }
        let inbound = config.inbound.unwrap_or(DEFAULT_INBOUND);
        out += &format!("inbound = {}\n", toml_string(inbound.as_str()));
        let outbound = config.outbound.unwrap_or(DEFAULT_OUTBOUND);
        out += &format!("outbound = {}\n", toml_string(outbound.as_str()));
        let rules: Vec<String> = config
            .allow_in
            .iter()
            .flatten()
            .map(PortRule::to_string)
            .collect();
        out += &format!("allow_in = {}\n", toml_list(&rules));
        out += &format!("grace = {}\n", config.grace.unwrap_or(DEFAULT_GRACE));
        out += &format!("kernel_log = {}\n", config.kernel_log.unwrap_or(false));
        out += &format!(
            "prefix = {}\n",
            toml_string(config.prefix.as_deref().unwrap_or(DEFAULT_PREFIX))
        );

        out += "\n[output]\n";
        match &config.output.file {
            Some(file) => out += &format!("file = {}\n", toml_string(&file.to_string_lossy())),
            None => out += "# file: none given, lines go to stdout\n",
        }
        match config.output.rotate_size {
            Some(size) => {
                out += &format!("rotate_size = {}\n", toml_string(&format_size(size)));
                let keep = config.output.rotate_keep.unwrap_or(DEFAULT_ROTATE_KEEP);
                out += &format!("rotate_keep = {keep}\n");
            }
            None => out += "# rotate_size: none given, the file is never rotated by fwlog\n",
        }
        out += &format!("syslog = {}\n", config.output.syslog.unwrap_or(false));
        let format = config.output.format.unwrap_or(DEFAULT_FORMAT);
        out += &format!("format = {}\n", toml_string(format.as_str()));

        out += "\n[maps]\n";
        let ring = config.maps.ring_size.unwrap_or_else(default_ring_size);
        out += &format!("ring_size = {}\n", toml_string(&format_size(ring.into())));
        let flows = config
            .maps
            .flow_table_size
            .unwrap_or(DEFAULT_FLOW_TABLE_SIZE);
        out += &format!("flow_table_size = {flows}\n");
        let idle = config.maps.idle_timeout.unwrap_or(DEFAULT_IDLE_TIMEOUT);
        out += &format!("idle_timeout = {idle}\n");
        let tcp_idle = config
            .maps
            .tcp_idle_timeout
            .unwrap_or(DEFAULT_TCP_IDLE_TIMEOUT);
        out += &format!("tcp_idle_timeout = {tcp_idle}\n");

        out += "\n[host]\n";
        match &config.host.name {
            Some(name) => out += &format!("name = {}\n", toml_string(name)),
            None => out += "# name: none given, lines carry the kernel's host name\n",
        }
        out += &format!("id = {}\n", config.host.id.unwrap_or(false));

        out += "\n[metrics]\n";
        match &config.metrics.listen {
            Some(address) => out += &format!("listen = {}\n", toml_string(&address.to_string())),
            None => out += "# listen: none given, no /metrics endpoint\n",
        }

        out += "\n[ipfix]\n";
        match &config.ipfix.collector {
            Some(target) => out += &format!("collector = {}\n", toml_string(&target.to_string())),
            None => out += "# collector: none given, flows are not exported\n",
        }
        let pen = config.ipfix.enterprise.unwrap_or(DEFAULT_IPFIX_ENTERPRISE);
        out += &format!("enterprise = {pen}\n");
        let refresh = config
            .ipfix
            .template_refresh
            .unwrap_or(DEFAULT_TEMPLATE_REFRESH);
        out += &format!("template_refresh = {refresh}\n");
        out
    }
}

fn toml_string(text: &str) -> String {
    toml::Value::String(text.to_string()).to_string()
}

fn toml_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|item| toml_string(item)).collect();
    format!("[{}]", quoted.join(", "))
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (
        before.matches('\n').count() + 1,
        before[line_start..].chars().count() + 1,
    )
}

/// serde quotes names with backticks; the rest of fwlog's messages use double quotes.
fn one_line(reason: &str) -> String {
    let joined: Vec<&str> = reason
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect();
    joined.join("; ").replace('`', "\"")
}

#[cfg(test)]
mod tests;
