//! The tests' network: namespaces made for one test (names unique to the process and the test)
//! and the veth pair between them.

use std::{
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
};

use anyhow::{bail, Result};
pub use netns_guard::{run, NetNsGuard};

static NEXT_ID: AtomicU32 = AtomicU32::new(0);

/// A unique, short suffix: veth names must fit in 15 bytes.
fn unique_suffix() -> String {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    format!("{}{id}", std::process::id() % 100_000)
}

/// A namespace for one test, `fwt-ROLE-<pid><n>`, with loopback up.
pub fn create(role: &str) -> Result<NetNsGuard> {
    let netns = NetNsGuard::create(format!("fwt-{role}-{}", unique_suffix()))?;
    netns.output("ip", &["link", "set", "lo", "up"])?;
    Ok(netns)
}

pub const HOST_V4: &str = "10.200.0.1";
pub const PEER_V4: &str = "10.200.0.2";
pub const HOST_V6: &str = "fd00:200::1";
pub const PEER_V6: &str = "fd00:200::2";

/// Two namespaces joined by a veth pair: `host` runs fwlog on `host_if`, `peer` is the
/// outside world. The pair dies with the namespaces.
pub struct TestNet {
    pub host: NetNsGuard,
    pub peer: NetNsGuard,
    pub host_if: String,
    pub peer_if: String,
}

impl TestNet {
    pub fn new() -> Result<Self> {
        crate::require_root();
        let host = create("host")?;
        let peer = create("peer")?;
        let suffix = unique_suffix();
        let host_if = format!("fwh{suffix}");
        let peer_if = format!("fwp{suffix}");
        if host_if.len() > 15 {
            bail!("interface name {host_if} too long");
        }
        run(Command::new("ip").args([
            "link",
            "add",
            &host_if,
            "netns",
            host.name(),
            "type",
            "veth",
            "peer",
            "name",
            &peer_if,
            "netns",
            peer.name(),
        ]))?;
        for (netns, interface, v4, v6) in [
            (&host, &host_if, HOST_V4, HOST_V6),
            (&peer, &peer_if, PEER_V4, PEER_V6),
        ] {
            netns.output(
                "ip",
                &["addr", "add", &format!("{v4}/24"), "dev", interface],
            )?;
            netns.output(
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
            netns.output("ip", &["link", "set", interface, "up"])?;
            // Answer every probe at once (the kernel rate-limits ICMP errors by default).
            netns.output("sysctl", &["-q", "-w", "net.ipv4.icmp_ratelimit=0"])?;
            netns.output("sysctl", &["-q", "-w", "net.ipv6.icmp.ratelimit=0"])?;
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
            .output("ip", &["tuntap", "add", "dev", &tun, "mode", "tun"])?;
        self.host
            .output("ip", &["addr", "add", &format!("{TUN_V4}/24"), "dev", &tun])?;
        self.host.output("ip", &["link", "set", &tun, "up"])?;
        Ok(tun)
    }
}

/// The host's address on the tun device of [`TestNet::add_tun`] (its peer would be 10.203.0.2).
pub const TUN_V4: &str = "10.203.0.1";
