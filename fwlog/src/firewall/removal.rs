//! Reading `iptables-save` output: which chains exist, which rules are fwlog's, and the
//! `iptables-restore --noflush` script that takes exactly those away (pure: no I/O).

use std::collections::{BTreeMap, BTreeSet};

use fwlog_common::event::Action;

use super::is_fwlog_rule;

/// The filter table as `iptables-save -t filter` printed it.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct FilterTable {
    /// Every chain, built-in or not.
    pub chains: BTreeSet<String>,
    /// Every rule in order: (chain, the rule after `-A CHAIN `).
    pub rules: Vec<(String, String)>,
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
                if let Some(name) = declaration.split_whitespace().next() {
                    table.chains.insert(name.to_string());
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

    /// `LOG_AND_*` chains that hold only fwlog's rules and that nothing but fwlog jumps to:
    /// fwlog created them, so removing its rules leaves them empty and they go too.
    pub fn fwlog_chains(&self) -> Vec<String> {
        let mut owned: BTreeMap<&str, bool> = Action::ALL
            .iter()
            .map(|a| a.chain())
            .filter(|chain| self.chains.contains(*chain))
            .map(|chain| (chain, false))
            .collect();
        for (chain, spec) in &self.rules {
            let ours = is_fwlog_rule(spec);
            if let Some(only_ours) = owned.get_mut(chain.as_str()) {
                if !ours {
                    owned.remove(chain.as_str());
                    continue;
                }
                *only_ours = true;
            }
            if !ours {
                if let Some(target) = jump_target(spec) {
                    owned.remove(target);
                }
            }
        }
        owned
            .into_iter()
            .filter(|&(_, only_ours)| only_ours)
            .map(|(chain, _)| chain.to_string())
            .collect()
    }

    /// Whether anything of fwlog's is in this table.
    pub fn has_fwlog_rules(&self) -> bool {
        self.fwlog_rules().next().is_some()
    }

    /// The script that removes fwlog's rules and chains, or `None` if there is nothing to remove.
    pub fn removal_script(&self) -> Option<String> {
        if !self.has_fwlog_rules() {
            return None;
        }
        let mut script = String::from("*filter\n");
        for (chain, spec) in self.fwlog_rules() {
            script.push_str(&format!("-D {chain} {spec}\n"));
        }
        for chain in self.fwlog_chains() {
            script.push_str(&format!("-X {chain}\n"));
        }
        script.push_str("COMMIT\n");
        Some(script)
    }
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
