//! The rules `fwlog watch` installs, as an `iptables-restore --noflush` script (pure: no I/O).
//!
//! The layout follows the article: three chains `LOG_AND_{ACCEPT,DROP,REJECT}` that log NEW and
//! RELATED connections and then act, inbound NEW/RELATED on the watched interfaces jumping to
//! `LOG_AND_DROP` (the inbound policy), outbound NEW/RELATED jumping to `LOG_AND_ACCEPT` (the
//! outbound policy). "Log" is a `-m bpf` match on fwlog's pinned program, which records the
//! packet and matches; in a chain fwlog creates, that rule takes the chain's action itself, so
//! a logged packet costs two xt matches (conntrack state, bpf) and no more rules. In a chain the
//! user had, the rule has no target, and the packet goes on to the user's own rules. Loopback
//! is never touched.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
    path::Path,
};

use fwlog_common::{
    event::{Action, CtState},
    programs::verdict_program,
};

// The rule plan's vocabulary is defined with the other values (one definition each).
pub use crate::values::{PortRule, Transport};

/// What starts a connection: a TCP SYN, or any packet of another protocol.
///
/// conntrack also calls NEW the first packet it sees of a TCP connection that predates it (a
/// "loose" mid-stream pickup, net/netfilter/nf_conntrack_proto_tcp.c, `tcp_new`): in a network
/// namespace where nothing used conntrack before fwlog, that is the next packet of every open
/// SSH session. Matching `--syn` keeps those sessions alive when fwlog installs its rules.
const CONNECTION_ATTEMPTS: [&str; 2] = ["-p tcp --syn", "! -p tcp"];

/// What the user asked for, as far as the rules are concerned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleOptions {
    /// Interfaces whose new inbound connections meet the inbound policy.
    pub interfaces: Vec<String>,
    /// Directory holding the pinned verdict programs.
    pub pin_dir: std::path::PathBuf,
    /// `Some(prefix)`: also keep the article's `-j LOG --log-prefix '[PREFIX-A]:'` rules.
    pub kernel_log_prefix: Option<String>,
    /// What happens to new inbound connections on the watched interfaces (the article: drop).
    pub inbound: Action,
    /// What happens to new outbound connections (the article: accept).
    pub outbound: Action,
    /// Ports whose new inbound connections are logged and accepted before the inbound policy.
    pub allow_in: Vec<PortRule>,
    /// The comment on every rule: `fwlog-<instance id>` ([`super::rule_tag`]), or `fwlog`.
    pub tag: String,
    /// Directions whose new connectionless attempts are accepted (and logged) for now.
    pub grace: Grace,
    /// Seconds of that grace at install, where the namespace has connectionless sockets.
    pub grace_seconds: u64,
    /// The user chose no outbound policy: it follows OUTPUT's (a DROP policy stays closed).
    pub outbound_default: bool,
}

/// While conntrack learns the connectionless flows the host already has (see
/// `installation.rs`), new non-TCP attempts in a direction with grace go to `LOG_AND_ACCEPT`
/// instead of the policy: logged as accepted, which they are. TCP needs none (`--syn`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Grace {
    pub inbound: bool,
    pub outbound: bool,
}

/// The non-TCP entry of [`CONNECTION_ATTEMPTS`].
const CONNECTIONLESS: &str = "! -p tcp";

/// Where an earlier fwlog's rules are in a table that a new instance joins before it takes
/// them away (`installation.rs`): the new rules go after them, so that each old rule is still
/// the first of its kind when it is deleted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Previous {
    /// The `LOG_AND_*` chains the earlier fwlog created: fwlog's again once it is gone.
    pub owned: BTreeSet<String>,
    /// For other chains: how many rules, from the top, reach past its last rule there.
    pub after: BTreeMap<String, usize>,
}

/// The restore script for one family, given the chains that already exist in its filter table.
///
/// Chains that exist (a user who followed the article) get fwlog's rules inserted at their top,
/// before the user's own; chains that do not are created with fwlog's rules and their action.
pub fn install_script(options: &RuleOptions, existing_chains: &BTreeSet<String>) -> String {
    joining_script(options, existing_chains, &Previous::default())
}

