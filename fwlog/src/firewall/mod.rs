//! iptables side of fwlog: which rules to add ([`plan`]), which to take away ([`removal`]), and
//! running iptables-save/iptables-restore for IPv4 and IPv6 ([`iptables`]).

pub mod iptables;
pub mod plan;
pub mod removal;

/// Every rule fwlog adds carries `-m comment --comment fwlog`, so that it removes exactly its own.
pub const RULE_COMMENT: &str = "fwlog";

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
