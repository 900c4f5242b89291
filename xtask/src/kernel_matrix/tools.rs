//! What booting a guest needs on the host: qemu and a static busybox (apt), and virtme-ng (PyPI,
//! pinned, in a virtual environment of its own under the target directory, so neither the system's
//! Python nor the user's is changed).

use std::{
    env,
    ffi::OsString,
    path::{Path, PathBuf},
};

use anyhow::{bail, Context as _, Result};

use super::apt;
use crate::cmd;

/// The virtme-ng release the matrix was measured with (its `vng --exec` passes the exit status back).
pub const VIRTME_NG_VERSION: &str = "1.42";

/// Debian packages: qemu for the guest, busybox-static for virtme-ng's initramfs.
const PACKAGES: [&str; 2] = ["qemu-system-x86", "busybox-static"];

/// The host side of the matrix, ready to boot guests.
pub struct Tools {
    /// virtme-ng's `vng`.
    pub vng: PathBuf,
    /// PATH for `vng`: the virtual environment's bin first (vng runs `virtme-run` through PATH).
    pub path: OsString,
}

/// Installs what is missing; cheap when everything is there.
pub fn prepare(target_dir: &Path) -> Result<Tools> {
    apt::install_missing(&PACKAGES)?;
    let venv = target_dir
        .join("kernel-matrix")
        .join(format!("virtme-ng-{VIRTME_NG_VERSION}"));
    let bin = venv.join("bin");
    let vng = bin.join("vng");
    let path = path_with(&bin)?;
    if !has_virtme_ng(&vng, &path) {
        install_virtme_ng(&venv)?;
        if !has_virtme_ng(&vng, &path) {
            bail!(
                "virtme-ng {VIRTME_NG_VERSION} was installed in {} but `{} --version` does not say so",
                venv.display(),
                vng.display()
            );
        }
    }
    Ok(Tools { vng, path })
}

fn path_with(bin: &Path) -> Result<OsString> {
    let path = env::var_os("PATH").unwrap_or_default();
    env::join_paths(std::iter::once(bin.to_path_buf()).chain(env::split_paths(&path)))
        .with_context(|| format!("{} cannot go into PATH (it has a ':')", bin.display()))
}

fn has_virtme_ng(vng: &Path, path: &OsString) -> bool {
    let mut version = cmd::tool(&vng.to_string_lossy());
    version.arg("--version").env("PATH", path);
    cmd::output(&mut version).is_ok_and(|said| {
        said.split_whitespace()
            .any(|word| word == VIRTME_NG_VERSION)
    })
}

fn install_virtme_ng(venv: &Path) -> Result<()> {
    let python = python_with_venv()?;
    let mut create = cmd::tool(&python);
    create.args(["-m", "venv", "--clear"]).arg(venv);
    println!(
        "installing virtme-ng {VIRTME_NG_VERSION} in its own Python environment: {}",
        cmd::describe(&create)
    );
    cmd::run(&mut create).with_context(|| {
        format!(
            "creating a Python virtual environment in {} failed",
            venv.display()
        )
    })?;
    let mut pip = cmd::tool(&venv.join("bin").join("pip").to_string_lossy());
    pip.args(["install", "--disable-pip-version-check", "--quiet"])
        .arg(format!("virtme-ng=={VIRTME_NG_VERSION}"));
    println!("{}", cmd::describe(&pip));
    cmd::run(&mut pip).with_context(|| {
        format!("installing virtme-ng {VIRTME_NG_VERSION} from PyPI failed; see pip's errors above")
    })
}

/// A Python 3 that can make virtual environments: the one on PATH, else Debian's (with
/// python3-venv installed for it when missing).
fn python_with_venv() -> Result<String> {
    let can_make_venvs = |python: &str| {
        cmd::output(cmd::tool(python).args(["-c", "import venv, ensurepip"])).is_ok()
    };
    for python in ["python3", "/usr/bin/python3"] {
        if can_make_venvs(python) {
            return Ok(python.to_owned());
        }
    }
    apt::install_missing(&["python3-venv"])?;
    if can_make_venvs("/usr/bin/python3") {
        return Ok("/usr/bin/python3".to_owned());
    }
    bail!("no Python 3 with venv and ensurepip here, even after installing python3-venv")
}
