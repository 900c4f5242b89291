//! Setup: check for, and put in place, nightly rust-src, bpf-linker, system tools and bpffs.

use std::{
    env,
    fmt::Display,
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _, Result};
use nix::{
    mount::{mount, MsFlags},
    sys::statfs::{statfs, BPF_FS_MAGIC},
    unistd::geteuid,
};

use crate::cmd;

/// The bpf-linker release known to work with nightly's LLVM here (see ../shared/KERNEL-NOTES.md).
const BPF_LINKER_VERSION: &str = "0.13.0";

/// Where aya pins programs and maps, and where iptables' `-m bpf --object-pinned` looks.
const BPFFS: &str = "/sys/fs/bpf";

/// How much a setup run prints.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Report {
    /// One line per step, "ok: ..." included: what `cargo xtask setup` prints.
    Everything,
    /// Only what was changed and what needs the user: for tasks that run setup before their own work.
    ChangesOnly,
}

impl Report {
    fn ok(self, what: impl Display) {
        if self == Report::Everything {
            println!("ok: {what}");
        }
    }
}

/// A system package, by its name in each package manager we give advice for.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Package {
    apt: &'static str,
    dnf: &'static str,
    pacman: &'static str,
}

const IPTABLES: Package = Package {
    apt: "iptables",
    dnf: "iptables",
    pacman: "iptables",
};
const IPROUTE2: Package = Package {
    apt: "iproute2",
    dnf: "iproute",
    pacman: "iproute2",
};
const UTIL_LINUX: Package = Package {
    apt: "util-linux",
    dnf: "util-linux",
    pacman: "util-linux",
};
const IPUTILS_PING: Package = Package {
    apt: "iputils-ping",
    dnf: "iputils",
    pacman: "iputils",
};
const BPFTOOL: Package = Package {
    apt: "bpftool",
    dnf: "bpftool",
    pacman: "bpf",
};
const RSYSLOG: Package = Package {
    apt: "rsyslog",
    dnf: "rsyslog",
    pacman: "rsyslog",
};
const RSYSLOG_RELP: Package = Package {
    apt: "rsyslog-relp",
    dnf: "rsyslog-relp",
    pacman: "rsyslog",
};
const IPERF3: Package = Package {
    apt: "iperf3",
    dnf: "iperf3",
    pacman: "iperf3",
};

const PROMETHEUS: Package = Package {
    apt: "prometheus",
    dnf: "golang-github-prometheus",
    pacman: "prometheus",
};
const NFDUMP: Package = Package {
    apt: "nfdump",
    dnf: "nfdump",
    pacman: "nfdump",
};
const LIBFIXBUF_TOOLS: Package = Package {
    apt: "libfixbuf-tools",
    dnf: "libfixbuf",
    pacman: "libfixbuf",
};

const SCAPY: Package = Package {
    apt: "python3-scapy",
    dnf: "python3-scapy",
    pacman: "scapy",
};

/// The programs fwlog, its kernel tests and its bench run, and the package that ships each.
const SYSTEM_TOOLS: [(&str, Package); 18] = [
    ("iptables", IPTABLES),
    ("ip6tables", IPTABLES),
    ("iptables-save", IPTABLES),
    ("iptables-restore", IPTABLES),
    ("ip6tables-save", IPTABLES),
    ("ip6tables-restore", IPTABLES),
    ("ip", IPROUTE2),
    ("nsenter", UTIL_LINUX),
    ("ping", IPUTILS_PING),
    // The kernel tests check that fwlog's tc links are gone after it exits.
    ("bpftool", BPFTOOL),
    // tests/shipping.rs ships fwlog's lines with rsyslog instances of its own.
    ("rsyslogd", RSYSLOG),
    // `cargo xtask bench --established` measures bulk TCP with it.
    ("iperf3", IPERF3),
    // The metrics tests: promtool checks /metrics, a Prometheus server scrapes it. (Where
    // systemd runs, Debian's package also starts its own prometheus.service on :9090; the
    // tests run theirs in a namespace and do not use it.)
    ("promtool", PROMETHEUS),
    ("prometheus", PROMETHEUS),
    // The IPFIX tests: nfdump's collector and reader, and libfixbuf's decoder.
    ("nfcapd", NFDUMP),
    ("nfdump", NFDUMP),
    ("ipfixDump", LIBFIXBUF_TOOLS),
    // The hostile-traffic tests build raw frames with scapy (its launcher names the Python
    // that has it).
    ("scapy", SCAPY),
];

/// rsyslog's RELP modules (no program of their own), under `/usr/lib/<multiarch>/rsyslog/`.
const RSYSLOG_MODULES: [(&str, Package); 2] =
    [("omrelp.so", RSYSLOG_RELP), ("imrelp.so", RSYSLOG_RELP)];

