//! What a command runs with: flags over the configuration file over the built-in defaults.

use std::{path::PathBuf, time::Duration};

use anyhow::Result;
use fwlog_common::event::Action;

use crate::{
    args::{EventKind, FilterAction, FilterArgs, RuleArgs, WatchArgs},
    config::{self, Config},
    endpoints::{IpfixTarget, MetricsAddress, DEFAULT_IPFIX_ENTERPRISE, DEFAULT_TEMPLATE_REFRESH},
    filter::Filter,
    firewall::plan::RuleOptions,
    netns::NetNs,
    values::{ColourChoice, OutputFormat, Policy, PortRule},
};

/// Everything that decides the rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleSettings {
    /// The interfaces asked for (flags, else the file); empty: the default route's.
    pub interfaces: Vec<String>,
    pub kernel_log: bool,
    pub prefix: String,
    pub inbound: Policy,
    pub outbound: Policy,
    /// No flag or key chose the outbound policy (then it follows OUTPUT's own).
    pub outbound_default: bool,
    pub allow_in: Vec<PortRule>,
    /// Install even if the inbound policy would cut this SSH session off.
    pub force: bool,
    /// Seconds of the connectionless-flow grace at install.
    pub grace: u64,
}

impl RuleSettings {
    /// The rule options for resolved interfaces in this namespace.
    pub fn options(&self, interfaces: Vec<String>, netns: NetNs) -> RuleOptions {
        RuleOptions {
            interfaces,
            pin_dir: netns.pin_dir(),
            kernel_log_prefix: self.kernel_log.then(|| self.prefix.clone()),
            inbound: self.inbound.action(),
            outbound: self.outbound.action(),
            allow_in: self.allow_in.clone(),
            tag: crate::firewall::RULE_COMMENT.into(),
            grace: Default::default(),
            grace_seconds: self.grace,
            outbound_default: self.outbound_default,
        }
    }
}

/// Everything `watch` (and `install`) needs besides the rules: nothing after this reads the
/// command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchSettings {
    pub rules: RuleSettings,
    /// Install the rules (`--no-rules`: only load and pin the programs).
    pub install_rules: bool,
    /// Print verdict lines.
    pub verdicts: bool,
    /// Track flows and print how each ended.
    pub flows: bool,
    /// Name the process behind each connection (cgroup hooks, listening sockets).
    pub name_processes: bool,
    /// Learn host names from the DNS answers crossing the watched interfaces.
    pub learn_names: bool,
    /// Which verdict and flow lines to keep.
    pub filter: Filter,
    /// Every this often, a `stats` line.
    pub stats_every: Option<Duration>,
    pub ring_size: u32,
    pub flow_table_size: u32,
    pub idle_timeout: u64,
    pub tcp_idle_timeout: u64,
    /// `None`: text on a terminal, JSON otherwise.
    pub format: Option<OutputFormat>,
    pub colour: ColourChoice,
    pub output: Option<PathBuf>,
    pub rotate_size: Option<u64>,
    pub rotate_keep: u32,
    pub syslog: bool,
    /// `host` in every line: this name, else the kernel's host name.
    pub host_name: Option<String>,
    /// Also `host_id` (/etc/machine-id) in every line.
    pub host_id: bool,
    /// Serve `/metrics` here.
    pub metrics: Option<MetricsAddress>,
    /// Export ended flows as IPFIX.
    pub ipfix: Option<IpfixOptions>,
}

/// `--ipfix` and its companions, resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpfixOptions {
    pub target: IpfixTarget,
    pub enterprise: u32,
    pub template_refresh: Duration,
}

/// The configuration file `--config` names, else the default one when it exists.
pub fn load_config(args: &RuleArgs) -> Result<Config> {
    Ok(config::load_or_empty(args.config.as_deref())?)
}

pub fn rule_settings(args: &RuleArgs, file: &Config) -> RuleSettings {
    RuleSettings {
        interfaces: if args.interfaces.is_empty() {
            file.interfaces.clone().unwrap_or_default()
        } else {
            args.interfaces.clone()
        },
        kernel_log: args.kernel_log || file.kernel_log.unwrap_or(false),
        prefix: args
            .prefix
            .clone()
            .or_else(|| file.prefix.clone())
            .unwrap_or_else(|| config::DEFAULT_PREFIX.to_string()),
        inbound: args
            .inbound
            .or(file.inbound)
            .unwrap_or(config::DEFAULT_INBOUND),
        outbound: args
            .outbound
            .or(file.outbound)
            .unwrap_or(config::DEFAULT_OUTBOUND),
        outbound_default: args.outbound.or(file.outbound).is_none(),
        allow_in: if args.allow_in.is_empty() {
            file.allow_in.clone().unwrap_or_default()
        } else {
            args.allow_in.clone()
        },
        force: args.force,
        grace: args.grace.or(file.grace).unwrap_or(config::DEFAULT_GRACE),
    }
}

