//! Tests of the configuration file: a good file, and where and why each kind of bad file fails.

use super::*;
use crate::values::{check_prefix, parse_size, Transport};

const GOOD: &str = r#"# a workstation behind wlan0
interfaces = ["wlan0", "eth0.10"]
inbound = "drop"
outbound = "reject"
allow_in = ["22/tcp", "51820/udp"]
grace = 12
kernel_log = true
prefix = "OY"

[output]
file = "/var/log/fwlog/fwlog.jsonl"
rotate_size = "100M"
rotate_keep = 7
syslog = true
format = "ecs"

[maps]
ring_size = "16M"
flow_table_size = 131072
idle_timeout = 30
tcp_idle_timeout = 7200

[host]
name = "edge-1"
id = true

[metrics]
listen = "127.0.0.1:9477"

[ipfix]
collector = "udp://192.0.2.9:4739"
enterprise = 99999
template_refresh = 30
"#;

fn parse_text(text: &str) -> Result<Config, ConfigError> {
    parse(text, Path::new("/etc/fwlog/fwlog.toml"))
}

/// (line, column, reason) of a file that must be rejected.
fn rejection(text: &str) -> (usize, usize, String) {
    match parse_text(text) {
        Err(ConfigError::Invalid {
            line,
            column,
            reason,
            ..
        }) => (line, column, reason),
        other => panic!("expected a placed error for {text:?}, got {other:?}"),
    }
}

#[test]
fn good_file_has_every_value() {
    let config = parse_text(GOOD).expect("the good file parses");
    assert_eq!(
        config,
        Config {
            interfaces: Some(vec!["wlan0".to_string(), "eth0.10".to_string()]),
            inbound: Some(Policy::Drop),
            outbound: Some(Policy::Reject),
            allow_in: Some(vec![
                PortRule {
                    port: 22,
                    proto: Transport::Tcp
                },
                PortRule {
                    port: 51820,
                    proto: Transport::Udp
                },
            ]),
            grace: Some(12),
            kernel_log: Some(true),
            prefix: Some("OY".to_string()),
            output: OutputSection {
                file: Some(PathBuf::from("/var/log/fwlog/fwlog.jsonl")),
                rotate_size: Some(100 << 20),
                rotate_keep: Some(7),
                syslog: Some(true),
                format: Some(LineFormat::Ecs),
            },
            maps: MapsSection {
                ring_size: Some(16 << 20),
                flow_table_size: Some(131_072),
                idle_timeout: Some(30),
                tcp_idle_timeout: Some(7200),
            },
            host: HostSection {
                name: Some("edge-1".to_string()),
                id: Some(true),
            },
            metrics: MetricsSection {
                listen: Some("127.0.0.1:9477".parse().expect("address")),
            },
            ipfix: IpfixSection {
                collector: Some("udp://192.0.2.9:4739".parse().expect("target")),
                enterprise: Some(99_999),
                template_refresh: Some(30),
            },
        }
    );
}

#[test]
fn good_file_round_trips_through_render() {
    let config = parse_text(GOOD).expect("the good file parses");
    let rendered = config.render();
    assert_eq!(parse_text(&rendered).expect("render output parses"), config);
}

#[test]
fn empty_file_renders_the_defaults() {
    let config = parse_text("").expect("an empty file is valid");
    assert_eq!(config, Config::default());
    let rendered = config.render();
    // The default ring size depends on the machine's CPUs (default_ring_size_for).
    let rendered = rendered.replace(
        &format!(
            "ring_size = \"{}\"",
            crate::values::format_size(default_ring_size().into())
        ),
        "ring_size = \"DEFAULT\"",
    );
    assert_eq!(
        rendered,
        "# fwlog configuration in effect (defaults filled in)\n\
         # interfaces: none given, fwlog watches the default route's interface\n\
         inbound = \"drop\"\n\
         outbound = \"accept\"\n\
         allow_in = []\n\
         grace = 5\n\
         kernel_log = false\n\
         prefix = \"FW\"\n\
         \n\
         [output]\n\
         # file: none given, lines go to stdout\n\
         # rotate_size: none given, the file is never rotated by fwlog\n\
         syslog = false\n\
         format = \"json\"\n\
         \n\
         [maps]\n\
         ring_size = \"DEFAULT\"\n\
         flow_table_size = 65536\n\
         idle_timeout = 60\n\
         tcp_idle_timeout = 432000\n\
         \n\
         [host]\n\
         # name: none given, lines carry the kernel's host name\n\
         id = false\n\
         \n\
         [metrics]\n\
         # listen: none given, no /metrics endpoint\n\
         \n\
         [ipfix]\n\
         # collector: none given, flows are not exported\n\
         enterprise = 32473\n\
         template_refresh = 60\n"
    );
    assert_eq!(
        parse_text(&config.render()).expect("render output parses"),
        config.with_defaults()
    );
}