/// Directories searched for system tools besides PATH: they live in sbin, which a user's PATH may lack.
const SBIN_DIRS: [&str; 2] = ["/usr/sbin", "/sbin"];

/// `cargo xtask setup`: every step, reported line by line.
pub fn run() -> Result<()> {
    prepare(Report::Everything)
}

/// Runs every setup step; each one is idempotent and cheap when there is nothing to do.
pub fn prepare(report: Report) -> Result<()> {
    nightly_rust_src(report)?;
    bpf_linker(report)?;
    system_tools(report)?;
    bpffs(report)
}

fn is_root() -> bool {
    geteuid().is_root()
}

/// The eBPF crate is built with `-Z build-std=core`, which needs nightly's rust-src.
fn nightly_rust_src(report: Report) -> Result<()> {
    let toolchains = cmd::output(cmd::tool("rustup").args(["toolchain", "list"]))
        .context("cannot list rustup toolchains; install rustup (https://rustup.rs) and rerun `cargo xtask setup`")?;
    if !toolchains.lines().any(is_nightly_channel) {
        let mut install = cmd::tool("rustup");
        install.args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
            "--component",
            "rust-src",
        ]);
        println!(
            "installing the nightly toolchain with rust-src: {}",
            cmd::describe(&install)
        );
        return cmd::run(&mut install).context(
            "installing nightly failed; check access to static.rust-lang.org and rerun `cargo xtask setup`",
        );
    }

    let components = cmd::output(cmd::tool("rustup").args([
        "component",
        "list",
        "--toolchain",
        "nightly",
        "--installed",
    ]))
    .context("cannot list nightly's components; rerun `cargo xtask setup` after `rustup toolchain install nightly`")?;
    if components
        .lines()
        .any(|line| line.split_whitespace().next() == Some("rust-src"))
    {
        report.ok("nightly toolchain with rust-src");
        return Ok(());
    }
    let mut add = cmd::tool("rustup");
    add.args(["component", "add", "rust-src", "--toolchain", "nightly"]);
    println!(
        "adding rust-src to the nightly toolchain: {}",
        cmd::describe(&add)
    );
    cmd::run(&mut add).context(
        "adding rust-src failed; check access to static.rust-lang.org and rerun `cargo xtask setup`",
    )
}

/// A `rustup toolchain list` line for the `nightly` channel itself: `nightly-<host>`, not a dated
/// `nightly-2025-01-01-<host>`, which `+nightly` would not select.
fn is_nightly_channel(line: &str) -> bool {
    let name = line.split_whitespace().next().unwrap_or_default();
    name == "nightly"
        || name
            .strip_prefix("nightly-")
            .is_some_and(|rest| !rest.starts_with(|c: char| c.is_ascii_digit()))
}

/// aya-build links the eBPF crate with bpf-linker, found through PATH.
fn bpf_linker(report: Report) -> Result<()> {
    let reason = match installed_bpf_linker() {
        Ok(path) => {
            let on_user_path = which::which("bpf-linker").is_ok_and(|found| found == path);
            let hint = if on_user_path {
                ""
            } else {
                "; not on your PATH, xtask adds its directory for cargo"
            };
            report.ok(format_args!(
                "bpf-linker {BPF_LINKER_VERSION} ({}{hint})",
                path.display()
            ));
            return Ok(());
        }
        Err(reason) => reason,
    };
    install_bpf_linker(&reason)?;
    installed_bpf_linker().map(drop).map_err(|reason| {
        anyhow::anyhow!(
            "bpf-linker {BPF_LINKER_VERSION} was installed, yet {reason}; \
             check `cargo install --list` and that nothing earlier on PATH shadows it"
        )
    })
}

/// The bpf-linker that cargo commands will find, if it is the expected version; else why not.
fn installed_bpf_linker() -> std::result::Result<PathBuf, String> {
    let path = which::which_in(
        "bpf-linker",
        Some(cmd::cargo_env_path()),
        cmd::workspace_root(),
    )
    .map_err(|_| "bpf-linker is not on PATH nor in cargo's bin directory".to_owned())?;
    let version = cmd::output(Command::new(&path).arg("--version"))
        .map_err(|error| format!("{} does not run ({error:#})", path.display()))?;
    if version
        .split_whitespace()
        .any(|word| word == BPF_LINKER_VERSION)
    {
        Ok(path)
    } else {
        Err(format!("{} is `{}`", path.display(), version.trim()))
    }
}