pub fn watch_settings(args: &WatchArgs, file: &Config) -> WatchSettings {
    let maps = &file.maps;
    let output = &file.output;
    let fleet = &args.fleet;
    WatchSettings {
        rules: rule_settings(&args.rules, file),
        install_rules: !args.no_rules,
        verdicts: args.events.contains(&EventKind::Verdict),
        flows: args.events.contains(&EventKind::Flow),
        name_processes: !args.no_process,
        learn_names: !args.no_names,
        filter: filter(&args.filter),
        stats_every: (args.stats > 0).then(|| Duration::from_secs(args.stats)),
        ring_size: args
            .ring_size
            .or(maps.ring_size)
            .unwrap_or_else(config::default_ring_size),
        flow_table_size: args
            .flow_table_size
            .or(maps.flow_table_size)
            .unwrap_or(config::DEFAULT_FLOW_TABLE_SIZE),
        idle_timeout: args
            .idle_timeout
            .or(maps.idle_timeout)
            .unwrap_or(config::DEFAULT_IDLE_TIMEOUT),
        tcp_idle_timeout: args
            .tcp_idle_timeout
            .or(maps.tcp_idle_timeout)
            .unwrap_or(config::DEFAULT_TCP_IDLE_TIMEOUT),
        format: args.format.format.or(output.format),
        colour: args.format.color,
        output: args.output.clone().or_else(|| output.file.clone()),
        rotate_size: args.rotate_size.or(output.rotate_size),
        rotate_keep: args
            .rotate_keep
            .or(output.rotate_keep)
            .unwrap_or(config::DEFAULT_ROTATE_KEEP),
        syslog: args.syslog || output.syslog.unwrap_or(false),
        host_name: fleet.host_name.clone().or_else(|| file.host.name.clone()),
        host_id: fleet.host_id || file.host.id.unwrap_or(false),
        metrics: fleet.metrics.or(file.metrics.listen),
        ipfix: fleet
            .ipfix
            .clone()
            .or_else(|| file.ipfix.collector.clone())
            .map(|target| IpfixOptions {
                target,
                enterprise: fleet
                    .ipfix_enterprise
                    .or(file.ipfix.enterprise)
                    .unwrap_or(DEFAULT_IPFIX_ENTERPRISE),
                template_refresh: Duration::from_secs(
                    fleet
                        .ipfix_template_refresh
                        .or(file.ipfix.template_refresh)
                        .unwrap_or(DEFAULT_TEMPLATE_REFRESH),
                ),
            }),
    }
}

