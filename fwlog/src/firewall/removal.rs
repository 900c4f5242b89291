//! Reading `iptables-save` output: which chains exist with which policy, which rules are
//! fwlog's, and the `iptables-restore --noflush` script that takes exactly those away while
//! every chain the user had, or uses, stays theirs (pure: no I/O).

use std::collections::{BTreeMap, BTreeSet};

use fwlog_common::event::Action;

use super::{fwlog_comment, is_fwlog_rule, plan::Previous, rule_instance, rule_pins, KEPT_COMMENT};

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
    /// The scripts, one transaction each, in order; none when nothing of fwlog's is there.
    /// Usually one: see [`FilterTable::removal`] for when there are more.
    pub scripts: Vec<String>,
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

    /// The rules of `chain`, in order.
    fn rules_in(&self, chain: &str) -> Vec<&str> {
        self.rules
            .iter()
            .filter(|(c, _)| c == chain)
            .map(|(_, spec)| spec.as_str())
            .collect()
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
            let rules = self.rules_in(chain);
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
        let rounds = self.rounds(|_| true, None);
        let last = rounds.len().saturating_sub(1);
        let scripts = rounds
            .iter()
            .enumerate()
            .map(|(round, rules)| {
                let mut script = String::from("*filter\n");
                if round == 0 {
                    script.push_str(&inserts);
                }
                for (chain, spec) in rules {
                    script.push_str(&format!("-D {chain} {spec}\n"));
                }
                if round == last {
                    for chain in &deleted_chains {
                        script.push_str(&format!("-X {chain}\n"));
                    }
                }
                script.push_str("COMMIT\n");
                script
            })
            .collect();
        Removal { scripts, kept }
    }

    /// fwlog's rules in deletion rounds. iptables finds the rule a `-D` names by comparing
    /// its match data, and xt_bpf's holds the number of the descriptor iptables-restore opened
    /// the pin with: a logging rule can be deleted only by a script that opens its pin as the
    /// same n-th descriptor as the script that added it (tried: the second of two identical
    /// rules added in one script is not found by a `-D` in a script of its own). Scripts add
    /// the logging rules in table order, so each round deletes the first remaining copy of
    /// each logging rule, in table order, as a fresh process: one round per generation of
    /// fwlog rules (two after a replacement was cut short), every other rule in the first.
    fn rounds(
        &self,
        deleting: impl Fn(&str) -> bool,
        copies_at_most: Option<&BTreeMap<(&str, &str), usize>>,
    ) -> Vec<Vec<(&str, &str)>> {
        let mut rounds: Vec<Vec<(&str, &str)>> = Vec::new();
        let mut copies: BTreeMap<(&str, &str), usize> = BTreeMap::new();
        for (chain, spec) in self.fwlog_rules() {
            let round = if rule_pins(spec).next().is_some() {
                let copy = copies.entry((chain, spec)).or_insert(0);
                *copy += 1;
                let limit = copies_at_most.map_or(usize::MAX, |limits| {
                    limits.get(&(chain, spec)).copied().unwrap_or(0)
                });
                if *copy > limit {
                    continue;
                }
                *copy - 1
            } else if deleting(spec) {
                0
            } else {
                continue;
            };
            if rounds.len() <= round {
                rounds.resize_with(round + 1, Vec::new);
            }
            rounds[round].push((chain, spec));
        }
        rounds
    }

    /// How many copies of each logging rule there are.
    fn logging_copies(&self) -> BTreeMap<(&str, &str), usize> {
        let mut copies = BTreeMap::new();
        for (chain, spec) in self.fwlog_rules() {
            if rule_pins(spec).next().is_some() {
                *copies.entry((chain.as_str(), spec.as_str())).or_insert(0) += 1;
            }
        }
        copies
    }

    /// Where the earlier fwlog's rules are, for a new instance that joins them
    /// ([`crate::firewall::plan::joining_script`]) before [`FilterTable::previous_removal`] takes them away.
    pub fn previous(&self) -> Previous {
        let mut previous = Previous::default();
        for chain in Action::ALL.map(Action::chain) {
            let rules = self.rules_in(chain);
            if rules.iter().any(|spec| final_action(spec).is_some()) {
                previous.owned.insert(chain.to_string());
            } else if let Some(last) = rules.iter().rposition(|spec| is_fwlog_rule(spec)) {
                previous.after.insert(chain.to_string(), last + 1);
            }
        }
        previous
    }

    /// The scripts that take away, from this table, the earlier fwlog's rules that `before`
    /// (the table before instance `id` joined it) held: as many copies of each logging rule
    /// as `before` had (theirs come first), and every fwlog rule not tagged with `id`. The
    /// chains stay: they are the new instance's.
    pub fn previous_removal(&self, before: &FilterTable, id: &str) -> Vec<String> {
        let limits = before.logging_copies();
        self.rounds(|spec| rule_instance(spec) != Some(id), Some(&limits))
            .iter()
            .map(|rules| {
                let mut script = String::from("*filter\n");
                for (chain, spec) in rules {
                    script.push_str(&format!("-D {chain} {spec}\n"));
                }
                script.push_str("COMMIT\n");
                script
            })
            .collect()
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
