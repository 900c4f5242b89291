//! Every command-line type of fwlog, parsed and validated here, acted on in `cmd`.

use clap::{Args, Parser, Subcommand};

use crate::{
    endpoints::{IpfixTarget, MetricsAddress},
    values::{
        parse_ring_size, parse_size, ColourChoice, Direction, HostPattern, OutputFormat, Policy,
        PortRule, Protocol,
    },
};

#[derive(Debug, Parser)]
#[command(
    name = "fwlog",
    version,
    about = "Structured, lossless firewall logging: iptables' LOG_AND_* chains with eBPF instead of printk",
    long_about = None
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Install the firewall rules for this session and print one JSON line per new connection
    /// attempt; Ctrl-C removes what was installed.
    Watch(WatchArgs),
    /// Print the rules `watch` would install (iptables-restore format) and change nothing.
    Rules(RuleArgs),
    /// Remove everything fwlog installed in this network namespace (also after a crash).
    Uninstall(UninstallArgs),
    /// Install to stay: pin the programs, maps and hooks and install the rules, so the firewall
    /// enforces and records with no reader; `fwlog watch` then reads it.
    Install(InstallArgs),
    /// Show what is installed here: interfaces, policies, rules with their counters, pins, and
    /// the kernel's event and loss counts.
    Status(StatusArgs),
    /// Summarise fwlog JSON lines: top blocked sources, outbound destinations, processes,
    /// local ports and an hourly timeline.
    Summary(SummaryArgs),
    /// Print a shell completion script (`fwlog completions bash > /etc/bash_completion.d/fwlog`).
    Completions(CompletionsArgs),
    /// Print fwlog's man page (roff) to stdout, or write one page per command with `--out DIR`.
    Man(ManArgs),
    /// Check the configuration file and print the configuration in effect.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Debug, Args)]
pub struct InstallArgs {
    #[command(flatten)]
    pub watch: WatchArgs,
    /// Also write and enable a systemd unit (fwlog.service) that installs at boot and keeps a
    /// reader writing the log file.
    #[arg(long)]
    pub enable: bool,
    /// Where the unit goes (tests point it elsewhere).
    #[arg(long, hide = true, default_value = crate::systemd::UNIT_DIR)]
    pub unit_dir: std::path::PathBuf,
}

#[derive(Debug, Args)]
pub struct UninstallArgs {
    /// Also remove the pin directories of network namespaces that no longer exist (as `fwlog
    /// status` lists them), and only those: a namespace fwlog cannot prove gone keeps its pins.
    #[arg(long)]
    pub orphans: bool,
    /// Where `install --enable` put the unit.
    #[arg(long, hide = true, default_value = crate::systemd::UNIT_DIR)]
    pub unit_dir: std::path::PathBuf,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Report the first error as FILE:LINE:COLUMN, or print the configuration with the
    /// defaults filled in.
    Check {
        /// Configuration file (default: /etc/fwlog/fwlog.toml).
        #[arg(long, value_name = "FILE")]
        config: Option<std::path::PathBuf>,
    },
}

