//! Fixtures for fwlog's end-to-end tests: network namespaces joined by a veth pair, a running
//! `fwlog` in one of them, and traffic sent from threads that entered a namespace.
//!
//! Everything a test creates has a name unique to the process and test (pid + counter), and is
//! removed by `Drop`, also when the test fails.

pub mod daemon;
pub mod fwlog;
pub mod kernel_maps;
pub mod netns;
pub mod private_bpffs;
pub mod scapy;
pub mod tc;
pub mod traffic;

pub use fwlog::{fwlog_bin, Fwlog};
pub use netns::{NetNsGuard, TestNet};

/// A socket address from a literal test address and a port.
pub fn addr(ip: &str, port: u16) -> std::net::SocketAddr {
    std::net::SocketAddr::new(ip.parse().expect("a literal test address"), port)
}

/// How many times longer than usual the fixtures wait for fwlog to start, to print an expected
/// event and to exit: `FWLOG_TEST_SLOWDOWN`, which `cargo xtask test --kernel` sets for guests
/// under software emulation; 1 when unset.
pub fn slowdown() -> u32 {
    std::env::var("FWLOG_TEST_SLOWDOWN")
        .ok()
        .and_then(|factor| factor.parse().ok())
        .filter(|factor| *factor >= 1)
        .unwrap_or(1)
}

/// `wait` stretched by [`slowdown`].
pub fn patient(wait: std::time::Duration) -> std::time::Duration {
    wait * slowdown()
}

/// Fails the test, saying why, unless it runs as root: these tests need to create network
/// namespaces, load eBPF programs and change iptables.
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "fwlog's end-to-end tests need root (network namespaces, eBPF, iptables): run them with \
         `cargo xtask test`, which uses sudo when needed"
    );
}

/// `text` with every instance tag (`fwlog-` and 16 hex digits, the comment of fwlog's rules)
/// shortened to `fwlog`, to compare with `fwlog rules` or fixed expectations.
pub fn untagged(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("fwlog-") {
        let (before, tagged) = rest.split_at(at);
        out.push_str(before);
        let id = tagged
            .get(6..22)
            .filter(|id| id.bytes().all(|b| b.is_ascii_hexdigit()));
        match id {
            Some(_) => {
                out.push_str("fwlog");
                rest = &tagged[22..];
            }
            None => {
                out.push_str("fwlog-");
                rest = &tagged[6..];
            }
        }
    }
    out.push_str(rest);
    out
}
