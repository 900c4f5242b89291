//! Never lock the user out: refuse rules that would drop new SSH connections on the interface
//! that carries this very SSH session (`SSH_CONNECTION`), unless a port is allowed or `--force`.

use std::net::IpAddr;

use fwlog_common::event::Action;

use crate::firewall::plan::{PortRule, RuleOptions, Transport};

/// `Err(message)` when the rules would refuse new connections to this session's SSH server.
///
/// `ssh_connection` is the value of `SSH_CONNECTION` ("client_ip client_port server_ip
/// server_port"); `addresses` are this namespace's (interface, address) pairs.
pub fn check(
    ssh_connection: Option<&str>,
    addresses: &[(String, IpAddr)],
    options: &RuleOptions,
) -> Result<(), String> {
    let Some((server_ip, server_port)) = ssh_connection.and_then(parse) else {
        return Ok(());
    };
    let Some((interface, _)) = addresses
        .iter()
        .find(|(name, addr)| *addr == server_ip && options.interfaces.contains(name))
    else {
        return Ok(());
    };
    let allowed = PortRule {
        port: server_port,
        proto: Transport::Tcp,
    };
    if options.inbound == Action::Accept || options.allow_in.contains(&allowed) {
        return Ok(());
    }
    let fate = if options.inbound == Action::Reject {
        "rejected"
    } else {
        "dropped"
    };
    Err(format!(
        "this SSH session reaches {server_ip} port {server_port} on {interface}, where new \
         inbound connections would be {fate}: if it ends you could not log in again. Add \
         `--allow-in {allowed}`, or `--force` if another way in exists"
    ))
}

fn parse(ssh_connection: &str) -> Option<(IpAddr, u16)> {
    let fields: Vec<&str> = ssh_connection.split_whitespace().collect();
    match fields.as_slice() {
        [_, _, server_ip, server_port] => {
            Some((server_ip.parse().ok()?, server_port.parse().ok()?))
        }
        _ => None,
    }
}

/// This namespace's interface addresses.
pub fn interface_addresses() -> Vec<(String, IpAddr)> {
    let Ok(interfaces) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    interfaces
        .filter_map(|interface| {
            let address = interface.address?;
            let ip = if let Some(v4) = address.as_sockaddr_in() {
                IpAddr::V4(v4.ip())
            } else {
                IpAddr::V6(address.as_sockaddr_in6()?.ip())
            };
            Some((interface.interface_name, ip))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(inbound: Action, allow_in: &[&str]) -> RuleOptions {
        RuleOptions {
            interfaces: vec!["eth0".into()],
            pin_dir: "/sys/fs/bpf/fwlog/1".into(),
            kernel_log_prefix: None,
            inbound,
            outbound: Action::Accept,
            allow_in: allow_in.iter().map(|r| r.parse().expect("rule")).collect(),
            tag: crate::firewall::RULE_COMMENT.into(),
            grace: Default::default(),
            grace_seconds: 0,
            outbound_default: false,
        }
    }

    fn addresses() -> Vec<(String, IpAddr)> {
        vec![
            ("eth0".into(), "192.0.2.10".parse().expect("ip")),
            ("wg0".into(), "10.8.0.1".parse().expect("ip")),
        ]
    }

    const SESSION: &str = "198.51.100.7 51234 192.0.2.10 22";

    #[test]
    fn refuses_to_cut_the_session_off() {
        let error =
            check(Some(SESSION), &addresses(), &options(Action::Drop, &[])).expect_err("refused");
        assert!(error.contains("--allow-in 22/tcp"), "{error}");
        assert!(error.contains("would be dropped"), "{error}");
        assert!(error.contains("eth0"), "{error}");
    }

    #[test]
    fn allows_when_the_port_is_open_or_inbound_accepts() {
        assert!(check(
            Some(SESSION),
            &addresses(),
            &options(Action::Drop, &["22/tcp"])
        )
        .is_ok());
        assert!(check(Some(SESSION), &addresses(), &options(Action::Accept, &[])).is_ok());
        assert!(check(
            Some(SESSION),
            &addresses(),
            &options(Action::Drop, &["22/udp"])
        )
        .is_err());
    }

    #[test]
    fn other_interfaces_and_no_ssh_are_fine() {
        assert!(check(
            Some("198.51.100.7 51234 10.8.0.1 22"),
            &addresses(),
            &options(Action::Drop, &[])
        )
        .is_ok());
        assert!(check(None, &addresses(), &options(Action::Drop, &[])).is_ok());
        assert!(check(Some("garbage"), &addresses(), &options(Action::Drop, &[])).is_ok());
    }
}