#[test]
fn default_rings_stay_within_their_budget_however_many_cpus() {
    assert_eq!(default_ring_size_for(1), 16 << 20);
    assert_eq!(default_ring_size_for(2), 16 << 20);
    assert_eq!(default_ring_size_for(3), 16 << 20);
    assert_eq!(default_ring_size_for(4), 8 << 20);
    assert_eq!(default_ring_size_for(64), 1 << 20);
    assert_eq!(default_ring_size_for(4096), 1 << 20);
    for cpus in 1..=64u64 {
        let size = u64::from(default_ring_size_for(cpus as u32));
        assert!(size.is_power_of_two());
        assert!(
            size * (cpus + 1) <= DEFAULT_RINGS_BUDGET || size == u64::from(MIN_DEFAULT_RING_SIZE),
            "{cpus} CPUs"
        );
    }
}

#[test]
fn rotate_keep_defaults_only_when_rotating() {
    let config = parse_text("[output]\nrotate_size = 1048576\n").expect("valid");
    assert_eq!(config.output.rotate_size, Some(1 << 20));
    assert_eq!(
        config.with_defaults().output.rotate_keep,
        Some(DEFAULT_ROTATE_KEEP)
    );
    assert_eq!(Config::default().with_defaults().output.rotate_keep, None);
}

#[test]
fn syntax_error_is_placed() {
    let (line, column, reason) = rejection("inbound = \"drop\"\noutbound = accept\n");
    assert_eq!((line, column), (2, 12));
    assert!(reason.contains("quoted"), "{reason}");
}

#[test]
fn unknown_key_is_placed_and_named() {
    let (line, column, reason) = rejection("inbound = \"drop\"\n\n[maps]\nring = \"4M\"\n");
    assert_eq!((line, column), (4, 1));
    assert!(reason.contains("unknown field \"ring\""), "{reason}");
    let (line, _, reason) = rejection("# comment\ninbound_policy = \"drop\"\n");
    assert_eq!(line, 2);
    assert!(reason.contains("inbound_policy"), "{reason}");
}

#[test]
fn bad_policy_reads_like_the_example() {
    let text = "interfaces = [\"wlan0\"]\n\n\n\n\n\ninbound = \"dorp\"\n";
    let error = parse_text(text).expect_err("dorp is no policy");
    assert_eq!(
        error.to_string(),
        "/etc/fwlog/fwlog.toml:7:11: unknown variant \"dorp\", expected one of \"accept\", \"drop\", \"reject\""
    );
}

#[test]
fn bad_port_points_at_the_list_element() {
    let (line, column, reason) = rejection("allow_in = [\n  \"22/tcp\",\n  \"70000/tcp\",\n]\n");
    assert_eq!((line, column), (3, 3));
    assert!(reason.contains("70000"), "{reason}");
    let (_, _, reason) = rejection("allow_in = [\"0/tcp\"]\n");
    assert!(reason.contains("\"0\""), "{reason}");
    let (_, _, reason) = rejection("allow_in = [\"ssh\"]\n");
    assert!(
        reason.contains("\"ssh\"") && reason.contains("PORT/PROTO"),
        "{reason}"
    );
}

#[test]
fn bad_protocol_is_named() {
    let (line, column, reason) =
        rejection("inbound = \"drop\"\nallow_in = [\"22/tcp\", \"22/icmp\"]\n");
    assert_eq!((line, column), (2, 23));
    assert!(reason.contains("\"icmp\""), "{reason}");
}

#[test]
fn bad_sizes_are_placed() {
    let (line, column, reason) = rejection("[output]\nfile = \"/tmp/x\"\nrotate_size = \"12Q\"\n");
    assert_eq!((line, column), (3, 15));
    assert!(reason.contains("12Q"), "{reason}");
    let (line, _, reason) = rejection("[maps]\nring_size = \"12Q\"\n");
    assert_eq!(line, 2);
    assert!(reason.contains("12Q"), "{reason}");
    let (_, _, reason) = rejection("[maps]\nring_size = \"3M\"\n");
    assert!(reason.contains("power of two"), "{reason}");
    let (_, _, reason) = rejection("[output]\nrotate_size = 100\n");
    assert!(reason.contains("minimum"), "{reason}");
}

#[test]
fn bad_interface_names_are_placed() {
    for bad in ["wlan 0", "-i", "averyveryverylongname", "", "eth0/1", ".."] {
        let text = format!("kernel_log = false\ninterfaces = [\"lo\", {:?}]\n", bad);
        let (line, column, reason) = rejection(&text);
        assert_eq!((line, column), (2, 21), "{bad:?}");
        assert!(reason.contains(&format!("{bad:?}")), "{reason}");
    }
    for good in [
        "wlan0",
        "eth0.10",
        "br-lan",
        "veth_a@if2",
        "eth0:1",
        "x",
        "fifteen-chars-1",
    ] {
        assert_eq!(check_interface_name(good), Ok(()), "{good}");
    }
}

