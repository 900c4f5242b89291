//! Repository policy checks as plain `#[test]`s, in the spirit of rust-analyzer's
//! `xtask/src/tidy.rs`: every module says what it is for, every `unsafe` says why it is sound,
//! no source file passes 600 lines, no crate's modules import each other in a circle, and only
//! the command line's own modules read its types. (That the names the user side looks up exist
//! in the eBPF object is checked in fwlog itself, which embeds the object:
//! `fwlog/src/ebpf_object_names.rs`.)

use std::{
    fs,
    path::{Path, PathBuf},
};

use crate::cmd::workspace_root;

mod imports;

/// The crates whose sources are checked.
const CRATES: [&str; 7] = [
    "fwlog",
    "fwlog-common",
    "fwlog-ebpf",
    "xtask",
    "tests",
    "packaging/tests",
    "netns-guard",
];
const MAX_LINES: usize = 600;

/// Every `.rs` file below `dir`, skipping build output.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                if path.file_name().is_some_and(|name| name != "target") {
                    pending.push(path);
                }
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

fn workspace_files() -> Vec<(PathBuf, String)> {
    let root = workspace_root();
    CRATES
        .iter()
        .flat_map(|krate| rust_files(&root.join(krate)))
        .map(|path| {
            let text =
                fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let relative = path.strip_prefix(root).unwrap_or(&path).to_path_buf();
            (relative, text)
        })
        .collect()
}

/// Fails with every problem found, one per line, rather than the first.
fn report(what: &str, problems: &[String]) {
    assert!(problems.is_empty(), "{what}:\n  {}", problems.join("\n  "));
}

#[test]
fn every_module_opens_with_a_doc_line() {
    let problems: Vec<String> = workspace_files()
        .into_iter()
        .filter(|(_, text)| !text.starts_with("//!"))
        .map(|(path, _)| {
            format!(
                "{}: add a `//!` line saying what the module does",
                path.display()
            )
        })
        .collect();
    report("modules without a `//!` first line", &problems);
}

#[test]
fn every_file_stays_under_the_line_limit() {
    let problems: Vec<String> = workspace_files()
        .into_iter()
        .filter_map(|(path, text)| {
            let lines = text.lines().count();
            (lines > MAX_LINES).then(|| {
                format!(
                    "{}: {lines} lines; split it (limit {MAX_LINES})",
                    path.display()
                )
            })
        })
        .collect();
    report("files over the line limit", &problems);
}

#[test]
fn every_unsafe_has_a_safety_comment() {
    let mut problems = Vec::new();
    for (path, text) in workspace_files() {
        let lines: Vec<&str> = text.lines().collect();
        for (index, line) in lines.iter().enumerate() {
            if has_unsafe_code(line) && !safety_comment_before(&lines, index) {
                problems.push(format!("{}:{}: {}", path.display(), index + 1, line.trim()));
            }
        }
    }
    report(
        "`unsafe` without a `// SAFETY:` comment on it or just above its statement",
        &problems,
    );
}

/// `unsafe` as a keyword in the code part of `line` (not in a comment or a string).
fn has_unsafe_code(line: &str) -> bool {
    let code = strip_line(line);
    code.match_indices("unsafe").any(|(at, word)| {
        let before = code[..at].chars().next_back();
        let after = code[at + word.len()..].chars().next();
        let is_word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
        !is_word(before) && !is_word(after)
    })
}

/// The comment on the `unsafe` line, or one in the comments and attributes above its statement
/// or the block it opens (lines above that do not end a statement belong with it).
///
/// An `unsafe fn` instead needs a `# Safety` section in its doc comment (its callers' duty).
fn safety_comment_before(lines: &[&str], index: usize) -> bool {
    let reason = if strip_line(lines[index]).contains("unsafe fn") {
        "# Safety"
    } else {
        "SAFETY:"
    };
    if lines[index].contains(reason) {
        return true;
    }
    for line in lines[..index].iter().rev().take(12) {
        let line = line.trim();
        if line.starts_with("//") {
            if line.contains(reason) {
                return true;
            }
        } else if line.starts_with("#[") {
            continue;
        } else if line.is_empty() || line.ends_with(['}', ';']) {
            // The statement before: the comment above it is not about this one.
            return false;
        }
    }
    false
}

/// `line` without its `//` comment and with string and char literals emptied (good enough for
/// one line of ordinary code: raw strings spanning lines are not used where this matters).
fn strip_line(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '/' if chars.peek() == Some(&'/') => break,
            '"' => {
                out.push('"');
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            chars.next();
                        }
                        '"' => break,
                        _ => {}
                    }
                }
                out.push('"');
            }
            _ => out.push(c),
        }
    }
    out
}

#[test]
fn unsafe_without_a_reason_is_found() {
    let code = ["fn f() {", "    let x = unsafe { g() };", "}"];
    assert!(has_unsafe_code(code[1]));
    assert!(!safety_comment_before(&code, 1));
    let commented = [
        "fn f() {",
        "    // SAFETY: g has no preconditions.",
        "    let x = unsafe { g() };",
    ];
    assert!(safety_comment_before(&commented, 2));
    assert!(!has_unsafe_code("    // unsafe { here }"));
    assert!(!has_unsafe_code("    let s = \"unsafe { x }\";"));
    assert!(!has_unsafe_code("#![deny(unsafe_code)]"));
    let undocumented = ["/// Adds.", "pub unsafe fn add(p: *mut u64) {"];
    assert!(!safety_comment_before(&undocumented, 1));
    let documented = [
        "/// # Safety",
        "/// `p` is live.",
        "pub unsafe fn add(p: *mut u64) {",
    ];
    assert!(safety_comment_before(&documented, 2));
}