/// What decides the rules.
#[derive(Debug, Args)]
pub struct RuleArgs {
    /// External interfaces: new inbound connections on them are logged and dropped
    /// (default: the interface of the default route).
    #[arg(value_name = "IFACE")]
    pub interfaces: Vec<String>,
    /// Also keep the article's kernel log lines (`-j LOG --log-prefix '[FW-A]:' --log-level 7`).
    #[arg(long)]
    pub kernel_log: bool,
    /// Prefix of the kernel log lines: `[PREFIX-A]:`, `[PREFIX-D]:`, `[PREFIX-R]:` (default FW).
    #[arg(long, value_parser = parse_prefix)]
    pub prefix: Option<String>,
    /// What happens to new inbound connections on IFACE, logged either way (default drop).
    #[arg(long, value_enum)]
    pub inbound: Option<Policy>,
    /// What happens to new outbound connections, logged either way (default accept, or drop
    /// where the OUTPUT chain's policy is DROP).
    #[arg(long, value_enum)]
    pub outbound: Option<Policy>,
    /// Seconds new connectionless (UDP, …) attempts are accepted and logged after install, so
    /// that conntrack learns the flows the host already has before the policy applies (only
    /// where the namespace has UDP or raw sockets; 0: apply it at once; default 5, up to 3600).
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(0..=3_600))]
    pub grace: Option<u64>,
    /// Log and accept new inbound connections to this port before the inbound policy
    /// (PORT/tcp, PORT/udp or PORT/sctp; repeatable).
    #[arg(long, value_name = "PORT/PROTO")]
    pub allow_in: Vec<PortRule>,
    /// Install even if the inbound policy would refuse new connections to this SSH session's
    /// server.
    #[arg(long)]
    pub force: bool,
    /// Configuration file (default: /etc/fwlog/fwlog.toml when it exists); flags override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    #[command(flatten)]
    pub rules: RuleArgs,
    /// Install no rules: only load and pin the programs, and print the rules to add by hand.
    #[arg(long)]
    pub no_rules: bool,
    /// Size of each kernel-to-collector ring buffer (one per CPU for verdicts, one shared): a
    /// power of two, 4K to 1G (K, M, G accepted; default 16M each on up to 3 CPUs, less on more
    /// CPUs, so that all rings stay within 64M, but at least 1M each).
    #[arg(long, value_parser = parse_ring_size)]
    pub ring_size: Option<u32>,
    /// What to print: `verdict` (new connection attempts), `flow` (how each flow ended).
    #[arg(long, value_delimiter = ',', default_value = "verdict,flow")]
    pub events: Vec<EventKind>,
    /// Seconds without a packet after which a flow (UDP, ICMP, half-open TCP) is reported idle
    /// (default 60).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub idle_timeout: Option<u64>,
    /// Seconds without a packet after which an established TCP connection is reported idle
    /// (default 432000, five days: conntrack's own timeout for established connections, after
    /// which the kernel forgets the connection too).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=31_536_000))]
    pub tcp_idle_timeout: Option<u64>,
    /// Flows the kernel's flow table holds, about 256 bytes of kernel memory each (default 65536).
    #[arg(long, value_parser = clap::value_parser!(u32).range(16..=16_777_216))]
    pub flow_table_size: Option<u32>,
    /// Print a `stats` line every N seconds (0: never).
    #[arg(long, default_value_t = 0)]
    pub stats: u64,
    /// Do not record which process opens each outbound connection (cgroup connect/sendmsg hooks).
    #[arg(long)]
    pub no_process: bool,
    /// Do not learn host names from the DNS answers crossing the watched interfaces.
    #[arg(long)]
    pub no_names: bool,
    #[command(flatten)]
    pub format: FormatArgs,
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Append the lines to FILE instead of stdout; SIGHUP reopens it (logrotate).
    #[arg(long, value_name = "FILE")]
    pub output: Option<std::path::PathBuf>,
    /// Rotate the output file before it would pass N bytes (K, M, G accepted).
    #[arg(long, value_name = "N", value_parser = parse_size)]
    pub rotate_size: Option<u64>,
    /// Rotated output files kept: FILE.1 … FILE.K (default 5).
    #[arg(long, value_name = "K")]
    pub rotate_keep: Option<u32>,
    /// Also send every line to the system log (/dev/log, daemon.info), with the article's
    /// `[FW-D]:` style prefix.
    #[arg(long)]
    pub syslog: bool,
    #[command(flatten)]
    pub fleet: FleetArgs,
}

/// How the lines name this machine, and what else leaves it: metrics and flow export.
#[derive(Clone, Debug, Default, Args)]
pub struct FleetArgs {
    /// Name this machine in every line's `host` (default: the kernel's host name).
    #[arg(long, value_name = "NAME", value_parser = parse_host_name)]
    pub host_name: Option<String>,
    /// Also put this machine's id (/etc/machine-id) in every line's `host_id`.
    #[arg(long)]
    pub host_id: bool,
    /// Serve Prometheus metrics at http://ADDRESS/metrics: PORT (on 127.0.0.1), IP:PORT or
    /// [IPv6]:PORT, e.g. 127.0.0.1:9477.
    #[arg(long, value_name = "ADDRESS")]
    pub metrics: Option<MetricsAddress>,
    /// Send each ended flow as an IPFIX record to a flow collector: udp://HOST:PORT or
    /// tcp://HOST:PORT (port 4739 when left out).
    #[arg(long, value_name = "URL")]
    pub ipfix: Option<IpfixTarget>,
    /// Private enterprise number of fwlog's own IPFIX elements (process, Community ID, host
    /// names); default 32473, RFC 5612's number for examples.
    #[arg(long, value_name = "PEN")]
    pub ipfix_enterprise: Option<u32>,
    /// Seconds between two sendings of the IPFIX templates over UDP (default 60).
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub ipfix_template_refresh: Option<u64>,
}

