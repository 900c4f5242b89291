//! Network interfaces: checking the names the user gave, finding the default route's interface,
//! listing them by index.

use anyhow::{bail, Context as _, Result};

/// Every interface of this network namespace, by index.
pub fn list() -> Result<Vec<(u32, String)>> {
    let interfaces = nix::net::if_::if_nameindex().context("listing network interfaces")?;
    Ok(interfaces
        .iter()
        .map(|i| (i.index(), i.name().to_string_lossy().into_owned()))
        .collect())
}

/// The interfaces to watch: the ones named (each must exist), else the default route's.
pub fn resolve(requested: &[String]) -> Result<Vec<String>> {
    let existing = list()?;
    if requested.is_empty() {
        let route = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
        let route6 = std::fs::read_to_string("/proc/net/ipv6_route").unwrap_or_default();
        let Some(interface) = default_route_interface(&route, &route6) else {
            bail!("there is no default route here: name the interface(s) to watch, e.g. `fwlog watch wlan0`");
        };
        eprintln!(
            "fwlog: no interface given: using {interface}, the interface of the default route"
        );
        return Ok(vec![interface]);
    }
    let mut resolved = Vec::new();
    for name in requested {
        validate_name(name)?;
        if !existing.iter().any(|(_, existing)| existing == name) {
            let names: Vec<&str> = existing.iter().map(|(_, n)| n.as_str()).collect();
            bail!(
                "interface {name:?} does not exist; interfaces here: {}",
                names.join(", ")
            );
        }
        refuse_loopback(name)?;
        if !resolved.contains(name) {
            resolved.push(name.clone());
        }
    }
    Ok(resolved)
}

/// The inbound policy on a loopback interface, or on one that carries loopback addresses, would
/// cut the host off from its own services (DNS at 127.0.0.53, databases on ::1); fwlog's
/// outbound rules leave `lo` alone, and its inbound rules may not take it either.
fn refuse_loopback(name: &str) -> Result<()> {
    const ARPHRD_LOOPBACK: &str = "772";
    const WHY: &str = "fwlog leaves loopback alone (its inbound policy there would cut this host \
                       off from its own services, e.g. DNS at 127.0.0.53); name the external \
                       interface(s)";
    let kind = std::fs::read_to_string(format!("/sys/class/net/{name}/type")).unwrap_or_default();
    if kind.trim() == ARPHRD_LOOPBACK {
        bail!("{name} is a loopback interface: {WHY}");
    }
    let loopback_address = nix::ifaddrs::getifaddrs().ok().and_then(|mut addresses| {
        addresses.find_map(|a| {
            let address = a.address.filter(|_| a.interface_name == name)?;
            let ip: std::net::IpAddr = match (address.as_sockaddr_in(), address.as_sockaddr_in6()) {
                (Some(v4), _) => v4.ip().into(),
                (_, Some(v6)) => v6.ip().into(),
                _ => return None,
            };
            ip.is_loopback().then_some(ip)
        })
    });
    if let Some(address) = loopback_address {
        bail!("{name} carries a loopback address ({address}): {WHY}");
    }
    Ok(())
}

/// Interface names go into iptables rules: allow only what Linux allows in a name that iptables
/// can take as one word (no whitespace, no quotes, at most 15 bytes).
pub fn validate_name(name: &str) -> Result<()> {
    let valid = !name.is_empty()
        && name.len() <= 15
        && !name.starts_with('-')
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@' | b':'));
    if !valid {
        bail!("{name:?} is not a valid interface name");
    }
    Ok(())
}

/// The interface of the IPv4 default route (/proc/net/route), else of the IPv6 one.
pub fn default_route_interface(route: &str, route6: &str) -> Option<String> {
    let v4 = route.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        (fields.len() > 7 && fields[1] == "00000000" && fields[7] == "00000000")
            .then(|| fields[0].to_string())
    });
    v4.or_else(|| {
        route6.lines().find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.len() == 10
                && fields[0] == "00000000000000000000000000000000"
                && fields[1] == "00"
                && fields[9] != "lo")
                .then(|| fields[9].to_string())
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_route_from_proc() {
        let route =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                     wlan0\t0000A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
                     wlan0\t00000000\t0100A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0\n";
        assert_eq!(default_route_interface(route, ""), Some("wlan0".into()));
        let route6 = "00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000001 00000000 00000003 eth1\n";
        assert_eq!(
            default_route_interface("Iface\n", route6),
            Some("eth1".into())
        );
        assert_eq!(default_route_interface("Iface\n", ""), None);
    }

    #[test]
    fn interface_names_that_reach_iptables() {
        assert!(validate_name("wlan0").is_ok());
        assert!(validate_name("veth-fw.12").is_ok());
        assert!(validate_name("").is_err());
        assert!(validate_name("a b").is_err());
        assert!(validate_name("x\"y").is_err());
        assert!(validate_name("sixteen-chars-xx").is_err());
        assert!(validate_name("-j ACCEPT").is_err());
    }
}
