//! Traffic between the test namespaces, from sockets made inside them. Every wait is bounded.

use std::{
    io::{ErrorKind, Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream, UdpSocket},
    time::Duration,
};

use anyhow::{Context as _, Result};

use crate::NetNsGuard;

/// Tries a TCP connection from inside `from`. `Ok(true)`: connected; `Ok(false)`: no answer
/// within `timeout` (dropped); `Err`: refused or another error.
pub fn tcp_connect(from: &NetNsGuard, to: SocketAddr, timeout: Duration) -> Result<bool> {
    let attempt = from.enter(move || TcpStream::connect_timeout(&to, timeout))?;
    match attempt {
        Ok(_) => Ok(true),
        Err(error) if error.kind() == ErrorKind::TimedOut => Ok(false),
        Err(error) => Err(error).with_context(|| format!("connecting to {to}")),
    }
}

/// A TCP listener inside `netns`, accepting in the background (bounded) and reading nothing.
pub fn tcp_listen(netns: &NetNsGuard, at: SocketAddr) -> Result<TcpListener> {
    netns
        .enter(move || TcpListener::bind(at))?
        .with_context(|| format!("listening on {at}"))
}

/// A UDP socket bound inside `netns`.
pub fn udp_bind(netns: &NetNsGuard, at: SocketAddr) -> Result<UdpSocket> {
    let socket = netns
        .enter(move || UdpSocket::bind(at))?
        .with_context(|| format!("binding {at}"))?;
    Ok(socket)
}

/// Sends one datagram from an ephemeral port inside `from`; returns the source address.
pub fn udp_send(from: &NetNsGuard, to: SocketAddr, payload: &[u8]) -> Result<SocketAddr> {
    let bind: SocketAddr = if to.is_ipv4() {
        "0.0.0.0:0".parse()?
    } else {
        "[::]:0".parse()?
    };
    let socket = udp_bind(from, bind)?;
    socket.connect(to).context("connecting the UDP socket")?;
    socket.send(payload).context("sending a datagram")?;
    socket.local_addr().context("local address")
}

/// Whether `socket` receives anything within `wait`.
pub fn udp_received(socket: &UdpSocket, wait: Duration) -> Result<bool> {
    socket.set_read_timeout(Some(wait))?;
    let mut buffer = [0u8; 2048];
    match socket.recv(&mut buffer) {
        Ok(_) => Ok(true),
        Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
            Ok(false)
        }
        Err(error) => Err(error).context("receiving"),
    }
}

/// Reads everything a TCP peer sends, until it closes or `wait` passes.
pub fn read_all(stream: &mut TcpStream, wait: Duration) -> Result<Vec<u8>> {
    stream.set_read_timeout(Some(wait))?;
    let mut data = Vec::new();
    stream.read_to_end(&mut data).context("reading")?;
    Ok(data)
}

/// `ping -c 1` from `from`: whether a reply came back within a second.
pub fn ping(from: &NetNsGuard, to: &str) -> Result<bool> {
    let status = from
        .command("ping")
        .args(["-c", "1", "-W", "1", to])
        .output()
        .context("running ping (install iputils-ping)")?
        .status;
    Ok(status.success())
}

/// Sends `bytes` from `from` to a listener in `to`, which reads it all; closes both ways (FIN).
pub fn tcp_transfer(
    from: &NetNsGuard,
    listener: TcpListener,
    to: SocketAddr,
    bytes: usize,
) -> Result<()> {
    let reader = std::thread::spawn(move || -> Result<usize> {
        let (mut conn, _) = listener.accept()?;
        conn.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut total = 0;
        let mut buffer = vec![0u8; 65536];
        loop {
            let n = conn.read(&mut buffer)?;
            if n == 0 {
                break;
            }
            total += n;
        }
        Ok(total)
    });
    let mut stream =
        from.enter(move || TcpStream::connect_timeout(&to, Duration::from_secs(3)))??;
    stream.write_all(&vec![b'x'; bytes])?;
    stream.shutdown(std::net::Shutdown::Write)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest)?;
    let received = reader
        .join()
        .map_err(|_| anyhow::anyhow!("reader panicked"))??;
    assert_eq!(received, bytes);
    Ok(())
}
