//! Golden tests of the generated iptables-restore scripts.

use super::*;
use crate::values::MAX_PREFIX_LEN;

fn options(kernel_log: bool) -> RuleOptions {
    RuleOptions {
        interfaces: vec!["wlan0".into(), "eth1".into()],
        pin_dir: "/sys/fs/bpf/fwlog/4026531840".into(),
        kernel_log_prefix: kernel_log.then(|| "FW".to_string()),
        inbound: Action::Drop,
        outbound: Action::Accept,
        allow_in: Vec::new(),
        tag: "fwlog".into(),
        grace: Grace::default(),
        grace_seconds: 0,
        outbound_default: false,
    }
}

#[test]
fn fresh_table_gets_the_three_chains_and_the_jumps() {
    let script = install_script(&options(false), &BTreeSet::new());
    let expected = "\
*filter
:LOG_AND_ACCEPT - [0:0]
:LOG_AND_DROP - [0:0]
:LOG_AND_REJECT - [0:0]
-A LOG_AND_ACCEPT -m conntrack --ctstate NEW -m bpf --object-pinned /sys/fs/bpf/fwlog/4026531840/verdict_accept_new -j ACCEPT
-A LOG_AND_ACCEPT -m conntrack --ctstate RELATED -m bpf --object-pinned /sys/fs/bpf/fwlog/4026531840/verdict_accept_related -j ACCEPT
-A LOG_AND_ACCEPT -m comment --comment fwlog -j ACCEPT
-A LOG_AND_DROP -m conntrack --ctstate NEW -m bpf --object-pinned /sys/fs/bpf/fwlog/4026531840/verdict_drop_new -j DROP
-A LOG_AND_DROP -m conntrack --ctstate RELATED -m bpf --object-pinned /sys/fs/bpf/fwlog/4026531840/verdict_drop_related -j DROP
-A LOG_AND_DROP -m comment --comment fwlog -j DROP
-A LOG_AND_REJECT -m conntrack --ctstate NEW -m bpf --object-pinned /sys/fs/bpf/fwlog/4026531840/verdict_reject_new -j REJECT
-A LOG_AND_REJECT -m conntrack --ctstate RELATED -m bpf --object-pinned /sys/fs/bpf/fwlog/4026531840/verdict_reject_related -j REJECT
-A LOG_AND_REJECT -m comment --comment fwlog -j REJECT
-A INPUT -i wlan0 -p tcp --syn -m conntrack --ctstate NEW,RELATED -m comment --comment fwlog -j LOG_AND_DROP
-A INPUT -i wlan0 ! -p tcp -m conntrack --ctstate NEW,RELATED -m comment --comment fwlog -j LOG_AND_DROP
-A INPUT -i eth1 -p tcp --syn -m conntrack --ctstate NEW,RELATED -m comment --comment fwlog -j LOG_AND_DROP
-A INPUT -i eth1 ! -p tcp -m conntrack --ctstate NEW,RELATED -m comment --comment fwlog -j LOG_AND_DROP
-A OUTPUT ! -o lo -p tcp --syn -m conntrack --ctstate NEW,RELATED -m comment --comment fwlog -j LOG_AND_ACCEPT
-A OUTPUT ! -o lo ! -p tcp -m conntrack --ctstate NEW,RELATED -m comment --comment fwlog -j LOG_AND_ACCEPT
COMMIT
";
    assert_eq!(script, expected);
}

#[test]
fn existing_chain_gets_rules_inserted_on_top_and_keeps_its_action() {
    let existing: BTreeSet<String> = ["LOG_AND_DROP".to_string()].into();
    let script = install_script(&options(true), &existing);
    let drop_lines: Vec<&str> = script
        .lines()
        .filter(|l| l.contains(" LOG_AND_DROP "))
        .collect();
    assert_eq!(
        drop_lines,
        [
            "-I LOG_AND_DROP 1 -m conntrack --ctstate NEW -m bpf --object-pinned /sys/fs/bpf/fwlog/4026531840/verdict_drop_new",
            "-I LOG_AND_DROP 2 -m conntrack --ctstate RELATED -m bpf --object-pinned /sys/fs/bpf/fwlog/4026531840/verdict_drop_related",
            "-I LOG_AND_DROP 3 -m conntrack --ctstate NEW,RELATED -m comment --comment fwlog -j LOG --log-prefix \"[FW-D]:\" --log-level 7",
        ]
    );
    assert!(
        !script.contains(":LOG_AND_DROP"),
        "an existing chain is never declared (that would flush it)"
    );
    assert!(script.contains(":LOG_AND_ACCEPT - [0:0]"));
}

#[test]
fn kernel_log_uses_the_article_prefixes() {
    let script = install_script(&options(true), &BTreeSet::new());
    for (chain, prefix) in [
        ("LOG_AND_ACCEPT", "[FW-A]:"),
        ("LOG_AND_DROP", "[FW-D]:"),
        ("LOG_AND_REJECT", "[FW-R]:"),
    ] {
        let line = format!(
            "-A {chain} -m conntrack --ctstate NEW,RELATED -m comment --comment fwlog -j LOG --log-prefix \"{prefix}\" --log-level 7"
        );
        assert!(script.contains(&line), "missing {line}");
    }
}

