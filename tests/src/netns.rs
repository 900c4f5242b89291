//! Network namespaces and the veth pair between them.

use std::{
    fs::File,
    os::unix::fs::MetadataExt as _,
    path::PathBuf,
    process::{Command, Output},
    sync::atomic::{AtomicU32, Ordering},
};

use anyhow::{bail, Context as _, Result};
use nix::sched::{setns, CloneFlags};

static NEXT_ID: AtomicU32 = AtomicU32::new(0);

/// A unique, short suffix: veth names must fit in 15 bytes.
fn unique_suffix() -> String {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    format!("{}{id}", std::process::id() % 100_000)
}

/// A network namespace made with `ip netns add`, deleted on drop.
pub struct NetNs {
    pub name: String,
}

impl NetNs {
    pub fn new(role: &str) -> Result<Self> {
        let name = format!("fwt-{role}-{}", unique_suffix());
        run(Command::new("ip").args(["netns", "add", &name]))?;
        let netns = NetNs { name };
        netns.exec("ip", &["link", "set", "lo", "up"])?;
        Ok(netns)
    }

    /// `/run/netns/NAME`.
    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    /// The namespace's inode number, which names fwlog's pin directory and lock.
    pub fn inode(&self) -> u64 {
        std::fs::metadata(self.path()).map(|m| m.ino()).unwrap_or(0)
    }

    /// fwlog's pin directory for this namespace.
    pub fn pin_dir(&self) -> PathBuf {
        PathBuf::from("/sys/fs/bpf/fwlog").join(self.inode().to_string())
    }

    /// A command that runs inside the namespace. `nsenter --net` keeps the mount namespace, so
    /// the command sees the same bpffs (unlike `ip netns exec`).
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new("nsenter");
        command
            .arg(format!("--net={}", self.path().display()))
            .arg(program);
        command
    }

    /// Runs a command in the namespace and fails unless it succeeds.
    pub fn exec(&self, program: &str, args: &[&str]) -> Result<String> {
        let output = run(self.command(program).args(args))?;
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Runs `f` on a thread that has entered the namespace. Sockets it creates stay in the
    /// namespace, so it can return them to the test.
    pub fn enter<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
        let file = File::open(self.path()).with_context(|| format!("opening {}", self.name))?;
        let handle = std::thread::spawn(move || -> Result<T> {
            setns(&file, CloneFlags::CLONE_NEWNET).context("setns")?;
            Ok(f())
        });
        match handle.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }

    /// `iptables-save` and `ip6tables-save` of the filter table, without comments and counters.
    pub fn saved_rules(&self) -> Result<String> {
        let mut saved = String::new();
        for command in ["iptables-save", "ip6tables-save"] {
            let out = self.exec(command, &["-t", "filter"])?;
            for line in out.lines().filter(|l| !l.starts_with('#')) {
                saved.push_str(line);
                saved.push('\n');
            }
        }
        Ok(saved)
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let result = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
        if !matches!(&result, Ok(out) if out.status.success()) && !std::thread::panicking() {
            eprintln!(
                "warning: could not delete network namespace {}: {result:?}",
                self.name
            );
        }
    }
}

pub const HOST_V4: &str = "10.200.0.1";
pub const PEER_V4: &str = "10.200.0.2";
pub const HOST_V6: &str = "fd00:200::1";
pub const PEER_V6: &str = "fd00:200::2";

/// Two namespaces joined by a veth pair: `host` runs fwlog on `host_if`, `peer` is the
/// outside world. The pair dies with the namespaces.
pub struct TestNet {
    pub host: NetNs,
    pub peer: NetNs,
    pub host_if: String,
    pub peer_if: String,
}

impl TestNet {
    pub fn new() -> Result<Self> {
        crate::require_root();
        let host = NetNs::new("host")?;
        let peer = NetNs::new("peer")?;
        let suffix = unique_suffix();
        let host_if = format!("fwh{suffix}");
        let peer_if = format!("fwp{suffix}");
        if host_if.len() > 15 {
            bail!("interface name {host_if} too long");
        }
        run(Command::new("ip").args([
            "link", "add", &host_if, "netns", &host.name, "type", "veth", "peer", "name", &peer_if,
            "netns", &peer.name,
        ]))?;
        for (netns, interface, v4, v6) in [
            (&host, &host_if, HOST_V4, HOST_V6),
            (&peer, &peer_if, PEER_V4, PEER_V6),
        ] {
            netns.exec(
                "ip",
                &["addr", "add", &format!("{v4}/24"), "dev", interface],
            )?;
            netns.exec(
                "ip",
                &[
                    "addr",
                    "add",
                    &format!("{v6}/64"),
                    "dev",
                    interface,
                    "nodad",
                ],
            )?;
            netns.exec("ip", &["link", "set", interface, "up"])?;
            // Answer every probe at once (the kernel rate-limits ICMP errors by default).
            netns.exec("sysctl", &["-q", "-w", "net.ipv4.icmp_ratelimit=0"])?;
            netns.exec("sysctl", &["-q", "-w", "net.ipv6.icmp.ratelimit=0"])?;
        }
        Ok(TestNet {
            host,
            peer,
            host_if,
            peer_if,
        })
    }
}

impl TestNet {
    /// Adds a tun device (no link-layer header: packets start with the IP header) to `host`,
    /// up, with `10.203.0.1/24`; it goes with the namespace. Returns its name.
    pub fn add_tun(&self) -> Result<String> {
        let tun = self.host_if.replacen("fwh", "fwt", 1);
        // /dev/net/tun appears when the module is loaded (qemu guests do not load it at boot);
        // `ip tuntap` says what is wrong if it still cannot open it.
        let _ = Command::new("modprobe").args(["-q", "tun"]).status();
        self.host
            .exec("ip", &["tuntap", "add", "dev", &tun, "mode", "tun"])?;
        self.host
            .exec("ip", &["addr", "add", &format!("{TUN_V4}/24"), "dev", &tun])?;
        self.host.exec("ip", &["link", "set", &tun, "up"])?;
        Ok(tun)
    }
}

/// The host's address on the tun device of [`TestNet::add_tun`] (its peer would be 10.203.0.2).
pub const TUN_V4: &str = "10.203.0.1";

pub fn run(command: &mut Command) -> Result<Output> {
    let output = command
        .output()
        .with_context(|| format!("running {command:?}"))?;
    if !output.status.success() {
        bail!(
            "{command:?} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(output)
}
