//! Route netlink questions and requests to the kernel of this network namespace: an
//! interface's link-layer type, and the tc filters and qdiscs that aya 0.14 cannot list or
//! delete. Messages are netlink-packet-route's, sent on a netlink-sys socket.

use std::io;

use anyhow::{bail, Context as _, Result};
use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_route::{
    link::{LinkAttribute, LinkLayerType, LinkMessage},
    tc::{TcAttribute, TcFilterBpfOption, TcHandle, TcMessage, TcOption},
    RouteNetlinkMessage,
};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

/// `ETH_P_ALL` in network byte order, the protocol of filters that see every packet (the low
/// 16 bits of a filter's `tcm_info`; its priority is the high 16).
const ETH_P_ALL_BE: u16 = 0x0003u16.to_be();

/// Which hook of the `clsact` qdisc.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClsactHook {
    Ingress,
    Egress,
}

impl ClsactHook {
    fn parent(self) -> TcHandle {
        TcHandle {
            major: u16::MAX,
            minor: match self {
                ClsactHook::Ingress => TcHandle::MIN_INGRESS,
                ClsactHook::Egress => TcHandle::MIN_EGRESS,
            },
        }
    }
}

/// A tc filter as the kernel lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filter {
    pub priority: u16,
    pub handle: u32,
    /// `bpf` for eBPF classifiers.
    pub kind: String,
    /// The eBPF program's name (cls_bpf's TCA_BPF_NAME).
    pub program: Option<String>,
}

/// The interface's `ARPHRD_*` type (include/uapi/linux/if_arp.h), from RTM_GETLINK in this
/// namespace (sysfs would answer for the namespace it was mounted in).
pub fn link_type(interface: &str) -> Result<u16> {
    let mut message = LinkMessage::default();
    message
        .attributes
        .push(LinkAttribute::IfName(interface.to_string()));
    let replies = request(RouteNetlinkMessage::GetLink(message), NLM_F_REQUEST)
        .with_context(|| format!("asking the kernel for the interface {interface}"))?;
    for reply in replies {
        if let RouteNetlinkMessage::NewLink(link) = reply {
            return Ok(u16::from(link.header.link_layer_type));
        }
    }
    bail!("the kernel did not describe the interface {interface}")
}

/// Whether devices of this type carry an Ethernet header at tc (Ethernet-like devices and
/// loopback); tun, WireGuard, PPP and IP tunnels start with the IP header.
pub fn has_ethernet_header(link_type: u16) -> bool {
    matches!(
        LinkLayerType::from(link_type),
        LinkLayerType::Ether | LinkLayerType::Loopback
    )
}

/// The filters on one hook of the interface's clsact qdisc. Empty when there is no qdisc.
pub fn filters(ifindex: u32, hook: ClsactHook) -> Result<Vec<Filter>> {
    let mut message = TcMessage::with_index(ifindex as i32);
    message.header.parent = hook.parent();
    let replies = match request(
        RouteNetlinkMessage::GetTrafficFilter(message),
        NLM_F_REQUEST | NLM_F_DUMP,
    ) {
        Ok(replies) => replies,
        // No clsact qdisc (EINVAL), or no such device (ENODEV).
        Err(error) if matches!(os_error(&error), Some(libc::EINVAL | libc::ENODEV)) => {
            return Ok(Vec::new())
        }
        Err(error) => return Err(error).context("listing tc filters"),
    };
    let mut filters = Vec::new();
    for reply in replies {
        let RouteNetlinkMessage::NewTrafficFilter(filter) = reply else {
            continue;
        };
        let mut kind = String::new();
        let mut program = None;
        for attribute in &filter.attributes {
            match attribute {
                TcAttribute::Kind(name) => kind = name.clone(),
                TcAttribute::Options(options) => {
                    for option in options {
                        if let TcOption::Bpf(TcFilterBpfOption::ProgName(name)) = option {
                            program = Some(name.clone());
                        }
                    }
                }
                _ => {}
            }
        }
        // The kernel also lists a bare entry per priority (the filter chain's head, handle 0).
        if u32::from(filter.header.handle) == 0 {
            continue;
        }
        filters.push(Filter {
            priority: (filter.header.info >> 16) as u16,
            handle: u32::from(filter.header.handle),
            kind,
            program,
        });
    }
    Ok(filters)
}

/// The kind of the interface's ingress-side qdisc (`clsact` or `ingress`), if it has one.
pub fn ingress_qdisc(ifindex: u32) -> Result<Option<String>> {
    let replies = request(
        RouteNetlinkMessage::GetQueueDiscipline(TcMessage::with_index(ifindex as i32)),
        NLM_F_REQUEST | NLM_F_DUMP,
    )
    .context("listing qdiscs")?;
    for reply in replies {
        let RouteNetlinkMessage::NewQueueDiscipline(qdisc) = reply else {
            continue;
        };
        // A dump may list every device's qdiscs.
        if qdisc.header.index != ifindex as i32 || qdisc.header.parent != TcHandle::CLSACT {
            continue;
        }
        for attribute in qdisc.attributes {
            if let TcAttribute::Kind(kind) = attribute {
                return Ok(Some(kind));
            }
        }
    }
    Ok(None)
}

