//! Tidy check: every name the user side looks up in the eBPF object (fwlog-common's
//! `programs.rs`: maps, globals, programs) is there, of the right kind, in the object this
//! binary embeds. A renamed map or program otherwise shows only when a kernel test loads it.

use std::collections::{BTreeMap, BTreeSet};

use fwlog_common::{
    event::{Action, CtState},
    programs::*,
};
use object::{Object as _, ObjectSection as _, ObjectSymbol as _, SectionKind};

static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/fwlog"));

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Map,
    Global,
    Program,
}

/// The names the user side uses, by what they name.
fn names_looked_up() -> Vec<(&'static str, Kind)> {
    let mut names = vec![
        (EVENTS_MAP, Kind::Map),
        (EVENT_RINGS_MAP, Kind::Map),
        (COUNTERS_MAP, Kind::Map),
        (FLOWS_MAP, Kind::Map),
        (NEW_FLOW_MAP, Kind::Map),
        (FLOW_FILTER_MAP, Kind::Map),
        (SOCKETS_MAP, Kind::Map),
        (RING_WAKE_GLOBAL, Kind::Global),
        (FLOW_TRACKING_GLOBAL, Kind::Global),
        (DNS_CAPTURE_GLOBAL, Kind::Global),
        (FLOW_INGRESS_PROGRAM, Kind::Program),
        (FLOW_EGRESS_PROGRAM, Kind::Program),
        (FLOW_INGRESS_L3_PROGRAM, Kind::Program),
        (FLOW_EGRESS_L3_PROGRAM, Kind::Program),
        (NETNS_ALIVE_PROGRAM, Kind::Program),
    ];
    names.extend(PROCESS_PROGRAMS.map(|name| (name, Kind::Program)));
    for action in Action::ALL {
        for state in CtState::ALL {
            names.push((verdict_program(action, state), Kind::Program));
        }
    }
    names
}

/// The object's symbols, by what they are: maps (in `maps`/`.maps`), globals (in `.data`,
/// `.rodata`, `.bss`) and programs (functions in executable sections).
fn object_symbols(object: &[u8]) -> BTreeMap<String, Kind> {
    let file = object::File::parse(object).expect("the embedded eBPF object is an ELF file");
    let mut symbols = BTreeMap::new();
    for symbol in file.symbols() {
        let (Ok(name), Some(index)) = (symbol.name(), symbol.section_index()) else {
            continue;
        };
        let Ok(section) = file.section_by_index(index) else {
            continue;
        };
        let section_name = section.name().unwrap_or_default();
        let kind = if section_name == "maps" || section_name == ".maps" {
            Kind::Map
        } else if [".data", ".rodata", ".bss"]
            .iter()
            .any(|data| section_name.starts_with(data))
        {
            Kind::Global
        } else if section.kind() == SectionKind::Text && symbol.is_definition() {
            Kind::Program
        } else {
            continue;
        };
        symbols.insert(name.to_string(), kind);
    }
    symbols
}

/// What is wrong with `names` against `symbols`, one line each.
fn missing(names: &[(&str, Kind)], symbols: &BTreeMap<String, Kind>) -> Vec<String> {
    names
        .iter()
        .filter(|(name, kind)| symbols.get(*name) != Some(kind))
        .map(|(name, kind)| match symbols.get(*name) {
            Some(found) => format!("{name:?} is a {found:?} in the object, not a {kind:?}"),
            None => format!("{kind:?} {name:?} is not in the object"),
        })
        .collect()
}

#[test]
fn every_name_the_user_side_looks_up_is_in_the_ebpf_object() {
    let problems = missing(&names_looked_up(), &object_symbols(EBPF_OBJECT));
    assert!(
        problems.is_empty(),
        "fwlog-common/src/programs.rs and fwlog-ebpf disagree:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn this_test_checks_every_name_programs_rs_defines() {
    let source = include_str!("../../fwlog-common/src/programs.rs");
    let checked: BTreeSet<&str> = names_looked_up()
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    // Every string literal in programs.rs is a name (its comments quote with backticks).
    let literals: BTreeSet<&str> = source
        .lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .flat_map(|line| line.split('"').skip(1).step_by(2))
        .collect();
    let unchecked: Vec<&&str> = literals.difference(&checked).collect();
    assert!(
        unchecked.is_empty(),
        "programs.rs names {unchecked:?}: add them to names_looked_up()"
    );
}

#[test]
fn a_wrong_name_is_caught() {
    let symbols = object_symbols(EBPF_OBJECT);
    assert!(!symbols.is_empty(), "no symbols read from the object");
    let wrong = missing(
        &[("EVENT", Kind::Map), (EVENTS_MAP, Kind::Program)],
        &symbols,
    );
    assert_eq!(wrong.len(), 2, "{wrong:?}");
}