/// Builds bpf-linker against nightly's own libLLVM, so no system LLVM is needed
/// (the recipe in ../shared/KERNEL-NOTES.md).
fn install_bpf_linker(reason: &str) -> Result<()> {
    let sysroot = cmd::output(cmd::tool("rustc").args(["+nightly", "--print", "sysroot"]))
        .context(
        "cannot find nightly's sysroot; run `cargo xtask setup` again once nightly is installed",
    )?;
    let lib_dir = Path::new(sysroot.trim()).join("lib");
    let version = cmd::output(cmd::tool("rustc").args(["+nightly", "-vV"]))
        .context("cannot ask nightly rustc for its LLVM version")?;
    let llvm_major = llvm_major(&version)?;
    let libllvm = libllvm_name(&lib_dir)?;
    let Some(lib_dir) = lib_dir
        .to_str()
        .filter(|dir| !dir.contains(char::is_whitespace))
    else {
        bail!(
            "nightly's library directory {} cannot go into RUSTFLAGS (not UTF-8 or has spaces); \
             move RUSTUP_HOME to a plain path and rerun `cargo xtask setup`",
            lib_dir.display()
        );
    };
    let rustflags = format!("-L {lib_dir} -l dylib={libllvm} -C link-arg=-Wl,-rpath,{lib_dir}");

    let mut install = cmd::tool("cargo");
    install
        .args(["install", "bpf-linker", "--version", BPF_LINKER_VERSION])
        // --force: a bpf-linker left behind by an older nightly is "installed" for cargo but no longer runs.
        .args(["--locked", "--force", "--no-default-features", "--features"])
        .arg(format!("llvm-{llvm_major},no-llvm-linking"))
        .env("RUSTFLAGS", &rustflags)
        .env_remove("CARGO_ENCODED_RUSTFLAGS");
    println!(
        "installing bpf-linker {BPF_LINKER_VERSION} ({reason}) against nightly's {libllvm}, \
         about a minute: RUSTFLAGS=\"{rustflags}\" {}",
        cmd::describe(&install)
    );
    cmd::run(&mut install).context(
        "building bpf-linker failed; see cargo's errors above and the recipe in ../shared/KERNEL-NOTES.md",
    )
}

/// The major version from rustc's `LLVM version: 22.1.4` line.
fn llvm_major(rustc_version: &str) -> Result<u32> {
    rustc_version
        .lines()
        .find_map(|line| line.strip_prefix("LLVM version: "))
        .and_then(|version| version.trim().split('.').next())
        .and_then(|major| major.parse().ok())
        .with_context(|| {
            format!(
                "no `LLVM version: N.N.N` line in `rustc +nightly -vV`:\n{rustc_version}\n\
                 reinstall nightly with `rustup toolchain install nightly --force`"
            )
        })
}

/// The link name of nightly's LLVM library: `libLLVM-22-rust-1.97.0-nightly.so` -> `LLVM-22-rust-1.97.0-nightly`.
fn libllvm_name(lib_dir: &Path) -> Result<String> {
    let entries = fs::read_dir(lib_dir).with_context(|| {
        format!(
            "cannot read nightly's library directory {}",
            lib_dir.display()
        )
    })?;
    let mut names = Vec::new();
    for entry in entries {
        let entry =
            entry.with_context(|| format!("cannot read an entry of {}", lib_dir.display()))?;
        let file_name = entry.file_name();
        let link_name = file_name
            .to_str()
            .and_then(|name| name.strip_prefix("lib"))
            .and_then(|name| name.strip_suffix(".so"))
            .filter(|name| name.starts_with("LLVM-"));
        if let Some(link_name) = link_name {
            names.push(link_name.to_owned());
        }
    }
    match <[String; 1]>::try_from(names) {
        Ok([name]) => Ok(name),
        Err(names) if names.is_empty() => bail!(
            "no libLLVM-*.so in {}; reinstall nightly with `rustup toolchain install nightly --force`",
            lib_dir.display()
        ),
        Err(names) => bail!(
            "several libLLVM-*.so in {} ({}); remove the stale ones and rerun `cargo xtask setup`",
            lib_dir.display(),
            names.join(", ")
        ),
    }
}