#[test]
fn with_the_kernel_log_the_logging_rules_leave_the_action_to_the_end_of_the_chain() {
    let script = install_script(&options(true), &BTreeSet::new());
    let drop_lines: Vec<&str> = script
        .lines()
        .filter(|l| l.starts_with("-A LOG_AND_DROP "))
        .collect();
    assert_eq!(
        drop_lines,
        [
            "-A LOG_AND_DROP -m conntrack --ctstate NEW -m bpf --object-pinned /sys/fs/bpf/fwlog/4026531840/verdict_drop_new",
            "-A LOG_AND_DROP -m conntrack --ctstate RELATED -m bpf --object-pinned /sys/fs/bpf/fwlog/4026531840/verdict_drop_related",
            "-A LOG_AND_DROP -m conntrack --ctstate NEW,RELATED -m comment --comment fwlog -j LOG --log-prefix \"[FW-D]:\" --log-level 7",
            "-A LOG_AND_DROP -m comment --comment fwlog -j DROP",
        ]
    );
}

#[test]
fn prefix_limit_fits_the_kernel() {
    let longest = "P".repeat(MAX_PREFIX_LEN);
    assert_eq!(log_prefix(&longest, Action::Reject).len(), 29);
}

#[test]
fn policies_and_allowed_ports() {
    let mut options = options(false);
    options.interfaces = vec!["eth0".into()];
    options.inbound = Action::Reject;
    options.outbound = Action::Drop;
    options.allow_in = vec![
        "22/tcp".parse().expect("rule"),
        "51820/udp".parse().expect("rule"),
    ];
    let script = install_script(&options, &BTreeSet::new());
    let jumps: Vec<&str> = script
        .lines()
        .filter(|l| l.starts_with("-A INPUT") || l.starts_with("-A OUTPUT"))
        .collect();
    assert_eq!(
        jumps,
        [
            "-A INPUT -i eth0 -p tcp -m tcp --dport 22 --syn -m conntrack --ctstate NEW -m comment --comment fwlog -j LOG_AND_ACCEPT",
            "-A INPUT -i eth0 -p udp -m udp --dport 51820 -m conntrack --ctstate NEW -m comment --comment fwlog -j LOG_AND_ACCEPT",
            "-A INPUT -i eth0 -p tcp --syn -m conntrack --ctstate NEW,RELATED -m comment --comment fwlog -j LOG_AND_REJECT",
            "-A INPUT -i eth0 ! -p tcp -m conntrack --ctstate NEW,RELATED -m comment --comment fwlog -j LOG_AND_REJECT",
            "-A OUTPUT ! -o lo -p tcp --syn -m conntrack --ctstate NEW,RELATED -m comment --comment fwlog -j LOG_AND_DROP",
            "-A OUTPUT ! -o lo ! -p tcp -m conntrack --ctstate NEW,RELATED -m comment --comment fwlog -j LOG_AND_DROP",
        ]
    );
}

#[test]
fn port_rules_parse_and_refuse_nonsense() {
    let rule: PortRule = "22/tcp".parse().expect("valid");
    assert_eq!((rule.port, rule.proto), (22, Transport::Tcp));
    assert_eq!(rule.to_string(), "22/tcp");
    for bad in [
        "22",
        "0/tcp",
        "70000/tcp",
        "22/icmp",
        "ssh/tcp",
        "/tcp",
        "22/",
    ] {
        assert!(bad.parse::<PortRule>().is_err(), "{bad} should be refused");
    }
}

#[test]
fn with_grace_connectionless_attempts_are_accepted_until_it_ends() {
    let mut options = options(false);
    options.interfaces = vec!["eth0".into()];
    options.tag = "fwlog-00112233445566ff".into();
    options.outbound = Action::Reject;
    options.grace = Grace {
        inbound: true,
        outbound: true,
    };
    let script = install_script(&options, &BTreeSet::new());
    let jumps: Vec<&str> = script
        .lines()
        .filter(|l| l.starts_with("-A INPUT") || l.starts_with("-A OUTPUT"))
        .collect();
    assert_eq!(
        jumps,
        [
            "-A INPUT -i eth0 -p tcp --syn -m conntrack --ctstate NEW,RELATED -m comment --comment fwlog-00112233445566ff -j LOG_AND_DROP",
            "-A INPUT -i eth0 ! -p tcp -m conntrack --ctstate NEW,RELATED -m comment --comment fwlog-00112233445566ff -j LOG_AND_ACCEPT",
            "-A OUTPUT ! -o lo -p tcp --syn -m conntrack --ctstate NEW,RELATED -m comment --comment fwlog-00112233445566ff -j LOG_AND_REJECT",
            "-A OUTPUT ! -o lo ! -p tcp -m conntrack --ctstate NEW,RELATED -m comment --comment fwlog-00112233445566ff -j LOG_AND_ACCEPT",
        ]
    );
    assert_eq!(
        grace_end_script(&options).expect("a grace to end"),
        "\
*filter
-D INPUT -i eth0 ! -p tcp -m conntrack --ctstate NEW,RELATED -m comment --comment fwlog-00112233445566ff -j LOG_AND_ACCEPT
-A INPUT -i eth0 ! -p tcp -m conntrack --ctstate NEW,RELATED -m comment --comment fwlog-00112233445566ff -j LOG_AND_DROP
-D OUTPUT ! -o lo ! -p tcp -m conntrack --ctstate NEW,RELATED -m comment --comment fwlog-00112233445566ff -j LOG_AND_ACCEPT
-A OUTPUT ! -o lo ! -p tcp -m conntrack --ctstate NEW,RELATED -m comment --comment fwlog-00112233445566ff -j LOG_AND_REJECT
COMMIT
"
    );
    options.grace = Grace::default();
    assert_eq!(grace_end_script(&options), None);
}
