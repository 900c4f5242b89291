//! A throwaway Debian root extracted from the cached tarball, with a bpffs instance and a
//! cgroup of its own, and commands run inside it by systemd-nspawn.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::atomic::{AtomicU32, Ordering},
};

use anyhow::{Context as _, Result};
use fwlog_tests::NetNsGuard;

use crate::checked;

static NEXT_ID: AtomicU32 = AtomicU32::new(0);

pub struct Root {
    /// Holds `root/` (the tree) and `bpffs/` (the mount point of its bpffs instance).
    base: PathBuf,
    /// The cgroups its containers run in, one per hierarchy systemd uses here.
    cgroups: Vec<PathBuf>,
    bpffs_mounted: bool,
}

impl Root {
    /// Extracts the tarball into a new directory under /var/tmp and copies the package in
    /// (as /var/tmp/fwlog.deb inside).
    pub fn new() -> Result<Self> {
        fwlog_tests::require_root();
        let name = format!(
            "fwlog-pkgtest-{}-{}",
            std::process::id(),
            NEXT_ID.fetch_add(1, Ordering::Relaxed)
        );
        let base = Path::new("/var/tmp").join(&name);
        let mut root = Root {
            base: base.clone(),
            cgroups: Vec::new(),
            bpffs_mounted: false,
        };
        let tree = root.dir();
        fs::create_dir_all(&tree).with_context(|| format!("creating {}", tree.display()))?;
        checked(
            "extracting the Debian root",
            Command::new("tar")
                .arg("-C")
                .arg(&tree)
                .arg("-xf")
                .arg(crate::debian_root_tarball())
                .output()
                .context("running tar")?,
        )?;
        fs::copy(crate::deb_path(), root.path("/var/tmp/fwlog.deb"))
            .context("copying the package into the root")?;

        let bpffs = base.join("bpffs");
        fs::create_dir_all(&bpffs)?;
        checked(
            "mounting a bpffs instance for the container",
            Command::new("mount")
                .args(["-t", "bpf", "bpf"])
                .arg(&bpffs)
                .output()
                .context("running mount")?,
        )?;
        root.bpffs_mounted = true;

        for hierarchy in cgroup_hierarchies() {
            let cgroup = hierarchy.join(&name);
            fs::create_dir(&cgroup).with_context(|| format!("creating {}", cgroup.display()))?;
            root.cgroups.push(cgroup);
        }
        Ok(root)
    }

    /// The tree's top directory.
    pub fn dir(&self) -> PathBuf {
        self.base.join("root")
    }

    /// A path inside the root, seen from here.
    pub fn path(&self, inside: &str) -> PathBuf {
        self.dir().join(inside.trim_start_matches('/'))
    }

    /// What fwlog pinned in the container's bpffs (`fwlog/<netns>/<name>`).
    pub fn fwlog_pins(&self) -> Vec<String> {
        let mut pins = Vec::new();
        let top = self.base.join("bpffs/fwlog");
        for dir in fs::read_dir(&top).into_iter().flatten().flatten() {
            pins.push(dir.file_name().to_string_lossy().into_owned());
            for pin in fs::read_dir(dir.path()).into_iter().flatten().flatten() {
                pins.push(format!(
                    "{}/{}",
                    dir.file_name().to_string_lossy(),
                    pin.file_name().to_string_lossy()
                ));
            }
        }
        pins
    }

    /// systemd-nspawn on this root, in `netns`, with the container's own bpffs, started from
    /// the root's cgroups (so the container's cgroups go under them). Options follow.
    pub fn nspawn(&self, netns: &NetNsGuard) -> Command {
        // A shell moves itself into the cgroups, then becomes systemd-nspawn.
        let mut script = String::new();
        for cgroup in &self.cgroups {
            script.push_str(&format!(
                "echo $$ > '{}/cgroup.procs' && ",
                cgroup.display()
            ));
        }
        script.push_str("exec systemd-nspawn \"$@\"");
        let mut command = Command::new("/bin/sh");
        command
            .args(["-c", &script, "sh"])
            // No machined or system bus here: no registration, no scope unit.
            .args(["--register=no", "--keep-unit", "--quiet"])
            .arg("--directory")
            .arg(self.dir())
            .arg(format!(
                "--network-namespace-path={}",
                netns.path().display()
            ))
            .arg(format!(
                "--bind={}:/sys/fs/bpf",
                self.base.join("bpffs").display()
            ))
            .arg(format!("--machine={}", self.machine_name()))
            // A network namespace of our own does not bring CAP_NET_ADMIN (iptables, tc), and
            // nspawn's system call filter refuses bpf(): fwlog needs both.
            .args(["--capability=CAP_NET_ADMIN", "--system-call-filter=bpf"]);
        command
    }

    /// Runs `script` with /bin/sh inside the root (not booted) and returns its output.
    pub fn run(&self, netns: &NetNsGuard, script: &str) -> Result<Output> {
        self.nspawn(netns)
            .args(["--pipe", "/bin/sh", "-c", script])
            .stdin(Stdio::null())
            .output()
            .context("running systemd-nspawn (apt-get install systemd-container)")
    }

    /// [`Root::run`] that fails unless `script` succeeds; returns its stdout.
    pub fn run_ok(&self, netns: &NetNsGuard, script: &str) -> Result<String> {
        checked(
            &format!("`{script}` in the Debian root"),
            self.run(netns, script)?,
        )
    }

    pub fn machine_name(&self) -> String {
        self.base
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        let mut warnings = Vec::new();
        // Containers leave `payload`/`supervisor` (and their own cgroups) below ours.
        for cgroup in self.cgroups.drain(..) {
            if let Err(error) = remove_cgroup(&cgroup) {
                warnings.push(format!("cgroup {}: {error}", cgroup.display()));
            }
        }
        let bpffs = self.base.join("bpffs");
        if self.bpffs_mounted {
            match Command::new("umount").arg(&bpffs).output() {
                Ok(out) if out.status.success() => self.bpffs_mounted = false,
                other => warnings.push(format!("umount {}: {other:?}", bpffs.display())),
            }
        }
        // Never remove a tree that something may still be mounted on.
        if !self.bpffs_mounted {
            if let Err(error) = fs::remove_dir_all(&self.base) {
                warnings.push(format!("removing {}: {error}", self.base.display()));
            }
        }
        if !warnings.is_empty() && !std::thread::panicking() {
            eprintln!(
                "warning: cleaning up the Debian root: {}",
                warnings.join("; ")
            );
        }
    }
}

/// Where this machine's cgroup hierarchies that systemd uses are: the unified one alone, or
/// (hybrid layout) the unified one and systemd's named v1 hierarchy.
fn cgroup_hierarchies() -> Vec<PathBuf> {
    let unified = Path::new("/sys/fs/cgroup");
    if unified.join("cgroup.controllers").exists() {
        return vec![unified.to_path_buf()];
    }
    ["/sys/fs/cgroup/unified", "/sys/fs/cgroup/systemd"]
        .into_iter()
        .map(PathBuf::from)
        .filter(|path| path.join("cgroup.procs").exists())
        .collect()
}

/// Removes an empty cgroup tree, deepest first.
fn remove_cgroup(cgroup: &Path) -> std::io::Result<()> {
    for entry in fs::read_dir(cgroup)?.flatten() {
        if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
            remove_cgroup(&entry.path())?;
        }
    }
    fs::remove_dir(cgroup)
}
