//! Reading `iptables-save` output: which chains exist with which policy, which rules are
//! fwlog's, and the `iptables-restore --noflush` script that takes exactly those away while
//! every chain the user had, or uses, stays theirs (pure: no I/O).

use std::collections::{BTreeMap, BTreeSet};

use fwlog_common::event::Action;

use super::{fwlog_comment, is_fwlog_rule, rule_pins, KEPT_COMMENT};

/// The filter table as `iptables-save -t filter` printed it.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct FilterTable {
    /// Every chain, built-in or not.
    pub chains: BTreeSet<String>,
    /// The policy of each built-in chain (`ACCEPT`, `DROP`).
    pub policies: BTreeMap<String, String>,
    /// Every rule in order: (chain, the rule after `-A CHAIN `).
    pub rules: Vec<(String, String)>,
}

/// What taking fwlog's rules out of one table does.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Removal {
    /// The script, or `None` when nothing of fwlog's is there.
    pub script: Option<String>,
    /// Chains fwlog created that the user's rules use: kept with their final action, which is
    /// the user's rule from then on (chain, action).
    pub kept: Vec<(String, String)>,
}

impl FilterTable {
    pub fn parse(save_output: &str) -> Self {
        let mut table = FilterTable::default();
        let mut in_filter = false;
        for line in save_output.lines() {
            if let Some(name) = line.strip_prefix('*') {
                in_filter = name.trim() == "filter";
            } else if !in_filter {
                continue;
            } else if let Some(declaration) = line.strip_prefix(':') {
                let mut words = declaration.split_whitespace();
                if let Some(name) = words.next() {
                    table.chains.insert(name.to_string());
                    if let Some(policy) = words.next().filter(|p| *p != "-") {
                        table.policies.insert(name.to_string(), policy.to_string());
                    }
                }
            } else if let Some(rest) = line.strip_prefix("-A ") {
                if let Some((chain, spec)) = rest.split_once(' ') {
                    table.rules.push((chain.to_string(), spec.to_string()));
                }
            }
        }
        table
    }

    /// The rules fwlog added, in table order.
    pub fn fwlog_rules(&self) -> impl Iterator<Item = &(String, String)> {
        self.rules.iter().filter(|(_, spec)| is_fwlog_rule(spec))
    }

    /// Whether anything of fwlog's is in this table.
    pub fn has_fwlog_rules(&self) -> bool {
        self.fwlog_rules().next().is_some()
    }

    /// The pinned programs fwlog's rules name: iptables-restore opens each to read a rule that
    /// names it, also to delete the rule.
    pub fn pinned_programs(&self) -> BTreeSet<String> {
        self.fwlog_rules()
            .flat_map(|(_, spec)| rule_pins(spec))
            .map(str::to_string)
            .collect()
    }

    /// The script that removes fwlog's rules, and the chains fwlog created unless the user's
    /// rules are in them or jump to them. A chain fwlog created is one that ends in fwlog's
    /// own final action (`-m comment --comment fwlog… -j DROP`), which it adds to no chain it
    /// found. A chain it created and the user uses keeps that action, as the user's own rule.
    pub fn removal(&self) -> Removal {
        if !self.has_fwlog_rules() {
            return Removal::default();
        }
        let mut inserts = String::new();
        let mut deleted_chains = Vec::new();
        let mut kept = Vec::new();
        for chain in Action::ALL.map(Action::chain) {
            let rules: Vec<&str> = self
                .rules
                .iter()
                .filter(|(c, _)| c == chain)
                .map(|(_, spec)| spec.as_str())
                .collect();
            let Some(position) = rules.iter().position(|spec| final_action(spec).is_some()) else {
                continue;
            };
            let users_rule_inside = rules.iter().any(|spec| !is_fwlog_rule(spec));
            let users_jump = self
                .rules
                .iter()
                .any(|(_, spec)| !is_fwlog_rule(spec) && jump_target(spec) == Some(chain));
            if users_rule_inside || users_jump {
                let action = final_action(rules[position]).unwrap_or_default();
                inserts.push_str(&format!(
                    "-I {chain} {} -m comment --comment {KEPT_COMMENT} -j {action}\n",
                    position + 1
                ));
                kept.push((chain.to_string(), action.to_string()));
            } else {
                deleted_chains.push(chain);
            }
        }
        let mut script = String::from("*filter\n");
        script.push_str(&inserts);
        for (chain, spec) in self.fwlog_rules() {
            script.push_str(&format!("-D {chain} {spec}\n"));
        }
        for chain in deleted_chains {
            script.push_str(&format!("-X {chain}\n"));
        }
        script.push_str("COMMIT\n");
        Removal {
            script: Some(script),
            kept,
        }
    }
}

/// `-m comment --comment fwlog… -j DROP` → `DROP` (with the target's options, as
/// iptables-save printed them), for fwlog's final rule of a chain it created.
fn final_action(spec: &str) -> Option<&str> {
    let rest = spec.strip_prefix("-m comment --comment ")?;
    let (comment, rest) = rest.split_once(' ')?;
    fwlog_comment(comment.trim_matches('"'))?;
    rest.strip_prefix("-j ")
}

fn jump_target(spec: &str) -> Option<&str> {
    let mut tokens = spec.split_whitespace();
    while let Some(token) = tokens.next() {
        if token == "-j" || token == "-g" {
            return tokens.next();
        }
    }
    None
}

#[cfg(test)]
mod tests;
