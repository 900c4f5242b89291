//! The module-import graph of one crate, read from its sources (`use` trees and `crate::`,
//! `super::`, `self::` paths outside comments, strings and test code), and the tidy checks on
//! it: no circles, and nothing past the command line reads its types.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::Path,
};

use super::{report, rust_files, CRATES};
use crate::cmd::workspace_root;

/// One crate's modules as files: module path (`output::format::json`) → source.
struct ModuleTree {
    modules: BTreeMap<String, String>,
}

impl ModuleTree {
    fn read(src: &Path) -> ModuleTree {
        let mut modules = BTreeMap::new();
        for path in rust_files(src) {
            let relative = path.strip_prefix(src).expect("below src");
            let mut parts: Vec<String> = relative
                .iter()
                .map(|part| part.to_string_lossy().trim_end_matches(".rs").to_string())
                .collect();
            if parts
                .last()
                .is_some_and(|last| ["mod", "main", "lib"].contains(&last.as_str()))
            {
                parts.pop();
            }
            let text = fs::read_to_string(&path).expect("readable source");
            modules.insert(parts.join("::"), text);
        }
        ModuleTree::from_sources(modules)
    }

    /// The tree of `modules` (path → source), without comments, strings and test code.
    fn from_sources(modules: BTreeMap<String, String>) -> ModuleTree {
        let modules = modules
            .into_iter()
            .map(|(module, text)| (module, strip_source(&text)))
            .collect();
        let mut tree = ModuleTree { modules };
        tree.drop_test_modules();
        tree
    }

    /// Test code may import what it likes: modules declared `#[cfg(test)] mod x;` and inline
    /// `#[cfg(test)] mod x { … }` blocks are left out.
    fn drop_test_modules(&mut self) {
        let mut test_modules = BTreeSet::new();
        for (module, text) in &mut self.modules {
            let (kept, declared) = without_test_items(text);
            *text = kept;
            for name in declared {
                test_modules.insert(join(module, &name));
            }
        }
        self.modules.retain(|module, _| {
            !test_modules
                .iter()
                .any(|test| module == test || module.starts_with(&format!("{test}::")))
        });
    }

    /// The module a path names: its longest prefix that is a module of this crate.
    fn resolve(&self, path: &[String]) -> Option<String> {
        (1..=path.len())
            .rev()
            .map(|n| path[..n].join("::"))
            .chain(std::iter::once(String::new()))
            .find(|candidate| self.modules.contains_key(candidate))
    }

    /// module → the modules it names, except itself and its own descendants (a module may use
    /// the modules it contains: it is their front door).
    fn imports(&self) -> BTreeMap<String, BTreeSet<String>> {
        let mut edges = BTreeMap::new();
        for (module, text) in &self.modules {
            let here: Vec<String> = if module.is_empty() {
                Vec::new()
            } else {
                module.split("::").map(str::to_string).collect()
            };
            let mut targets = BTreeSet::new();
            for path in crate_paths(text) {
                let Some(absolute) = absolute_path(&here, &path) else {
                    continue;
                };
                let Some(target) = self.resolve(&absolute) else {
                    continue;
                };
                let inside = module.is_empty() || target.starts_with(&format!("{module}::"));
                if target != *module && !inside {
                    targets.insert(target);
                }
            }
            edges.insert(module.clone(), targets);
        }
        edges
    }
}

fn join(module: &str, name: &str) -> String {
    if module.is_empty() {
        name.to_string()
    } else {
        format!("{module}::{name}")
    }
}

/// `text` without its `#[cfg(test)]` items, and the names of the test modules it declares.
fn without_test_items(text: &str) -> (String, Vec<String>) {
    let mut kept = String::new();
    let mut declared = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if line.trim() != "#[cfg(test)]" {
            kept.push_str(line);
            kept.push('\n');
            continue;
        }
        let Some(item) = lines.next() else { break };
        let words: Vec<&str> = item.split_whitespace().collect();
        let name = match words.as_slice() {
            ["mod", name, ..] | ["pub", "mod", name, ..] => Some(name.trim_end_matches([';', '{'])),
            _ => None,
        };
        if let (Some(name), true) = (name, item.trim_end().ends_with(';')) {
            declared.push(name.to_string());
            continue;
        }
        // Skip the item up to the end of its block (or of its line when it has none).
        let mut depth = item.matches('{').count() as i64 - item.matches('}').count() as i64;
        while depth > 0 {
            let Some(line) = lines.next() else { break };
            depth += line.matches('{').count() as i64 - line.matches('}').count() as i64;
        }
    }
    (kept, declared)
}

