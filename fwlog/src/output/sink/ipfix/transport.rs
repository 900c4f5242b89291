//! One IPFIX transport session to the collector: a connected UDP socket, or a TCP connection
//! made again (with a growing pause) after it breaks. Blocking, bounded by timeouts: only the
//! exporter's own thread uses it.

use std::{
    io::Write as _,
    net::{SocketAddr, TcpStream, UdpSocket},
    time::{Duration, Instant},
};

use crate::endpoints::{IpfixTarget, IpfixTransport};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// A collector that takes no data for this long is treated as gone.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
const FIRST_RETRY: Duration = Duration::from_millis(500);
const LAST_RETRY: Duration = Duration::from_secs(30);

enum Socket {
    Udp(UdpSocket),
    Tcp(TcpStream),
}

pub struct Transport {
    target: IpfixTarget,
    address: SocketAddr,
    socket: Option<Socket>,
    retry_at: Instant,
    retry_after: Duration,
    /// Whether the last attempt failed (so a failure is reported once, not per message).
    failing: bool,
}

/// What happened to a message.
#[derive(Debug, PartialEq, Eq)]
pub enum Sent {
    Yes,
    /// Not sent; the reason, when it is news (the first failure after a success).
    No(Option<String>),
}

impl Transport {
    pub fn new(target: IpfixTarget, address: SocketAddr) -> Self {
        Transport {
            target,
            address,
            socket: None,
            retry_at: Instant::now(),
            retry_after: FIRST_RETRY,
            failing: false,
        }
    }

    pub fn is_udp(&self) -> bool {
        self.target.transport == IpfixTransport::Udp
    }

    /// Whether there is a session, making one when the pause after the last failure is over.
    /// `Ok(true)` when the session is new (the encoder must start over).
    pub fn connect(&mut self) -> Result<bool, Option<String>> {
        if self.socket.is_some() {
            return Ok(false);
        }
        if Instant::now() < self.retry_at {
            return Err(None);
        }
        match self.open() {
            Ok(socket) => {
                self.socket = Some(socket);
                self.retry_after = FIRST_RETRY;
                Ok(true)
            }
            Err(error) => Err(self.failed(format!("cannot reach {}: {error}", self.target))),
        }
    }

    /// When the next connection attempt is due.
    pub fn retry_at(&self) -> Instant {
        self.retry_at
    }

    fn open(&self) -> std::io::Result<Socket> {
        match self.target.transport {
            IpfixTransport::Udp => {
                let local: SocketAddr = if self.address.is_ipv4() {
                    (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
                } else {
                    (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
                };
                let socket = UdpSocket::bind(local)?;
                socket.connect(self.address)?;
                socket.set_write_timeout(Some(WRITE_TIMEOUT))?;
                Ok(Socket::Udp(socket))
            }
            IpfixTransport::Tcp => {
                let stream = TcpStream::connect_timeout(&self.address, CONNECT_TIMEOUT)?;
                stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
                stream.set_nodelay(true)?;
                Ok(Socket::Tcp(stream))
            }
        }
    }

    /// Sends one message. A UDP datagram the network refuses is lost and the socket kept; a
    /// TCP connection that fails is dropped and made again later.
    pub fn send(&mut self, message: &[u8]) -> Sent {
        let result = match &mut self.socket {
            Some(Socket::Udp(socket)) => socket.send(message).map(|_| ()),
            Some(Socket::Tcp(stream)) => stream.write_all(message),
            None => return Sent::No(None),
        };
        match result {
            Ok(()) => {
                if std::mem::take(&mut self.failing) {
                    eprintln!("fwlog: IPFIX collector {} reached again", self.target);
                }
                Sent::Yes
            }
            Err(error) => {
                if !self.is_udp() {
                    self.socket = None;
                }
                Sent::No(self.failed(format!("sending to {} failed: {error}", self.target)))
            }
        }
    }

    /// Notes a failure; returns `reason` only when it is the first of a run.
    fn failed(&mut self, reason: String) -> Option<String> {
        self.retry_at = Instant::now() + self.retry_after;
        self.retry_after = (self.retry_after * 2).min(LAST_RETRY);
        (!std::mem::replace(&mut self.failing, true)).then_some(reason)
    }
}