/// Deletes one filter by priority and handle. `Ok(false)` when it was not there.
pub fn delete_filter(ifindex: u32, hook: ClsactHook, priority: u16, handle: u32) -> Result<bool> {
    let mut message = TcMessage::with_index(ifindex as i32);
    message.header.parent = hook.parent();
    message.header.handle = TcHandle::from(handle);
    message.header.info = (u32::from(priority) << 16) | u32::from(ETH_P_ALL_BE);
    delete(
        RouteNetlinkMessage::DelTrafficFilter(message),
        "deleting a tc filter",
    )
}

/// Deletes the interface's clsact qdisc (and with it any filter left on it). `Ok(false)`
/// when there was none.
pub fn delete_clsact(ifindex: u32) -> Result<bool> {
    let mut message = TcMessage::with_index(ifindex as i32);
    message.header.parent = TcHandle::CLSACT;
    message.header.handle = TcHandle {
        major: u16::MAX,
        minor: 0,
    };
    message.attributes.push(TcAttribute::Kind("clsact".into()));
    delete(
        RouteNetlinkMessage::DelQueueDiscipline(message),
        "deleting the clsact qdisc",
    )
}

/// Sends a delete request: `Ok(false)` when there was nothing to delete (the kernel says
/// ENOENT, or EINVAL or ENODEV for a qdisc or interface that is gone).
fn delete(message: RouteNetlinkMessage, what: &'static str) -> Result<bool> {
    match request(message, NLM_F_REQUEST | NLM_F_ACK) {
        Ok(_) => Ok(true),
        Err(error)
            if matches!(
                os_error(&error),
                Some(libc::ENOENT | libc::EINVAL | libc::ENODEV)
            ) =>
        {
            Ok(false)
        }
        Err(error) => Err(error).context(what),
    }
}

fn os_error(error: &anyhow::Error) -> Option<i32> {
    error
        .downcast_ref::<io::Error>()
        .and_then(io::Error::raw_os_error)
}

/// Sends one request and collects the replies until the kernel's acknowledgement or the end
/// of a dump. A refusal comes back as an `io::Error` with the kernel's errno.
fn request(message: RouteNetlinkMessage, flags: u16) -> Result<Vec<RouteNetlinkMessage>> {
    let mut socket = Socket::new(NETLINK_ROUTE).context("opening a route netlink socket")?;
    socket.bind_auto().context("binding a netlink socket")?;
    socket
        .connect(&SocketAddr::new(0, 0))
        .context("connecting a netlink socket")?;
    let mut header = NetlinkHeader::default();
    header.flags = flags;
    header.sequence_number = 1;
    let mut request = NetlinkMessage::new(header, NetlinkPayload::from(message));
    request.finalize();
    let mut bytes = vec![0; request.buffer_len()];
    request.serialize(&mut bytes);
    socket
        .send(&bytes, 0)
        .context("sending a netlink request")?;

    let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
    let mut replies = Vec::new();
    loop {
        let (datagram, _) = socket
            .recv_from_full()
            .context("reading the kernel's netlink reply")?;
        let mut offset = 0;
        while offset < datagram.len() {
            let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&datagram[offset..])
                .context("decoding the kernel's netlink reply")?;
            let length = reply.header.length as usize;
            match reply.payload {
                NetlinkPayload::Done(_) => return Ok(replies),
                NetlinkPayload::Error(error) => match error.code {
                    None => return Ok(replies),
                    Some(_) => return Err(anyhow::Error::new(error.to_io())),
                },
                NetlinkPayload::InnerMessage(inner) => {
                    replies.push(inner);
                    if !dump && flags & NLM_F_ACK == 0 {
                        return Ok(replies);
                    }
                }
                _ => {}
            }
            if length == 0 {
                break;
            }
            offset += length;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_link_types_carry_an_ethernet_header() {
        // include/uapi/linux/if_arp.h
        assert!(has_ethernet_header(1)); // ARPHRD_ETHER: veth, bridges, wlan
        assert!(has_ethernet_header(772)); // ARPHRD_LOOPBACK
        assert!(!has_ethernet_header(65534)); // ARPHRD_NONE: tun, WireGuard
        assert!(!has_ethernet_header(512)); // ARPHRD_PPP
        assert!(!has_ethernet_header(519)); // ARPHRD_RAWIP
        assert!(!has_ethernet_header(768)); // ARPHRD_TUNNEL: ipip
    }
}