/// `text` without comments, strings and char literals, so only code is left to read paths in.
fn strip_source(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        match (chars[i], chars.get(i + 1)) {
            ('/', Some('/')) => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            ('/', Some('*')) => {
                i += 2;
                while i + 1 < chars.len() && !(chars[i] == '*' && chars[i + 1] == '/') {
                    i += 1;
                }
                i += 2;
            }
            ('r', Some('#' | '"')) if i == 0 || !is_ident_char(chars[i - 1]) => {
                // r"…" or r#"…"#: no escapes, ends at a quote and as many #.
                let hashes = chars[i + 1..].iter().take_while(|&&c| c == '#').count();
                let open = i + 1 + hashes;
                if chars.get(open) != Some(&'"') {
                    out.push('r');
                    i += 1;
                    continue;
                }
                let mut j = open + 1;
                while j < chars.len()
                    && !(chars[j] == '"'
                        && chars[j + 1..].iter().take_while(|&&c| c == '#').count() >= hashes)
                {
                    j += 1;
                }
                i = j + 1 + hashes;
                out.push_str("\"\"");
            }
            ('"', _) => {
                i += 1;
                while i < chars.len() && chars[i] != '"' {
                    i += if chars[i] == '\\' { 2 } else { 1 };
                }
                i += 1;
                out.push_str("\"\"");
            }
            ('\'', _) if chars.get(i + 2) == Some(&'\'') || chars.get(i + 1) == Some(&'\\') => {
                // A char literal ('x' or '\n'); lifetimes ('a) have no closing quote.
                i += 1;
                while i < chars.len() && chars[i] != '\'' {
                    i += if chars[i] == '\\' { 2 } else { 1 };
                }
                i += 1;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// Every path that starts with `crate`, `super` or `self`, with `use` trees expanded:
/// `use crate::{a::B, c}` gives `crate::a::B` and `crate::c`.
fn crate_paths(code: &str) -> Vec<Vec<String>> {
    let tokens = tokenize(code);
    let mut paths = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        if tokens[i] == "use" {
            let end = tokens[i..]
                .iter()
                .position(|t| t == ";")
                .map_or(tokens.len(), |n| i + n);
            expand_use(&tokens[i + 1..end], &[], &mut paths);
            i = end;
            continue;
        }
        let starts_path = ["crate", "super", "self"].contains(&tokens[i].as_str())
            && tokens.get(i + 1).is_some_and(|t| t == "::")
            && (i == 0 || tokens[i - 1] != "::");
        if starts_path {
            let mut path = vec![tokens[i].clone()];
            let mut j = i + 1;
            while tokens.get(j).is_some_and(|t| t == "::")
                && tokens.get(j + 1).is_some_and(|t| is_ident(t))
            {
                path.push(tokens[j + 1].clone());
                j += 2;
            }
            paths.push(path);
            i = j;
            continue;
        }
        i += 1;
    }
    paths
        .into_iter()
        .filter(|path| ["crate", "super", "self"].contains(&path[0].as_str()))
        .collect()
}

/// Expands one `use` tree (the tokens between `use` and `;`) under `prefix`.
fn expand_use(tokens: &[String], prefix: &[String], paths: &mut Vec<Vec<String>>) {
    for piece in split_at_commas(tokens) {
        let mut path = prefix.to_vec();
        let mut nested = false;
        for (i, token) in piece.iter().enumerate() {
            match token.as_str() {
                "{" => {
                    let close = matching_brace(piece, i);
                    expand_use(&piece[i + 1..close], &path, paths);
                    nested = true;
                    break;
                }
                "as" => break,
                // `a::{self, B}`: `self` is `a` itself.
                "self" if !path.is_empty() => {}
                token if is_ident(token) => path.push(token.to_string()),
                _ => {}
            }
        }
        if !nested && path.len() > prefix.len() {
            paths.push(path);
        }
    }
}

/// The trees of a `use` group, split at the commas outside nested braces.
fn split_at_commas(tokens: &[String]) -> Vec<&[String]> {
    let mut pieces = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, token) in tokens.iter().enumerate() {
        match token.as_str() {
            "{" => depth += 1,
            "}" => depth -= 1,
            "," if depth == 0 => {
                pieces.push(&tokens[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    pieces.push(&tokens[start..]);
    pieces
}

fn matching_brace(tokens: &[String], open: usize) -> usize {
    let mut depth = 0;
    for (i, token) in tokens.iter().enumerate().skip(open) {
        match token.as_str() {
            "{" => depth += 1,
            "}" => {
                depth -= 1;
                if depth == 0 {
                    return i;
                }
            }
            _ => {}
        }
    }
    tokens.len()
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

fn is_ident(token: &str) -> bool {
    token
        .chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_')
}

/// Identifiers, `::`, and single punctuation characters.
fn tokenize(code: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let mut chars = code.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_alphanumeric() || c == '_' {
            let mut word = c.to_string();
            while let Some(&next) = chars.peek() {
                if next.is_alphanumeric() || next == '_' {
                    word.push(next);
                    chars.next();
                } else {
                    break;
                }
            }
            tokens.push(word);
        } else if c == ':' && chars.peek() == Some(&':') {
            chars.next();
            tokens.push("::".to_string());
        } else if !c.is_whitespace() {
            tokens.push(c.to_string());
        }
    }
    tokens
}

/// `path` (starting with `crate`, `super` or `self`) as seen from module `here`, from the root.
fn absolute_path(here: &[String], path: &[String]) -> Option<Vec<String>> {
    let mut absolute = here.to_vec();
    let mut rest = path;
    match rest.first().map(String::as_str) {
        Some("crate") => {
            absolute.clear();
            rest = &rest[1..];
        }
        Some("self") => rest = &rest[1..],
        _ => {}
    }
    while rest.first().is_some_and(|part| part == "super") {
        absolute.pop()?;
        rest = &rest[1..];
    }
    absolute.extend(rest.iter().filter(|part| *part != "*").cloned());
    Some(absolute)
}

/// A circle in `edges`, as `a -> b -> a`, if there is one.
fn find_circle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        marks: &mut BTreeMap<String, Mark>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        marks.insert(node.to_string(), Mark::Open);
        stack.push(node.to_string());
        for next in edges.get(node).into_iter().flatten() {
            match marks.get(next) {
                Some(Mark::Open) => {
                    let start = stack.iter().position(|n| n == next).unwrap_or(0);
                    let mut circle = stack[start..].to_vec();
                    circle.push(next.clone());
                    return Some(circle);
                }
                Some(Mark::Done) => {}
                None => {
                    if let Some(circle) = visit(next, edges, marks, stack) {
                        return Some(circle);
                    }
                }
            }
        }
        stack.pop();
        marks.insert(node.to_string(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for node in edges.keys() {
        if !marks.contains_key(node) {
            if let Some(circle) = visit(node, edges, &mut marks, &mut Vec::new()) {
                return Some(circle);
            }
        }
    }
    None
}

fn display(module: &str) -> &str {
    if module.is_empty() {
        "<crate root>"
    } else {
        module
    }
}

/// The imports among the children of `parent` (`""`: the crate's top-level modules), each
/// child standing for itself and its descendants: `summary::tally -> filter` is `summary ->
/// filter`. A circle here is one between two folders even when no two files form one.
fn folded(
    edges: &BTreeMap<String, BTreeSet<String>>,
    parent: &str,
) -> BTreeMap<String, BTreeSet<String>> {
    let child_of = |module: &str| -> Option<String> {
        let rest = if parent.is_empty() {
            module
        } else {
            module.strip_prefix(parent)?.strip_prefix("::")?
        };
        let first = rest.split("::").next().filter(|first| !first.is_empty())?;
        Some(join(parent, first))
    };
    let mut folded: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, targets) in edges {
        let Some(from) = child_of(module) else {
            continue;
        };
        let to: BTreeSet<String> = targets
            .iter()
            .filter_map(|target| child_of(target))
            .filter(|to| *to != from)
            .collect();
        folded.entry(from).or_default().extend(to);
    }
    folded
}

/// Every module that has modules below it, the crate root (`""`) first.
fn parents(edges: &BTreeMap<String, BTreeSet<String>>) -> BTreeSet<String> {
    let mut parents = BTreeSet::from([String::new()]);
    for module in edges.keys() {
        let parts: Vec<&str> = module.split("::").collect();
        for n in 1..parts.len() {
            parents.insert(parts[..n].join("::"));
        }
    }
    parents
}

#[test]
fn no_crate_imports_its_own_modules_in_a_circle() {
    let root = workspace_root();
    let mut problems = Vec::new();
    for krate in CRATES {
        let tree = ModuleTree::read(&root.join(krate).join("src"));
        let edges = tree.imports();
        if let Some(circle) = find_circle(&edges) {
            let names: Vec<&str> = circle.iter().map(|m| display(m)).collect();
            problems.push(format!("{krate}: {}", names.join(" -> ")));
        }
        for parent in parents(&edges) {
            if let Some(circle) = find_circle(&folded(&edges, &parent)) {
                problems.push(format!(
                    "{krate}: among the modules of {}, each with what is below it: {}",
                    display(&parent),
                    circle.join(" -> ")
                ));
            }
        }
    }
    report(
        "import circles (move what both sides need into a module below both)",
        &problems,
    );
}

#[test]
fn only_the_command_line_modules_read_its_types() {
    // Parse, then act: `settings` turns the parsed command line into what the rest runs on.
    let tree = ModuleTree::read(&workspace_root().join("fwlog/src"));
    let allowed = |module: &str| {
        module.is_empty() || module == "settings" || module == "cmd" || module.starts_with("cmd::")
    };
    let problems: Vec<String> = tree
        .imports()
        .into_iter()
        .filter(|(module, targets)| targets.contains("args") && !allowed(module))
        .map(|(module, _)| {
            format!(
                "{}: uses `args`; take what it needs from `settings`",
                display(&module)
            )
        })
        .collect();
    report("modules past the command line that read `args`", &problems);
}

#[test]
fn the_circle_check_sees_circles() {
    let tree = |b: &str| {
        let sources = [
            ("", "mod a;\nmod b;\n"),
            ("a", "use crate::b::B;\npub struct A;\n"),
            ("b", b),
        ];
        ModuleTree::from_sources(
            sources
                .iter()
                .map(|(m, text)| (m.to_string(), text.to_string()))
                .collect(),
        )
    };
    let circle = tree("use super::{a::{self, A}, c as _};\npub struct B;\n");
    assert_eq!(
        find_circle(&circle.imports()),
        Some(vec!["a".to_string(), "b".to_string(), "a".to_string()])
    );
    let only_in_comments_and_tests =
        tree("pub struct B; // crate::a::A\n#[cfg(test)]\nmod tests {\n    use crate::a::A;\n}\n");
    assert_eq!(find_circle(&only_in_comments_and_tests.imports()), None);
    // No two files in a circle, but the folders a and b are: a::x uses b, b uses a::y.
    let folders = ModuleTree::from_sources(
        [
            ("", "mod a;\nmod b;\n"),
            ("a", "mod x;\nmod y;\n"),
            ("a::x", "use crate::b::B;\n"),
            ("a::y", "pub struct Y;\n"),
            ("b", "use crate::a::y::Y;\npub struct B;\n"),
        ]
        .iter()
        .map(|(m, text)| (m.to_string(), text.to_string()))
        .collect(),
    );
    let edges = folders.imports();
    assert_eq!(find_circle(&edges), None);
    assert_eq!(
        find_circle(&folded(&edges, "")),
        Some(vec!["a".to_string(), "b".to_string(), "a".to_string()])
    );
    assert_eq!(find_circle(&folded(&edges, "a")), None);
    assert_eq!(
        parents(&edges),
        BTreeSet::from([String::new(), "a".to_string()])
    );
}
