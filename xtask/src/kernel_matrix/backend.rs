//! iptables backends (nf_tables, legacy) and how a guest selects one: a directory of symlinks to
//! the backend's multi-call binary, put first on PATH. Nothing system-wide changes (no
//! update-alternatives), so the same code is harmless on any machine.

use std::{
    fmt, fs,
    os::unix::fs::symlink,
    path::{Path, PathBuf},
};

use anyhow::{bail, Context as _, Result};
use serde::{Deserialize, Serialize};

/// The programs fwlog and its tests run through PATH, all served by one xtables multi-call binary.
const IPTABLES_PROGRAMS: [&str; 6] = [
    "iptables",
    "ip6tables",
    "iptables-save",
    "iptables-restore",
    "ip6tables-save",
    "ip6tables-restore",
];

/// Where Debian's iptables package puts its multi-call binaries.
const SBIN: &str = "/usr/sbin";

/// An iptables backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// iptables-nft: rules go into nf_tables through nft_compat (Debian 12's default).
    Nft,
    /// iptables-legacy: the x_tables interface.
    Legacy,
}

/// `--backend`: one backend or both.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendChoice {
    /// iptables-nft only.
    Nft,
    /// iptables-legacy only.
    Legacy,
    /// nft, then legacy, in the same guest.
    Both,
}

impl BackendChoice {
    pub fn backends(self) -> Vec<Backend> {
        match self {
            BackendChoice::Nft => vec![Backend::Nft],
            BackendChoice::Legacy => vec![Backend::Legacy],
            BackendChoice::Both => vec![Backend::Nft, Backend::Legacy],
        }
    }
}

impl Backend {
    /// The multi-call binary behind every iptables program of this backend.
    fn multi_call_binary(self) -> &'static str {
        match self {
            Backend::Nft => "xtables-nft-multi",
            Backend::Legacy => "xtables-legacy-multi",
        }
    }

    /// What `iptables -V` says in parentheses for this backend: `iptables v1.8.9 (nf_tables)`.
    pub fn version_tag(self) -> &'static str {
        match self {
            Backend::Nft => "(nf_tables)",
            Backend::Legacy => "(legacy)",
        }
    }

    /// Makes `dir` a directory of symlinks `iptables`, `ip6tables-restore`, … to this backend's
    /// binary; put it first on PATH. `dir` is created, and emptied of a previous backend's links.
    pub fn link_programs(self, dir: &Path) -> Result<()> {
        let target = PathBuf::from(SBIN).join(self.multi_call_binary());
        if !target.is_file() {
            bail!(
                "{} is missing: install Debian's iptables package (it ships both backends)",
                target.display()
            );
        }
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        for program in IPTABLES_PROGRAMS {
            let link = dir.join(program);
            match fs::remove_file(&link) {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => {
                    return Err(error).with_context(|| format!("removing {}", link.display()))
                }
            }
            symlink(&target, &link)
                .with_context(|| format!("linking {} to {}", link.display(), target.display()))?;
        }
        Ok(())
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Nft => "nft",
            Backend::Legacy => "legacy",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_runs_nft_first_then_legacy() {
        assert_eq!(
            BackendChoice::Both.backends(),
            [Backend::Nft, Backend::Legacy]
        );
        assert_eq!(BackendChoice::Legacy.backends(), [Backend::Legacy]);
    }

    #[test]
    fn backends_serialise_as_their_command_line_names() {
        assert_eq!(
            serde_json::to_string(&Backend::Legacy).ok().as_deref(),
            Some("\"legacy\"")
        );
        assert_eq!(Backend::Nft.to_string(), "nft");
    }
}
