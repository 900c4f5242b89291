//! What fwlog adds to an event beyond the packet: the process behind a local socket, host names
//! learnt from the answers to the host's DNS questions, and the Community ID flow hash.

pub mod community_id;
pub mod listener;
pub mod names;
pub mod process;

use fwlog_common::{
    event::{Action, VerdictEvent, VERDICT_HAS_PROCESS},
    flow::{FlowStats, SEEN_INGRESS},
    packet::{PacketInfo, IPPROTO_UDP, PKT_HAS_PORTS},
    process::ProcessInfo,
};

use crate::record::{Connection, Extras};

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

    /// Learns from a DNS question the host sent or an answer to one (`seen`), as tc copied it.
    pub fn learn_dns(&mut self, packet: &PacketInfo, seen: u8, message: &[u8]) {
        self.names.learn(packet, seen, message);
    }

    /// Extras for a verdict on `event`, whose connection is `connection`.
    pub fn verdict(&mut self, event: &VerdictEvent, connection: Option<&Connection>) -> Extras {
        // A DNS answer the firewall refused teaches no name (tc copied it before the verdict).
        let refused = matches!(
            Action::from_u8(event.action),
            Some(Action::Drop | Action::Reject)
        );
        let packet = &event.packet;
        if refused
            && packet.proto == IPPROTO_UDP
            && packet.flags & PKT_HAS_PORTS != 0
            && packet.src_port == names::DNS_PORT
        {
            self.names.dropped(&event.packet);
        }
        let seen = (event.flags & VERDICT_HAS_PROCESS != 0).then_some(&event.process);
        let accepted_inbound =
            event.ifindex != 0 && Action::from_u8(event.action) == Some(Action::Accept);
        self.extras(connection, seen, accepted_inbound)
    }

    /// Extras for a flow (`connection` is from the client's side, the side that opened it).
    pub fn flow(&mut self, connection: Option<&Connection>, stats: &FlowStats) -> Extras {
        let seen = (stats.process.pid != 0).then_some(&stats.process);
        let accepted_inbound = stats.first_seen == SEEN_INGRESS
            && Action::from_u8(stats.action) == Some(Action::Accept);
        self.extras(connection, seen, accepted_inbound)
    }

    /// The Community ID, the host names, and the process: the one the kernel saw use the
    /// socket, else, for an accepted inbound connection, the one listening on its port.
    fn extras(
        &mut self,
        connection: Option<&Connection>,
        seen: Option<&ProcessInfo>,
        accepted_inbound: bool,
    ) -> Extras {
        let Some(c) = connection else {
            return Extras::default();
        };
        let process = match seen {
            Some(info) => Some(self.processes.view(info)),
            None if self.name_processes && accepted_inbound => c
                .server_port()
                .and_then(|port| self.listeners.find(c.protocol.0, c.server, port))
                .map(|info| self.processes.view(&info)),
            None => None,
        };
        Extras {
            community_id: community_id::community_id(
                c.client,
                c.server,
                c.protocol.0,
                c.ports_or_icmp(),
            ),
            src_host: self.names.name(c.client),
            dest_host: self.names.name(c.server),
            process,
        }
    }
}

impl Default for Enricher {
    fn default() -> Self {
        Self::new(true)
    }
}