#[test]
fn out_of_range_numbers_are_placed() {
    let (line, _, reason) = rejection("[maps]\nflow_table_size = 8\n");
    assert_eq!(line, 2);
    assert!(reason.contains("flow_table_size = 8"), "{reason}");
    let (_, _, reason) = rejection("[maps]\nidle_timeout = 0\n");
    assert!(reason.contains("1 to 86400"), "{reason}");
    let (_, _, reason) = rejection("[output]\nrotate_keep = 5000\n");
    assert!(reason.contains("5000"), "{reason}");
    let (line, _, reason) = rejection("inbound = \"drop\"\ngrace = 3601\n");
    assert_eq!(line, 2);
    assert!(
        reason.contains("grace = 3601 is out of range: use 0 to 3600"),
        "{reason}"
    );
    let (_, _, reason) = rejection("grace = -1\n");
    assert!(reason.contains("-1"), "{reason}");
    let (_, _, reason) = rejection("kernel_log = \"yes\"\n");
    assert!(reason.contains("\"yes\""), "{reason}");
}

#[test]
fn bad_prefix_is_placed() {
    let (line, column, reason) = rejection("\nprefix = \"my log\"\n");
    assert_eq!((line, column), (2, 10));
    assert!(reason.contains("\"my log\""), "{reason}");
}

#[test]
fn prefixes_follow_the_flag_rule() {
    assert_eq!(check_prefix("OY"), Ok(()));
    assert_eq!(check_prefix("my_fw-2"), Ok(()));
    for bad in [
        "",
        "a b",
        "[FW]",
        &"x".repeat(crate::values::MAX_PREFIX_LEN + 1),
    ] {
        assert!(check_prefix(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn sizes_parse_and_format() {
    assert_eq!(parse_size("100M"), Ok(100 << 20));
    assert_eq!(parse_size("512k"), Ok(512 << 10));
    assert_eq!(parse_size("1G"), Ok(1 << 30));
    assert_eq!(parse_size("1500"), Ok(1500));
    assert!(parse_size("12Q").is_err());
    assert!(parse_size("99999999999999999999G").is_err());
    assert_eq!(format_size(4 << 20), "4M");
    assert_eq!(format_size(1536), "1536");
    assert_eq!(format_size(3 << 30), "3G");
}

#[test]
fn missing_file_is_not_found() {
    let path =
        std::env::temp_dir().join(format!("fwlog-config-missing-{}.toml", std::process::id()));
    assert!(matches!(load(&path), Err(ConfigError::NotFound { .. })));
    assert!(matches!(
        load_or_empty(Some(&path)),
        Err(ConfigError::NotFound { .. })
    ));
}

#[test]
fn line_and_column_count_characters() {
    assert_eq!(line_and_column("ab\ncd", 0), (1, 1));
    assert_eq!(line_and_column("ab\ncd", 4), (2, 2));
    assert_eq!(line_and_column("é = 1\nx", 3), (1, 3));
    assert_eq!(line_and_column("ab", 99), (1, 3));
}

#[test]
fn bad_fleet_values_are_placed() {
    let (line, _, reason) = rejection("[metrics]\nlisten = \"localhost:x\"\n");
    assert_eq!(line, 2);
    assert!(reason.contains("not a listening address"), "{reason}");
    let (line, _, reason) = rejection("[ipfix]\ncollector = \"sctp://x\"\n");
    assert_eq!(line, 2);
    assert!(reason.contains("udp://HOST:PORT"), "{reason}");
    let (_, _, reason) = rejection("[ipfix]\ntemplate_refresh = 0\n");
    assert!(reason.contains("out of range"), "{reason}");
    let (_, _, reason) = rejection("[host]\nname = \"a b\"\n");
    assert!(reason.contains("host name"), "{reason}");
}

/// The package's commented conffile: every key `config check` prints is documented there, and
/// the file with each `#key = value` line uncommented is valid.
#[test]
fn the_packaged_conffile_documents_every_key_and_parses_uncommented() {
    const PACKAGED: &str = include_str!("../../../packaging/fwlog.toml");
    let uncommented: String = PACKAGED
        .lines()
        .map(|line| match line.strip_prefix('#') {
            Some(rest) if rest.contains(" = ") && !rest.starts_with(' ') => rest,
            _ => line,
        })
        .flat_map(|line| [line, "\n"])
        .collect();
    let config = parse_text(&uncommented).expect("the packaged file, uncommented, parses");
    assert_eq!(config.grace, Some(5));
    assert_eq!(config.output.format, Some(LineFormat::Json));
    let documented = |key: &str| {
        uncommented
            .lines()
            .any(|line| line.starts_with(&format!("{key} = ")))
    };
    for line in Config::default().render().lines() {
        let key = line
            .trim_start_matches("# ")
            .split([' ', ':'])
            .next()
            .unwrap_or_default();
        if !key.is_empty() && !line.starts_with('[') && !line.starts_with("# fwlog") {
            assert!(documented(key), "{key} is not in packaging/fwlog.toml");
        }
    }
}
