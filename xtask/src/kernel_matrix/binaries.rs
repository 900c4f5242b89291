//! The kernel test binaries, built on the host: `cargo test --no-run` with JSON messages names
//! each executable; they, fwlog and xtask are copied aside for the guests, which read the host's
//! files, so a build during a long matrix run cannot change what a guest runs.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Stdio,
};

use anyhow::{bail, Context as _, Result};
use serde_json::Value;

use super::plan::TestBinary;
use crate::cmd;

/// The package holding the kernel tests (tests/).
const TESTS_PACKAGE: &str = "fwlog-tests";

/// Builds the workspace's tests as `cargo xtask test` does (the same packages, so the same
/// features and nothing rebuilt after it) and returns fwlog-tests' `[[test]]` binaries, by name.
pub fn build() -> Result<Vec<TestBinary>> {
    let mut cargo = cmd::cargo();
    cargo
        .args(["test", "--workspace", "--exclude", "fwlog-ebpf", "--no-run"])
        .args(["--exclude", "fwlog-package-tests"])
        // Diagnostics rendered on stderr as usual; stdout carries one JSON message per line.
        .arg("--message-format=json-render-diagnostics")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let output = cargo
        .output()
        .with_context(|| format!("could not start `{}`", cmd::describe(&cargo)))?;
    if !output.status.success() {
        bail!(
            "building the kernel tests failed ({}): see cargo's errors above",
            output.status
        );
    }
    let messages = String::from_utf8_lossy(&output.stdout);
    let binaries = test_binaries(&messages)?;
    if binaries.is_empty() {
        bail!("`{}` built no test binary", cmd::describe(&cargo));
    }
    Ok(binaries)
}

/// The programs a guest runs, copied into a directory of their own.
pub struct Frozen {
    pub binaries: Vec<TestBinary>,
    pub fwlog: PathBuf,
    pub xtask: PathBuf,
}

/// Copies the test binaries, fwlog and xtask into `dir` (emptied first).
pub fn freeze(binaries: &[TestBinary], fwlog: &Path, xtask: &Path, dir: &Path) -> Result<Frozen> {
    if dir.exists() {
        fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let copy = |from: &Path, name: &str| -> Result<PathBuf> {
        let to = dir.join(name);
        fs::copy(from, &to)
            .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
        Ok(to)
    };
    let mut frozen = Vec::new();
    for binary in binaries {
        frozen.push(TestBinary {
            name: binary.name.clone(),
            path: copy(&binary.path, &format!("test-{}", binary.name))?,
        });
    }
    Ok(Frozen {
        binaries: frozen,
        fwlog: copy(fwlog, "fwlog")?,
        xtask: copy(xtask, "xtask")?,
    })
}

/// fwlog-tests' `[[test]]` executables among cargo's JSON messages (not its library's unit-test
/// binary, nor other packages' tests).
fn test_binaries(messages: &str) -> Result<Vec<TestBinary>> {
    let mut binaries = Vec::new();
    for line in messages.lines().filter(|line| line.starts_with('{')) {
        let message: Value = serde_json::from_str(line)
            .with_context(|| format!("cargo printed a message that is not JSON: {line}"))?;
        if message["reason"] != "compiler-artifact" || message["profile"]["test"] != true {
            continue;
        }
        let in_tests_package =
            message["package_id"].as_str().and_then(package_name) == Some(TESTS_PACKAGE);
        let is_test_target = message["target"]["kind"]
            .as_array()
            .is_some_and(|kinds| kinds.iter().any(|kind| kind == "test"));
        let (Some(name), Some(path)) = (
            message["target"]["name"].as_str(),
            message["executable"].as_str(),
        ) else {
            continue;
        };
        if in_tests_package && is_test_target {
            binaries.push(TestBinary {
                name: name.to_owned(),
                path: path.into(),
            });
        }
    }
    binaries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(binaries)
}

/// The package name in a cargo package id: `path+file:///w/tests#fwlog-tests@0.1.0` names it
/// after `#`, `path+file:///w/fwlog#0.1.0` by its directory (cargo leaves the name out when they agree).
fn package_name(id: &str) -> Option<&str> {
    let (url, fragment) = id.rsplit_once('#')?;
    match fragment.split_once('@') {
        Some((name, _version)) => Some(name),
        None => url.rsplit('/').next(),
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn only_test_targets_executables_are_taken() {
        // Abridged from `cargo test -p fwlog-tests --tests --no-run --message-format=json`.
        let messages = r#"{"reason":"compiler-artifact","package_id":"path+file:///w/tests#fwlog-tests@0.1.0","target":{"kind":["lib"],"crate_types":["lib"],"name":"fwlog_tests","src_path":"/w/tests/src/lib.rs","test":true},"profile":{"test":false},"executable":null,"fresh":true}
{"reason":"compiler-artifact","package_id":"path+file:///w/tests#fwlog-tests@0.1.0","target":{"kind":["lib"],"name":"fwlog_tests"},"profile":{"test":true},"executable":"/w/target/debug/deps/fwlog_tests-1111","fresh":true}
{"reason":"compiler-artifact","package_id":"path+file:///w/tests#fwlog-tests@0.1.0","target":{"kind":["test"],"name":"watch"},"profile":{"test":true},"executable":"/w/target/debug/deps/watch-2222","fresh":false}
{"reason":"compiler-artifact","package_id":"path+file:///w/xtask#0.1.0","target":{"kind":["bin"],"name":"xtask"},"profile":{"test":true},"executable":"/w/target/debug/deps/xtask-4444","fresh":true}
{"reason":"compiler-artifact","package_id":"path+file:///w/fwlog#0.1.0","target":{"kind":["test"],"name":"golden"},"profile":{"test":true},"executable":"/w/target/debug/deps/golden-5555","fresh":true}
{"reason":"compiler-artifact","package_id":"path+file:///w/tests#fwlog-tests@0.1.0","target":{"kind":["test"],"name":"flows"},"profile":{"test":true},"executable":"/w/target/debug/deps/flows-3333","fresh":true}
{"reason":"build-script-executed","package_id":"x"}
{"reason":"build-finished","success":true}
"#;
        let binaries = test_binaries(messages).ok();
        assert_eq!(
            binaries,
            Some(vec![
                TestBinary {
                    name: "flows".into(),
                    path: PathBuf::from("/w/target/debug/deps/flows-3333"),
                },
                TestBinary {
                    name: "watch".into(),
                    path: PathBuf::from("/w/target/debug/deps/watch-2222"),
                },
            ])
        );
    }

    #[test]
    fn package_names_come_from_the_fragment_or_the_directory() {
        assert_eq!(
            package_name("path+file:///w/tests#fwlog-tests@0.1.0"),
            Some("fwlog-tests")
        );
        assert_eq!(
            package_name("path+file:///w/fwlog-tests#0.1.0"),
            Some("fwlog-tests")
        );
        assert_eq!(
            package_name("registry+https://github.com/rust-lang/crates.io-index#serde@1.0.229"),
            Some("serde")
        );
        assert_eq!(package_name("no fragment"), None);
    }

    #[test]
    fn a_line_that_is_not_json_is_an_error() {
        assert!(test_binaries("{not json\n").is_err());
    }
}
