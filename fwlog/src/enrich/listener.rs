//! The process listening behind an accepted inbound connection: the socket that listens on the
//! destination port (/proc/net/{tcp,udp}{,6}) and the process holding it (/proc/PID/fd). Only a
//! single, unambiguous listener is named; otherwise nothing is (never guessed).

use std::{
    collections::HashMap,
    net::IpAddr,
    time::{Duration, Instant},
};

use fwlog_common::{
    packet::{IPPROTO_TCP, IPPROTO_UDP},
    process::ProcessInfo,
};

/// How long a socket → process map is trusted before /proc is walked again.
const REFRESH: Duration = Duration::from_secs(5);

#[derive(Default)]
pub struct ListenerLookup {
    owners: HashMap<u64, Option<u32>>,
    read_at: Option<Instant>,
}

impl ListenerLookup {
    /// The process listening on `proto` `port` for `dest`, if exactly one socket does.
    pub fn find(&mut self, proto: u8, dest: IpAddr, port: u16) -> Option<ProcessInfo> {
        let (table, listening_state) = match proto {
            IPPROTO_TCP => ("tcp", "0A"),
            IPPROTO_UDP => ("udp", "07"),
            _ => return None,
        };
        let mut inodes = Vec::new();
        for suffix in ["", "6"] {
            let text =
                std::fs::read_to_string(format!("/proc/net/{table}{suffix}")).unwrap_or_default();
            inodes.extend(listening_inodes(&text, listening_state, dest, port));
        }
        let [inode] = inodes.as_slice() else {
            return None;
        };
        let pid = self.owner(*inode)?;
        process_info(pid)
    }

    fn owner(&mut self, inode: u64) -> Option<u32> {
        let stale = self.read_at.is_none_or(|at| at.elapsed() >= REFRESH);
        if stale || !self.owners.contains_key(&inode) {
            self.owners = socket_owners();
            self.read_at = Some(Instant::now());
        }
        self.owners.get(&inode).copied().flatten()
    }
}

/// Inodes of sockets in `state` bound to `port` on `dest` or on any address, from one
/// /proc/net/{tcp,udp}[6] table.
pub fn listening_inodes(table: &str, state: &str, dest: IpAddr, port: u16) -> Vec<u64> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (addr, local_port) = fields.get(1)?.split_once(':')?;
            if fields.get(3)? != &state || u16::from_str_radix(local_port, 16).ok()? != port {
                return None;
            }
            let bound = proc_net_addr(addr)?;
            let matches = bound.is_unspecified()
                || bound == dest
                || matches!((bound, dest), (IpAddr::V6(v6), IpAddr::V4(v4)) if v6.to_ipv4_mapped() == Some(v4));
            matches.then(|| fields.get(9)?.parse().ok()).flatten()
        })
        .collect()
}

/// /proc/net addresses: host-order 32-bit words in hex.
fn proc_net_addr(hex: &str) -> Option<IpAddr> {
    let word = |i: usize| -> Option<[u8; 4]> {
        Some(
            u32::from_str_radix(hex.get(i * 8..i * 8 + 8)?, 16)
                .ok()?
                .to_ne_bytes(),
        )
    };
    match hex.len() {
        8 => Some(IpAddr::from(word(0)?)),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            Some(IpAddr::from(bytes))
        }
        _ => None,
    }
}

/// socket inode → the process holding it, or `None` when several processes do.
fn socket_owners() -> HashMap<u64, Option<u32>> {
    let mut owners: HashMap<u64, Option<u32>> = HashMap::new();
    let Ok(processes) = std::fs::read_dir("/proc") else {
        return owners;
    };
    for process in processes.filter_map(|p| p.ok()) {
        let Some(pid) = process
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(process.path().join("fd")) else {
            continue;
        };
        for fd in fds.filter_map(|f| f.ok()) {
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let Some(inode) = target
                .to_str()
                .and_then(|t| t.strip_prefix("socket:["))
                .and_then(|t| t.strip_suffix(']'))
                .and_then(|t| t.parse::<u64>().ok())
            else {
                continue;
            };
            owners
                .entry(inode)
                .and_modify(|owner| {
                    if *owner != Some(pid) {
                        *owner = None;
                    }
                })
                .or_insert(Some(pid));
        }
    }
    owners
}

fn process_info(pid: u32) -> Option<ProcessInfo> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse::<u32>().ok())
    };
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    let mut info = ProcessInfo {
        pid,
        uid: field("Uid:")?,
        gid: field("Gid:")?,
        ..ProcessInfo::default()
    };
    let comm = comm.trim_end().as_bytes();
    let len = comm.len().min(info.comm.len());
    info.comm[..len].copy_from_slice(&comm[..len]);
    Some(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100C80A:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0
   1: 00000000:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4343 1 0000000000000000 100 0 0 10 0
   2: 0100C80A:0016 0200C80A:9C40 01 00000000:00000000 00:00000000 00000000     0        0 4444 1 0000000000000000 100 0 0 10 0
";

    #[test]
    fn finds_the_listening_socket() {
        let host: IpAddr = "10.200.0.1".parse().expect("ip");
        assert_eq!(
            listening_inodes(TCP, "0A", host, 22),
            [4242],
            "bound to the address, listening"
        );
        assert_eq!(
            listening_inodes(TCP, "0A", host, 80),
            [4343],
            "bound to any address"
        );
        assert!(listening_inodes(TCP, "0A", host, 443).is_empty());
        let other: IpAddr = "10.9.9.9".parse().expect("ip");
        assert!(
            listening_inodes(TCP, "0A", other, 22).is_empty(),
            "another address's socket"
        );
    }

    #[test]
    fn parses_ipv6_addresses() {
        let any6 = "00000000000000000000000000000000";
        assert_eq!(proc_net_addr(any6), Some("::".parse().expect("ip")));
        assert_eq!(
            proc_net_addr("0100007F"),
            Some("127.0.0.1".parse().expect("ip"))
        );
        assert_eq!(proc_net_addr("zz"), None);
    }
}
