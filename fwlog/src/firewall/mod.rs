//! iptables side of fwlog: which rules to add ([`plan`]), which to take away ([`removal`]), and
//! running iptables-save/iptables-restore for IPv4 and IPv6 ([`iptables`]).

pub mod iptables;
pub mod plan;
pub mod removal;

use crate::netns::PIN_ROOT;

/// Every rule fwlog adds carries `-m comment --comment fwlog-<id>` (the id of the instance that
/// added it, see [`rule_tag`]), so that it removes exactly its own, except the logging rules,
/// which name a program pinned under [`PIN_ROOT`] instead: they run for every logged packet,
/// and a comment is one more xt match call per packet. Rules with the bare comment `fwlog`
/// (fwlog before instance ids, and `fwlog rules`) are fwlog's too.
pub const RULE_COMMENT: &str = "fwlog";

/// The comment `fwlog uninstall` leaves on the final action it keeps in a chain fwlog created
/// but the user's rules jump to: the rule is the user's from then on.
pub const KEPT_COMMENT: &str = "fwlog-kept";

/// The comment of the rules added by the instance with creation id `id` (16 hex digits: only
/// letters, digits, `-` and `_` keep iptables-save from quoting it).
pub fn rule_tag(id: &str) -> String {
    format!("{RULE_COMMENT}-{id}")
}

/// Whether a rule comment (unquoted) is fwlog's, and the instance id it names if any.
pub fn fwlog_comment(comment: &str) -> Option<Option<&str>> {
    if comment == RULE_COMMENT {
        return Some(None);
    }
    let id = comment.strip_prefix(RULE_COMMENT)?.strip_prefix('-')?;
    (id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit())).then_some(Some(id))
}

/// The instance id in a rule's fwlog comment.
pub fn rule_instance(spec: &str) -> Option<&str> {
    let mut tokens = spec.split_whitespace();
    while let Some(token) = tokens.next() {
        if token == "--comment" {
            if let Some(Some(id)) = tokens
                .next()
                .and_then(|c| fwlog_comment(c.trim_matches('"')))
            {
                return Some(id);
            }
        }
    }
    None
}

/// Whether a rule (as iptables-save prints it, after `-A CHAIN`) is one fwlog added: it carries
/// fwlog's comment (quoted or not) or runs a program fwlog pinned.
pub fn is_fwlog_rule(spec: &str) -> bool {
    let mut tokens = spec.split_whitespace();
    while let Some(token) = tokens.next() {
        let ours = match token {
            "--comment" => tokens
                .next()
                .is_some_and(|c| fwlog_comment(c.trim_matches('"')).is_some()),
            "--object-pinned" => pinned_program(tokens.next()).is_some(),
            _ => false,
        };
        if ours {
            return true;
        }
    }
    false
}

/// The path after `--object-pinned`, when it is under [`PIN_ROOT`].
fn pinned_program(path: Option<&str>) -> Option<&str> {
    let path = path?.trim_matches('"');
    path.strip_prefix(PIN_ROOT)
        .is_some_and(|rest| rest.starts_with('/'))
        .then_some(path)
}

/// The programs under [`PIN_ROOT`] that a rule names.
pub fn rule_pins(spec: &str) -> impl Iterator<Item = &str> {
    let mut tokens = spec.split_whitespace();
    std::iter::from_fn(move || loop {
        if tokens.next()? == "--object-pinned" {
            if let Some(path) = pinned_program(tokens.next()) {
                return Some(path);
            }
        }
    })
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