/// `--action`, `--dir`, `--proto`, `--port` and `--host`, for `watch` and `summary`.
pub fn filter(args: &FilterArgs) -> Filter {
    Filter {
        actions: args
            .actions
            .iter()
            .map(|action| match action {
                FilterAction::Accept => Action::Accept,
                FilterAction::Drop => Action::Drop,
                FilterAction::Reject => Action::Reject,
            })
            .collect(),
        directions: args.directions.clone(),
        protocols: args.protocols.clone(),
        ports: args.ports.clone(),
        hosts: args.hosts.clone(),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use clap::Parser as _;

    use super::*;
    use crate::args::{Cli, Command};

    fn watch_args(argv: &[&str]) -> WatchArgs {
        let mut all = vec!["fwlog", "watch"];
        all.extend(argv);
        match Cli::parse_from(all).command {
            Command::Watch(args) => args,
            other => panic!("not watch: {other:?}"),
        }
    }

    const FILE: &str = r#"
interfaces = ["eth1"]
inbound = "reject"
allow_in = ["22/tcp"]
grace = 20
[output]
file = "/var/log/fwlog/fwlog.jsonl"
rotate_keep = 3
format = "ecs"
[maps]
ring_size = "16M"
idle_timeout = 30
[metrics]
listen = "127.0.0.1:9477"
[ipfix]
collector = "tcp://collector.example"
"#;

    #[test]
    fn defaults_without_flags_or_file() {
        let settings = watch_settings(&watch_args(&[]), &Config::default());
        assert_eq!(settings.rules.inbound, Policy::Drop);
        assert_eq!(settings.rules.outbound, Policy::Accept);
        assert_eq!(settings.rules.prefix, "FW");
        assert!(settings.rules.interfaces.is_empty());
        assert_eq!(
            (
                settings.ring_size,
                settings.flow_table_size,
                settings.idle_timeout
            ),
            (config::default_ring_size(), 65_536, 60)
        );
        assert_eq!(
            (settings.output, settings.rotate_keep, settings.syslog),
            (None, 5, false)
        );
        assert_eq!((settings.rules.grace, settings.format), (5, None));
    }

    #[test]
    fn the_file_fills_what_flags_leave_open() {
        let file = config::parse(FILE, Path::new("test.toml")).expect("valid file");
        let settings = watch_settings(&watch_args(&[]), &file);
        assert_eq!(settings.rules.interfaces, ["eth1"]);
        assert_eq!(settings.rules.inbound, Policy::Reject);
        assert_eq!(settings.rules.allow_in, ["22/tcp".parse().expect("rule")]);
        assert_eq!(settings.ring_size, 16 << 20);
        assert_eq!(settings.idle_timeout, 30);
        assert_eq!(
            settings.output.as_deref(),
            Some(Path::new("/var/log/fwlog/fwlog.jsonl"))
        );
        assert_eq!(settings.rotate_keep, 3);
        assert_eq!(settings.rules.grace, 20);
        assert_eq!(settings.format, Some(OutputFormat::Ecs));
        assert_eq!(
            settings.metrics.map(|m| m.to_string()).as_deref(),
            Some("127.0.0.1:9477")
        );
        let ipfix = settings.ipfix.expect("the file asks for IPFIX");
        assert_eq!(ipfix.target.to_string(), "tcp://collector.example:4739");
        assert_eq!(ipfix.enterprise, 32473);
        assert_eq!(ipfix.template_refresh, Duration::from_secs(60));
        assert_eq!((settings.host_name, settings.host_id), (None, false));
    }

    #[test]
    fn fleet_flags_override_the_file() {
        let file = config::parse(FILE, Path::new("test.toml")).expect("valid file");
        let args = watch_args(&[
            "--metrics",
            "9100",
            "--ipfix",
            "udp://[::1]:9995",
            "--ipfix-enterprise",
            "12345",
            "--ipfix-template-refresh",
            "5",
            "--host-name",
            "edge-7",
            "--host-id",
        ]);
        let settings = watch_settings(&args, &file);
        assert_eq!(
            settings.metrics.map(|m| m.to_string()).as_deref(),
            Some("127.0.0.1:9100")
        );
        let ipfix = settings.ipfix.expect("IPFIX");
        assert_eq!(ipfix.target.to_string(), "udp://[::1]:9995");
        assert_eq!(
            (ipfix.enterprise, ipfix.template_refresh),
            (12345, Duration::from_secs(5))
        );
        assert_eq!(
            (settings.host_name.as_deref(), settings.host_id),
            (Some("edge-7"), true)
        );
    }

    #[test]
    fn flags_override_the_file() {
        let file = config::parse(FILE, Path::new("test.toml")).expect("valid file");
        let args = watch_args(&[
            "wlan0",
            "--inbound",
            "drop",
            "--allow-in",
            "443/tcp",
            "--ring-size",
            "1M",
            "--idle-timeout",
            "5",
            "--output",
            "/tmp/x.jsonl",
            "--rotate-keep",
            "9",
            "--grace",
            "0",
            "--format",
            "text",
        ]);
        let settings = watch_settings(&args, &file);
        assert_eq!(settings.rules.interfaces, ["wlan0"]);
        assert_eq!(settings.rules.inbound, Policy::Drop);
        assert_eq!(settings.rules.allow_in, ["443/tcp".parse().expect("rule")]);
        assert_eq!(
            (
                settings.ring_size,
                settings.idle_timeout,
                settings.rotate_keep
            ),
            (1 << 20, 5, 9)
        );
        assert_eq!(settings.output.as_deref(), Some(Path::new("/tmp/x.jsonl")));
        assert_eq!(settings.rules.grace, 0);
        assert_eq!(settings.format, Some(OutputFormat::Text));
    }

    #[test]
    fn a_grace_past_an_hour_is_refused() {
        let mut all = vec!["fwlog", "watch", "--grace", "3601"];
        let error = Cli::try_parse_from(all.clone()).expect_err("3601 s is refused");
        assert!(error.to_string().contains("3601"), "{error}");
        all[3] = "3600";
        assert!(Cli::try_parse_from(all).is_ok());
    }
}
