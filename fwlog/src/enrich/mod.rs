//! What fwlog adds to an event beyond the packet: the process behind a local socket, host names
//! learnt from DNS answers on the wire, and the Community ID flow hash.

pub mod community_id;
pub mod listener;
pub mod names;
pub mod process;

use fwlog_common::{
    event::{Action, VerdictEvent, VERDICT_HAS_PROCESS},
    flow::{FlowStats, SEEN_INGRESS},
};

use crate::record::{Connection, Extras, ProcessView};

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

    /// Extras for a verdict on `event`, whose connection is `connection`.
    pub fn verdict(&mut self, event: &VerdictEvent, connection: Option<&Connection>) -> Extras {
        let Some(c) = connection else {
            return Extras::default();
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
            process: if event.flags & VERDICT_HAS_PROCESS != 0 {
                Some(self.processes.view(&event.process))
            } else {
                self.inbound_listener(event, c)
            },
        }
    }

    /// For an accepted connection coming in, the process listening on its port.
    fn inbound_listener(&mut self, event: &VerdictEvent, c: &Connection) -> Option<ProcessView> {
        let accepted_inbound = self.name_processes
            && event.ifindex != 0
            && Action::from_u8(event.action) == Some(Action::Accept);
        if !accepted_inbound {
            return None;
        }
        let info = self
            .listeners
            .find(c.protocol.0, c.server, c.server_port()?)?;
        Some(self.processes.view(&info))
    }

    /// Extras for a flow (`connection` is from the client's side, the side that opened it).
    pub fn flow(&mut self, connection: Option<&Connection>, stats: &FlowStats) -> Extras {
        let Some(c) = connection else {
            return Extras::default();
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
            process: if stats.process.pid != 0 {
                Some(self.processes.view(&stats.process))
            } else if self.name_processes
                && stats.first_seen == SEEN_INGRESS
                && Action::from_u8(stats.action) == Some(Action::Accept)
            {
                c.server_port()
                    .and_then(|port| self.listeners.find(c.protocol.0, c.server, port))
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
