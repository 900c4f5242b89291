//! The virtme-ng command line that boots a guest on a Debian kernel with the host's root
//! filesystem (copy-on-write: the guest cannot change the host's files), one shared directory,
//! no network device, and runs one command whose exit status vng passes back.

use std::{
    ffi::OsString,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result};

use super::accel::Accel;

/// One guest boot.
#[derive(Debug)]
pub struct Guest<'a> {
    /// `/boot/vmlinuz-<release>`.
    pub image: &'a Path,
    pub cpus: u32,
    /// qemu's `-m`: `2G`.
    pub memory: &'a str,
    pub accel: Accel,
    /// The one directory the guest can write into the host's files: plan, logs and report.
    pub shared_dir: &'a Path,
    /// The command the guest runs, as argv (quoted here for the guest's shell).
    pub command: Vec<OsString>,
}

impl Guest<'_> {
    /// vng's arguments. There is no `--network`, so the guest has a loopback device only: it
    /// never reaches the host's network, and its tests make their own namespaces.
    pub fn vng_args(&self) -> Result<Vec<OsString>> {
        let mut args: Vec<OsString> = Vec::new();
        if self.accel == Accel::Tcg {
            args.push("--disable-kvm".into());
        }
        args.push("--run".into());
        args.push(self.image.into());
        args.push("--user".into());
        args.push("root".into());
        args.push("--cpus".into());
        args.push(self.cpus.to_string().into());
        args.push("--memory".into());
        args.push(self.memory.into());
        let mut rwdir = OsString::from("--rwdir=");
        rwdir.push(self.shared_dir);
        args.push(rwdir);
        args.push("--exec".into());
        args.push(shell_command(&self.command)?.into());
        Ok(args)
    }
}

/// argv as one shell command line: vng hands `--exec` to the guest's shell.
fn shell_command(argv: &[OsString]) -> Result<String> {
    let words: Vec<&str> = argv
        .iter()
        .map(|word| {
            word.to_str().with_context(|| {
                format!(
                    "{} is not UTF-8 and cannot go into the guest's command line",
                    PathBuf::from(word).display()
                )
            })
        })
        .collect::<Result<_>>()?;
    shlex::try_join(words).context("a word of the guest's command line has a NUL byte")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guest(accel: Accel) -> Guest<'static> {
        Guest {
            image: Path::new("/boot/vmlinuz-6.1.0-57-amd64"),
            cpus: 2,
            memory: "2G",
            accel,
            shared_dir: Path::new("/w/target/kernel-matrix/6.1"),
            command: vec![
                "/w/target/debug/xtask".into(),
                "kernel-guest".into(),
                "/w/target/kernel-matrix/6.1/plan.json".into(),
            ],
        }
    }

    fn strings(args: Vec<OsString>) -> Vec<String> {
        args.into_iter()
            .map(|arg| arg.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn software_emulation_boots_the_image_with_the_shared_directory_and_no_network() {
        let args = guest(Accel::Tcg).vng_args().map(strings).ok();
        assert_eq!(
            args,
            Some(
                [
                    "--disable-kvm",
                    "--run",
                    "/boot/vmlinuz-6.1.0-57-amd64",
                    "--user",
                    "root",
                    "--cpus",
                    "2",
                    "--memory",
                    "2G",
                    "--rwdir=/w/target/kernel-matrix/6.1",
                    "--exec",
                    "/w/target/debug/xtask kernel-guest /w/target/kernel-matrix/6.1/plan.json",
                ]
                .map(String::from)
                .to_vec()
            )
        );
    }

    #[test]
    fn kvm_drops_disable_kvm_only() {
        let tcg = guest(Accel::Tcg)
            .vng_args()
            .map(strings)
            .unwrap_or_default();
        let kvm = guest(Accel::Kvm)
            .vng_args()
            .map(strings)
            .unwrap_or_default();
        assert_eq!(&tcg[1..], &kvm[..]);
        assert!(!kvm.iter().any(|arg| arg.contains("network")));
    }

    #[test]
    fn words_with_spaces_and_quotes_reach_the_guest_whole() {
        let command = shell_command(&["/a b/xtask".into(), "it's".into()]).ok();
        assert_eq!(command.as_deref(), Some("'/a b/xtask' \"it's\""));
    }
}
