//! The bench's network: namespaces `fwb-host-<pid>` and `fwb-peer-<pid>` joined by a veth pair,
//! deleted on drop (also on error or Ctrl-C), so the flood never leaves them.

use std::{fs, net::Ipv4Addr, path::PathBuf, process::Command};

use anyhow::{Context as _, Result};
pub use netns_guard::NetNsGuard;

use crate::cmd;

/// Prefix of every namespace the bench creates; leftovers of a killed bench are recognised by it.
const NAME_PREFIX: &str = "fwb-";

/// The host side: fwlog (or the classic setup) watches this address's interface.
pub const HOST_ADDR: Ipv4Addr = Ipv4Addr::new(10, 201, 0, 1);
/// The peer side, where the flood starts; flood sources are other addresses of the same /16.
pub const PEER_ADDR: Ipv4Addr = Ipv4Addr::new(10, 201, 0, 2);
/// Both ends share one /16 so every flood source (10.201.1.1-10.201.254.254) is on-link for the
/// host and passes reverse-path filtering.
const PREFIX_LEN: u8 = 16;
/// Fixed, locally administered MACs: the generator writes Ethernet headers itself, with no ARP.
pub const HOST_MAC: [u8; 6] = [0x02, 0xfb, 0, 0, 0, 0x01];
pub const PEER_MAC: [u8; 6] = [0x02, 0xfb, 0, 0, 0, 0x02];

/// The two namespaces and the veth pair between them (the pair dies with the namespaces).
pub struct BenchNet {
    pub host: NetNsGuard,
    pub peer: NetNsGuard,
    pub host_if: String,
    pub peer_if: String,
}

impl BenchNet {
    pub fn create() -> Result<Self> {
        let pid = std::process::id();
        let host = NetNsGuard::create(format!("{NAME_PREFIX}host-{pid}"))?;
        let peer = NetNsGuard::create(format!("{NAME_PREFIX}peer-{pid}"))?;
        // "fwbh" + at most 7 digits of a pid: within IFNAMSIZ (15).
        let host_if = format!("fwbh{pid}");
        let peer_if = format!("fwbp{pid}");
        let mac = |bytes: [u8; 6]| {
            bytes
                .iter()
                .map(|byte| format!("{byte:02x}"))
                .collect::<Vec<_>>()
                .join(":")
        };
        cmd::output(Command::new("ip").args([
            "link",
            "add",
            &host_if,
            "address",
            &mac(HOST_MAC),
            "netns",
            host.name(),
            "type",
            "veth",
            "peer",
            "name",
            &peer_if,
            "address",
            &mac(PEER_MAC),
            "netns",
            peer.name(),
        ]))
        .context("creating the veth pair")?;
        for (netns, interface, addr) in [(&host, &host_if, HOST_ADDR), (&peer, &peer_if, PEER_ADDR)]
        {
            // IPv4 only: without IPv6 no router solicitations or MLD reports reach the chains,
            // so every logged line is a flood flow.
            for key in ["all", "default", interface.as_str()] {
                netns.output(
                    "sysctl",
                    &["-q", "-w", &format!("net.ipv6.conf.{key}.disable_ipv6=1")],
                )?;
            }
            netns.output(
                "ip",
                &[
                    "addr",
                    "add",
                    &format!("{addr}/{PREFIX_LEN}"),
                    "dev",
                    interface,
                ],
            )?;
            netns.output("ip", &["link", "set", "lo", "up"])?;
            netns.output("ip", &["link", "set", interface, "up"])?;
        }
        Ok(BenchNet {
            host,
            peer,
            host_if,
            peer_if,
        })
    }
}

/// Deletes `fwb-*` namespaces left by a bench that was killed (its pid no longer runs).
pub fn remove_leftovers() -> Result<Vec<String>> {
    let mut removed = Vec::new();
    let entries = match fs::read_dir("/run/netns") {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(removed),
        Err(error) => return Err(error).context("listing /run/netns"),
    };
    for entry in entries {
        let name = entry.context("reading /run/netns")?.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(pid) = leftover_pid(name) else {
            continue;
        };
        if PathBuf::from(format!("/proc/{pid}")).exists() {
            continue;
        }
        cmd::output(Command::new("ip").args(["netns", "del", name]))
            .with_context(|| format!("deleting the leftover namespace {name}"))?;
        removed.push(name.to_owned());
    }
    Ok(removed)
}

/// The pid in `fwb-host-<pid>` / `fwb-peer-<pid>`.
fn leftover_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(NAME_PREFIX)?;
    let pid = rest
        .strip_prefix("host-")
        .or_else(|| rest.strip_prefix("peer-"))?;
    pid.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bench_namespaces_are_leftovers() {
        assert_eq!(leftover_pid("fwb-host-1234"), Some(1234));
        assert_eq!(leftover_pid("fwb-peer-7"), Some(7));
        assert_eq!(leftover_pid("fwt-host-1234"), None);
        assert_eq!(leftover_pid("fwb-host-x"), None);
        assert_eq!(leftover_pid("fwb-other-1"), None);
    }
}