/// The kinds of lines `--events` selects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum EventKind {
    Verdict,
    Flow,
}

/// Which events to keep, shared by `summary` and `watch`: values of one option are alternatives,
/// different options must all match.
#[derive(Clone, Debug, Default, Args)]
pub struct FilterArgs {
    /// Only events with this action (repeatable, or comma-separated).
    #[arg(
        long = "action",
        value_enum,
        value_delimiter = ',',
        value_name = "ACTION"
    )]
    pub actions: Vec<FilterAction>,
    /// Only events going this way (repeatable, or comma-separated).
    #[arg(
        long = "dir",
        value_enum,
        value_delimiter = ',',
        value_name = "DIRECTION"
    )]
    pub directions: Vec<Direction>,
    /// Only this protocol: tcp, udp, icmp, icmpv6, sctp, udplite or a number (repeatable).
    #[arg(long = "proto", value_delimiter = ',', value_name = "PROTO")]
    pub protocols: Vec<Protocol>,
    /// Only events with this source or destination port (repeatable, or comma-separated).
    #[arg(long = "port", value_delimiter = ',', value_name = "PORT")]
    pub ports: Vec<u16>,
    /// Only events from or to this address, network (CIDR) or host name (repeatable).
    #[arg(long = "host", value_name = "ADDR|CIDR|NAME")]
    pub hosts: Vec<HostPattern>,
}

/// `--action` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum FilterAction {
    Accept,
    Drop,
    Reject,
}

/// How `watch` prints events: for `#[command(flatten)]` into `WatchArgs`.
#[derive(Clone, Copy, Debug, Args)]
pub struct FormatArgs {
    /// Line format: `json` (fwlog's schema), `text` (aligned, for people), `ecs` (Elastic
    /// Common Schema, nested). Default: text on a terminal, JSON into a pipe or file.
    #[arg(long, value_enum)]
    pub format: Option<OutputFormat>,
    /// Colour the text format: `auto` (when stdout is a terminal and NO_COLOR is unset),
    /// `always` or `never`.
    #[arg(long, value_enum, default_value_t = ColourChoice::Auto, value_name = "WHEN")]
    pub color: ColourChoice,
}

#[derive(Debug, Args)]
pub struct SummaryArgs {
    /// fwlog JSON-lines files, `-` for stdin; gzip-compressed ones are recognised by their content
    /// (default: /var/log/fwlog/fwlog.jsonl).
    #[arg(value_name = "FILE")]
    pub files: Vec<std::path::PathBuf>,
    /// Only lines at or after this time: RFC 3339 (`2026-11-25T07:00:00Z`), a date (UTC
    /// midnight) or a span before now (`2h`, `7d`, `1 week`).
    #[arg(long, value_name = "TIME")]
    pub since: Option<crate::summary::time::TimeBound>,
    /// Only lines before this time (same forms as `--since`).
    #[arg(long, value_name = "TIME")]
    pub until: Option<crate::summary::time::TimeBound>,
    /// Rows in each table.
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub top: usize,
    /// Print one JSON object with the same tables instead of text tables.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub filter: FilterArgs,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write fwlog.1 and one page per subcommand (fwlog-watch.1, …) into this directory instead
    /// of printing fwlog.1.
    #[arg(long, value_name = "DIR")]
    pub out: Option<std::path::PathBuf>,
}

fn parse_host_name(name: &str) -> Result<String, String> {
    crate::host::check_host_name(name).map(|()| name.to_string())
}

fn parse_prefix(prefix: &str) -> Result<String, String> {
    crate::values::check_prefix(prefix).map(|()| prefix.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn prefixes() {
        assert_eq!(parse_prefix("OY"), Ok("OY".to_string()));
        assert!(parse_prefix("").is_err());
        assert!(parse_prefix("a b").is_err());
        assert!(parse_prefix("\"x").is_err());
        let too_long = "x".repeat(crate::values::MAX_PREFIX_LEN + 1);
        assert!(parse_prefix(&too_long).is_err());
    }
}
