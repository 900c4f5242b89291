//! What fwlog adds to an event beyond the packet: the process behind a local socket, host names
//! learnt from DNS answers on the wire, and the Community ID flow hash.

pub mod community_id;
pub mod listener;
pub mod names;
pub mod process;

use fwlog_common::{
    event::{Action, VerdictEvent, VERDICT_HAS_PROCESS},
    flow::{FlowKey, FlowStats, SEEN_INGRESS, SIDE_A},
    packet::{PKT_HAS_ICMP, PKT_HAS_PORTS},
};

use crate::{
    record::{Extras, ProcessView},
    values::Protocol,
};

/// Turns kernel records into [`Extras`], keeping the caches that make it cheap.
pub struct Enricher {
    /// Name processes at all (`--no-process` turns it off).
    name_processes: bool,
    processes: process::ProcessCache,
    names: names::NameCache,
    listeners: listener::ListenerLookup,
}

impl Enricher {
    pub fn new(name_processes: bool) -> Self {
        Enricher {
            name_processes,
            processes: process::ProcessCache::default(),
            names: names::NameCache::default(),
            listeners: listener::ListenerLookup::default(),
        }
    }

    /// Learns address → name from a DNS response the tc program copied.
    pub fn learn_dns(&mut self, message: &[u8]) {
        self.names.learn(message);
    }

    pub fn verdict(&mut self, event: &VerdictEvent) -> Extras {
        let packet = &event.packet;
        let Some((src, dest)) = packet.addresses() else {
            return Extras::default();
        };
        let ports = if packet.flags & PKT_HAS_PORTS != 0 {
            Some((packet.src_port, packet.dst_port))
        } else if packet.flags & PKT_HAS_ICMP != 0 {
            Some((packet.icmp_type.into(), packet.icmp_code.into()))
        } else {
            None
        };
        Extras {
            community_id: community_id::community_id(src, dest, packet.proto, ports),
            src_host: self.names.name(src),
            dest_host: self.names.name(dest),
            process: if event.flags & VERDICT_HAS_PROCESS != 0 {
                Some(self.processes.view(&event.process))
            } else {
                self.inbound_listener(event, dest)
            },
        }
    }

    /// For an accepted connection coming in, the process listening on its port.
    fn inbound_listener(
        &mut self,
        event: &VerdictEvent,
        dest: std::net::IpAddr,
    ) -> Option<ProcessView> {
        let accepted_inbound = self.name_processes
            && event.ifindex != 0
            && Action::from_u8(event.action) == Some(Action::Accept)
            && event.packet.flags & PKT_HAS_PORTS != 0;
        if !accepted_inbound {
            return None;
        }
        let info = self
            .listeners
            .find(event.packet.proto, dest, event.packet.dst_port)?;
        Some(self.processes.view(&info))
    }

    /// Extras for a flow, from the client's side (the side that opened it).
    pub fn flow(&mut self, key: &FlowKey, stats: &FlowStats) -> Extras {
        let to_ip = |addr: &[u8; 16]| -> std::net::IpAddr {
            if key.ip_version == 4 {
                [addr[0], addr[1], addr[2], addr[3]].into()
            } else {
                (*addr).into()
            }
        };
        let (client, server) = if stats.opener == SIDE_A {
            (
                (to_ip(&key.addr_a), key.port_a),
                (to_ip(&key.addr_b), key.port_b),
            )
        } else {
            (
                (to_ip(&key.addr_b), key.port_b),
                (to_ip(&key.addr_a), key.port_a),
            )
        };
        let proto = Protocol(key.proto);
        let ports = if proto.is_icmp() {
            Some((stats.icmp_type.into(), stats.icmp_code.into()))
        } else if proto.has_ports() {
            Some((client.1, server.1))
        } else {
            None
        };
        Extras {
            community_id: community_id::community_id(client.0, server.0, key.proto, ports),
            src_host: self.names.name(client.0),
            dest_host: self.names.name(server.0),
            process: if stats.process.pid != 0 {
                Some(self.processes.view(&stats.process))
            } else if self.name_processes
                && stats.first_seen == SEEN_INGRESS
                && Action::from_u8(stats.action) == Some(Action::Accept)
            {
                self.listeners
                    .find(key.proto, server.0, server.1)
                    .map(|info| self.processes.view(&info))
            } else {
                None
            },
        }
    }
}

impl Default for Enricher {
    fn default() -> Self {
        Self::new(true)
    }
}
