//! Network endpoints named on the command line or in the file: where `/metrics` listens and
//! which IPFIX collector gets the flows. Parsed here, resolved and used by their owners.

use std::{fmt, net::SocketAddr, str::FromStr};

/// The default port of `--metrics` given as a bare host (`--metrics 127.0.0.1`); the
/// Prometheus exporters' default-port registry lists 9477 for nothing else we know of.
pub const DEFAULT_METRICS_PORT: u16 = 9477;
/// IANA's port for IPFIX (RFC 7011 section 10).
pub const DEFAULT_IPFIX_PORT: u16 = 4739;
/// RFC 5612's private enterprise number for documentation and examples: fwlog's own IPFIX
/// elements go under it until the operator names their organisation's.
pub const DEFAULT_IPFIX_ENTERPRISE: u32 = 32473;
/// Seconds between two sendings of the IPFIX templates over UDP.
pub const DEFAULT_TEMPLATE_REFRESH: u64 = 60;
pub const TEMPLATE_REFRESHES: std::ops::Range<u64> = 1..3601;

/// `--metrics`: `PORT` (on 127.0.0.1), `IP:PORT` or `[IPv6]:PORT`. Never a wildcard address
/// unless written out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetricsAddress(pub SocketAddr);

impl FromStr for MetricsAddress {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if let Ok(port) = text.parse::<u16>() {
            return Ok(MetricsAddress(SocketAddr::from(([127, 0, 0, 1], port))));
        }
        if let Ok(address) = text.parse::<SocketAddr>() {
            return Ok(MetricsAddress(address));
        }
        if let Ok(ip) = text.trim_matches(['[', ']']).parse::<std::net::IpAddr>() {
            return Ok(MetricsAddress(SocketAddr::new(ip, DEFAULT_METRICS_PORT)));
        }
        Err(format!(
            "{text:?} is not a listening address: use PORT, IP:PORT or [IPv6]:PORT \
             (e.g. 127.0.0.1:{DEFAULT_METRICS_PORT})"
        ))
    }
}

impl fmt::Display for MetricsAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// How IPFIX messages travel (RFC 7011 section 10).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpfixTransport {
    Udp,
    Tcp,
}

impl IpfixTransport {
    pub const fn scheme(self) -> &'static str {
        match self {
            IpfixTransport::Udp => "udp",
            IpfixTransport::Tcp => "tcp",
        }
    }
}

/// `--ipfix udp://HOST:PORT` or `tcp://HOST:PORT` (port 4739 when left out).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpfixTarget {
    pub transport: IpfixTransport,
    /// A name or an address (IPv6 without its brackets).
    pub host: String,
    pub port: u16,
}

impl FromStr for IpfixTarget {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let usage = || {
            format!(
                "{text:?} is not a collector: use udp://HOST:PORT or tcp://HOST:PORT \
                 (e.g. udp://192.0.2.9:{DEFAULT_IPFIX_PORT})"
            )
        };
        let (scheme, rest) = text.split_once("://").ok_or_else(usage)?;
        let transport = match scheme.to_ascii_lowercase().as_str() {
            "udp" => IpfixTransport::Udp,
            "tcp" => IpfixTransport::Tcp,
            _ => return Err(usage()),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let (host, port) = if let Some(bracketed) = rest.strip_prefix('[') {
            let (host, after) = bracketed.split_once(']').ok_or_else(usage)?;
            match after {
                "" => (host, None),
                _ => (host, Some(after.strip_prefix(':').ok_or_else(usage)?)),
            }
        } else {
            match rest.rsplit_once(':') {
                Some((host, port)) if !host.contains(':') => (host, Some(port)),
                Some(_) => return Err(format!("{text:?}: put an IPv6 address in brackets")),
                None => (rest, None),
            }
        };
        let port = match port {
            Some(port) => port
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("{text:?}: {port:?} is not a port (1-65535)"))?,
            None => DEFAULT_IPFIX_PORT,
        };
        let valid_host = !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-_:%".contains(c));
        if !valid_host {
            return Err(usage());
        }
        Ok(IpfixTarget {
            transport,
            host: host.to_string(),
            port,
        })
    }
}

impl fmt::Display for IpfixTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = self.transport.scheme();
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_addresses() {
        let parse = |text: &str| text.parse::<MetricsAddress>().map(|a| a.to_string());
        assert_eq!(parse("9100").as_deref(), Ok("127.0.0.1:9100"));
        assert_eq!(parse("127.0.0.1:9477").as_deref(), Ok("127.0.0.1:9477"));
        assert_eq!(parse("[::1]:9477").as_deref(), Ok("[::1]:9477"));
        assert_eq!(parse("::1").as_deref(), Ok("[::1]:9477"));
        assert_eq!(parse("10.0.0.1").as_deref(), Ok("10.0.0.1:9477"));
        assert!(parse("localhost:9477").is_err());
        assert!(parse("").is_err());
    }

    #[test]
    fn ipfix_targets() {
        let parse = |text: &str| text.parse::<IpfixTarget>().map(|t| t.to_string());
        assert_eq!(
            parse("udp://192.0.2.9:4739").as_deref(),
            Ok("udp://192.0.2.9:4739")
        );
        assert_eq!(
            parse("TCP://collector.example").as_deref(),
            Ok("tcp://collector.example:4739")
        );
        assert_eq!(parse("udp://[::1]:9995").as_deref(), Ok("udp://[::1]:9995"));
        assert_eq!(
            parse("udp://[fd00::1]").as_deref(),
            Ok("udp://[fd00::1]:4739")
        );
        for bad in [
            "192.0.2.9:4739",
            "sctp://x:1",
            "udp://:4739",
            "udp://x:0",
            "udp://x:99999",
            "udp://::1:4739",
            "udp://a b:1",
            "udp://[::1]4739",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
