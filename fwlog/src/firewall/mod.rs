//! iptables side of fwlog: which rules to add ([`plan`]), which to take away ([`removal`]), and
//! running iptables-save/iptables-restore for IPv4 and IPv6 ([`iptables`]).

pub mod iptables;
pub mod plan;
pub mod removal;

use crate::netns::PIN_ROOT;

/// Every rule fwlog adds carries `-m comment --comment fwlog`, so that it removes exactly its
/// own, except the logging rules, which name a program pinned under [`PIN_ROOT`] instead: they
/// run for every logged packet, and a comment is one more xt match call per packet.
pub const RULE_COMMENT: &str = "fwlog";

/// Whether a rule (as iptables-save prints it, after `-A CHAIN`) is one fwlog added: it carries
/// fwlog's comment (quoted or not) or runs a program fwlog pinned.
pub fn is_fwlog_rule(spec: &str) -> bool {
    let mut tokens = spec.split_whitespace();
    while let Some(token) = tokens.next() {
        let ours = match token {
            "--comment" => tokens.next().map(|c| c.trim_matches('"')) == Some(RULE_COMMENT),
            "--object-pinned" => tokens
                .next()
                .and_then(|path| path.trim_matches('"').strip_prefix(PIN_ROOT))
                .is_some_and(|rest| rest.starts_with('/')),
            _ => false,
        };
        if ours {
            return true;
        }
    }
    false
}

/// IPv4 (iptables) or IPv6 (ip6tables).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub const ALL: [Family; 2] = [Family::V4, Family::V6];

    /// The command's base name (`iptables`/`ip6tables`).
    pub const fn command(self) -> &'static str {
        match self {
            Family::V4 => "iptables",
            Family::V6 => "ip6tables",
        }
    }
}