/// [`install_script`] in a table that still has an earlier fwlog's rules (`previous`): in a
/// chain that fwlog created, the new rules (with the action) and final action go after the old
/// ones; in the user's chains, the new logging rules go right after the old.
pub fn joining_script(
    options: &RuleOptions,
    existing_chains: &BTreeSet<String>,
    previous: &Previous,
) -> String {
    let mut script = String::from("*filter\n");
    for action in Action::ALL {
        if !existing_chains.contains(action.chain()) {
            let _ = writeln!(script, ":{} - [0:0]", action.chain());
        }
    }
    for action in Action::ALL {
        let chain = action.chain();
        let exists = existing_chains.contains(chain);
        let created = !exists || previous.owned.contains(chain);
        let after = previous.after.get(chain).copied().unwrap_or(0);
        for (position, rule) in chain_rules(options, action, created).iter().enumerate() {
            if created {
                let _ = writeln!(script, "-A {chain} {rule}");
            } else {
                let _ = writeln!(script, "-I {chain} {} {rule}", after + position + 1);
            }
        }
        if created {
            let _ = writeln!(
                script,
                "-A {chain} -m comment --comment {} -j {}",
                options.tag,
                action.target()
            );
        }
    }
    for interface in &options.interfaces {
        for allowed in &options.allow_in {
            let proto = allowed.proto.as_str();
            let syn = if allowed.proto == Transport::Tcp {
                " --syn"
            } else {
                ""
            };
            let _ = writeln!(
                script,
                "-A INPUT -i {interface} -p {proto} -m {proto} --dport {}{syn} -m conntrack --ctstate NEW -m comment --comment {} -j {}",
                allowed.port,
                options.tag,
                Action::Accept.chain()
            );
        }
        for attempt in CONNECTION_ATTEMPTS {
            let graced = options.grace.inbound && attempt == CONNECTIONLESS;
            let policy = if graced {
                Action::Accept
            } else {
                options.inbound
            };
            let _ = writeln!(
                script,
                "-A {}",
                input_jump(options, interface, attempt, policy)
            );
        }
    }
    for attempt in CONNECTION_ATTEMPTS {
        let graced = options.grace.outbound && attempt == CONNECTIONLESS;
        let policy = if graced {
            Action::Accept
        } else {
            options.outbound
        };
        let _ = writeln!(script, "-A {}", output_jump(options, attempt, policy));
    }
    script.push_str("COMMIT\n");
    script
}

/// The script that ends the grace of `options`: the connectionless jumps that went to
/// `LOG_AND_ACCEPT` go to the policy instead, in one transaction. `None` without grace.
pub fn grace_end_script(options: &RuleOptions) -> Option<String> {
    if options.grace == Grace::default() {
        return None;
    }
    let mut script = String::from("*filter\n");
    let mut swap = |rule: &dyn Fn(Action) -> String, policy: Action| {
        let _ = writeln!(script, "-D {}", rule(Action::Accept));
        let _ = writeln!(script, "-A {}", rule(policy));
    };
    if options.grace.inbound {
        for interface in &options.interfaces {
            swap(
                &|policy| input_jump(options, interface, CONNECTIONLESS, policy),
                options.inbound,
            );
        }
    }
    if options.grace.outbound {
        swap(
            &|policy| output_jump(options, CONNECTIONLESS, policy),
            options.outbound,
        );
    }
    script.push_str("COMMIT\n");
    Some(script)
}

/// `INPUT -i IF … -j LOG_AND_X`, without `-A`.
fn input_jump(options: &RuleOptions, interface: &str, attempt: &str, policy: Action) -> String {
    format!(
        "INPUT -i {interface} {attempt} -m conntrack --ctstate NEW,RELATED -m comment --comment {} -j {}",
        options.tag,
        policy.chain()
    )
}

/// `OUTPUT ! -o lo … -j LOG_AND_X`, without `-A`.
fn output_jump(options: &RuleOptions, attempt: &str, policy: Action) -> String {
    format!(
        "OUTPUT ! -o lo {attempt} -m conntrack --ctstate NEW,RELATED -m comment --comment {} -j {}",
        options.tag,
        policy.chain()
    )
}

/// The logging rules of one chain, without `-A CHAIN`. They act themselves only in a chain
/// fwlog creates and when no kernel-log rule has to run after them.
fn chain_rules(options: &RuleOptions, action: Action, created: bool) -> Vec<String> {
    let target = if created && options.kernel_log_prefix.is_none() {
        format!(" -j {}", action.target())
    } else {
        String::new()
    };
    let mut rules: Vec<String> = CtState::ALL
        .iter()
        .map(|&state| {
            format!(
                "-m conntrack --ctstate {} -m bpf --object-pinned {}{target}",
                state.iptables_name(),
                pin_path(&options.pin_dir, action, state).display()
            )
        })
        .collect();
    if let Some(prefix) = &options.kernel_log_prefix {
        rules.push(format!(
            "-m conntrack --ctstate NEW,RELATED -m comment --comment {} -j LOG --log-prefix \"{}\" --log-level 7",
            options.tag,
            log_prefix(prefix, action)
        ));
    }
    rules
}

/// Where the program for `action` and `state` is pinned.
pub fn pin_path(pin_dir: &Path, action: Action, state: CtState) -> std::path::PathBuf {
    pin_dir.join(verdict_program(action, state))
}

/// The article's log prefix: `[OY-A]:` for prefix `OY` and action accept.
pub fn log_prefix(prefix: &str, action: Action) -> String {
    format!("[{prefix}-{}]:", action.letter())
}

#[cfg(test)]
mod tests;
