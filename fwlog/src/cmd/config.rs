//! `fwlog config check`: load the configuration file and print what is in effect.

use std::{
    io::{self, Write},
    path::Path,
};

use anyhow::{Context as _, Result};

use crate::config::{self, ConfigError, DEFAULT_PATH};

/// Loads `path` (default: /etc/fwlog/fwlog.toml) and prints the effective configuration; a
/// bad file is an error of one line, `PATH:LINE:COLUMN: reason`.
pub fn check(path: Option<&Path>) -> Result<()> {
    let stdout = io::stdout();
    let mut stdout = stdout.lock();
    check_into(path, &mut stdout, &mut io::stderr())
}

fn check_into(path: Option<&Path>, out: &mut dyn Write, notes: &mut dyn Write) -> Result<()> {
    let config = match path {
        Some(path) => config::load(path)?,
        None => match config::load(Path::new(DEFAULT_PATH)) {
            Err(ConfigError::NotFound { .. }) => {
                writeln!(
                    notes,
                    "fwlog: no {DEFAULT_PATH}: the built-in defaults are in effect"
                )?;
                config::Config::default()
            }
            result => result?,
        },
    };
    out.write_all(config.render().as_bytes())
        .and_then(|()| out.flush())
        .context("cannot print the configuration")
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn temp_file(name: &str, text: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!("fwlog-check-{}-{name}", std::process::id()));
        std::fs::write(&path, text).expect("write the test file");
        path
    }

    #[test]
    fn prints_the_effective_configuration() {
        let path = temp_file(
            "good.toml",
            "interfaces = [\"demo0\"]\n[maps]\nring_size = 65536\n",
        );
        let (mut out, mut notes) = (Vec::new(), Vec::new());
        let result = check_into(Some(&path), &mut out, &mut notes);
        let _ = std::fs::remove_file(&path);
        result.expect("a good file passes");
        let out = String::from_utf8(out).expect("UTF-8");
        assert!(out.contains("interfaces = [\"demo0\"]\n"), "{out}");
        assert!(out.contains("inbound = \"drop\"\n"), "{out}");
        assert!(out.contains("ring_size = \"64K\"\n"), "{out}");
        assert!(
            out.contains("# file: none given, lines go to stdout\n"),
            "{out}"
        );
        assert!(notes.is_empty());
    }

    #[test]
    fn a_bad_file_is_one_line() {
        let path = temp_file(
            "bad.toml",
            "outbound = \"accept\"\n\n[output]\nformat = \"xml\"\n",
        );
        let (mut out, mut notes) = (Vec::new(), Vec::new());
        let error = check_into(Some(&path), &mut out, &mut notes).expect_err("xml is no format");
        let _ = std::fs::remove_file(&path);
        let message = format!("{error:#}");
        assert_eq!(
            message,
            format!(
                "{}:4:10: unknown variant \"xml\", expected one of \"json\", \"text\", \"ecs\"",
                path.display()
            )
        );
        assert!(out.is_empty());
    }

    #[test]
    fn an_explicit_missing_file_is_an_error() {
        let path = std::env::temp_dir().join(format!("fwlog-check-{}-absent", std::process::id()));
        let error = check_into(Some(&path), &mut Vec::new(), &mut Vec::new())
            .expect_err("a named file must exist");
        assert!(format!("{error:#}").contains("no such configuration file"));
    }
}