/// iptables, iproute2, util-linux and ping: what fwlog installs rules with and the tests drive.
fn system_tools(report: Report) -> Result<()> {
    let missing = missing_system_tools();
    if missing.is_empty() {
        let names: Vec<_> = SYSTEM_TOOLS.iter().map(|(program, _)| *program).collect();
        report.ok(format_args!("system tools ({})", names.join(", ")));
        return Ok(());
    }

    let programs = missing
        .iter()
        .map(|(program, _)| *program)
        .collect::<Vec<_>>()
        .join(", ");
    let mut packages: Vec<Package> = Vec::new();
    for (_, package) in &missing {
        if !packages.contains(package) {
            packages.push(*package);
        }
    }
    let apt_names: Vec<_> = packages.iter().map(|package| package.apt).collect();
    let is_debian = Path::new("/etc/debian_version").exists();
    if !(is_debian && is_root()) {
        let advice = if is_debian {
            format!(
                "sudo apt-get install -y --no-install-recommends {}",
                apt_names.join(" ")
            )
        } else {
            let names = |name: fn(&Package) -> &'static str| {
                packages.iter().map(name).collect::<Vec<_>>().join(" ")
            };
            format!(
                "dnf install {} / pacman -S {}",
                names(|package| package.dnf),
                names(|package| package.pacman)
            )
        };
        bail!(
            "missing {programs}: install {} with your package manager ({advice}), then rerun `cargo xtask setup`",
            apt_names.join(" ")
        );
    }

    let mut update = Command::new("apt-get");
    update.arg("update");
    let mut install = Command::new("apt-get");
    install
        .args(["install", "-y", "--no-install-recommends"])
        .args(&apt_names)
        .env("DEBIAN_FRONTEND", "noninteractive");
    println!(
        "installing {} for {programs}: {} && DEBIAN_FRONTEND=noninteractive {}",
        apt_names.join(" "),
        cmd::describe(&update),
        cmd::describe(&install)
    );
    cmd::run(&mut update).context(
        "apt-get update failed; check the apt sources and network, then rerun `cargo xtask setup`",
    )?;
    cmd::run(&mut install).with_context(|| {
        format!(
            "installing {} failed; see apt-get's errors above",
            apt_names.join(" ")
        )
    })?;

    let still_missing = missing_system_tools();
    if !still_missing.is_empty() {
        let programs: Vec<_> = still_missing.iter().map(|(program, _)| *program).collect();
        bail!(
            "{} still missing after apt-get install; look for them with `dpkg -L {}`",
            programs.join(", "),
            apt_names.join(" ")
        );
    }
    Ok(())
}

fn missing_system_tools() -> Vec<(&'static str, Package)> {
    let path = env::var_os("PATH").unwrap_or_default();
    let dirs: Vec<PathBuf> = env::split_paths(&path)
        .chain(SBIN_DIRS.iter().map(PathBuf::from))
        .collect();
    let search_path = env::join_paths(&dirs).unwrap_or_else(|_| {
        // A PATH entry with ':' cannot be joined back; the sbin directories alone still find them.
        env::join_paths(SBIN_DIRS).unwrap_or_default()
    });
    let rsyslog_dir = format!("/usr/lib/{}-linux-gnu/rsyslog", env::consts::ARCH);
    SYSTEM_TOOLS
        .into_iter()
        .filter(|(program, _)| {
            which::which_in(program, Some(&search_path), cmd::workspace_root()).is_err()
        })
        .chain(
            RSYSLOG_MODULES
                .into_iter()
                .filter(|(module, _)| !Path::new(&rsyslog_dir).join(module).is_file()),
        )
        .collect()
}

/// fwlog pins its programs and maps in bpffs, which this kernel does not mount at boot.
fn bpffs(report: Report) -> Result<()> {
    let filesystem = statfs(BPFFS).with_context(|| {
        format!("cannot statfs {BPFFS}: does this kernel have BPF (CONFIG_BPF_SYSCALL)?")
    })?;
    if filesystem.filesystem_type() == BPF_FS_MAGIC {
        report.ok(format_args!("bpffs mounted on {BPFFS}"));
        return Ok(());
    }
    if !is_root() {
        println!(
            "note: {BPFFS} is not a bpf filesystem and xtask is not root; fwlog needs it: \
             run `sudo mount -t bpf bpf {BPFFS}`"
        );
        return Ok(());
    }
    mount(
        Some("bpf"),
        BPFFS,
        Some("bpf"),
        MsFlags::empty(),
        None::<&str>,
    )
    .with_context(|| {
        format!("mounting bpffs on {BPFFS} failed; try `mount -t bpf bpf {BPFFS}` by hand")
    })?;
    println!("mounted bpffs on {BPFFS} (mount -t bpf bpf {BPFFS})");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llvm_major_comes_from_rustc_verbose_version() {
        let version = "rustc 1.97.0-nightly (0123456789 2026-01-01)\n\
                       binary: rustc\n\
                       host: x86_64-unknown-linux-gnu\n\
                       LLVM version: 22.1.4\n";
        assert_eq!(llvm_major(version).ok(), Some(22));
        assert!(llvm_major("rustc 1.97.0-nightly\n").is_err());
    }

    #[test]
    fn only_the_nightly_channel_counts_as_nightly() {
        assert!(is_nightly_channel("nightly-x86_64-unknown-linux-gnu"));
        assert!(is_nightly_channel(
            "nightly-x86_64-unknown-linux-gnu (default)"
        ));
        assert!(!is_nightly_channel(
            "nightly-2025-01-01-x86_64-unknown-linux-gnu"
        ));
        assert!(!is_nightly_channel(
            "stable-x86_64-unknown-linux-gnu (active, default)"
        ));
    }
}
