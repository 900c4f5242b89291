//! Turning what the kernel sent into fwlog's records: the one place where a connection's sides,
//! addresses, direction, interface name and extras are worked out, once per event.

use fwlog_common::{
    event::VerdictEvent,
    flow::{FlowKey, FlowStats, SEEN_EGRESS},
};

use super::{
    clock::BootClock, direction::LocalAddresses, flows::EndedFlow, interface_names::InterfaceNames,
};
use crate::{
    enrich::Enricher,
    record::{Connection, FlowContext, FlowRecord, VerdictRecord},
    values::Direction,
};

/// What building a record needs to know about this machine, and the caches that make it cheap.
pub struct RecordBuilder {
    pub clock: BootClock,
    names: InterfaceNames,
    local: LocalAddresses,
    pub enricher: Enricher,
}

impl RecordBuilder {
    pub fn new(enricher: Enricher) -> Self {
        RecordBuilder {
            clock: BootClock::new(),
            names: InterfaceNames::default(),
            local: LocalAddresses::default(),
            enricher,
        }
    }

    pub fn verdict(&mut self, event: &VerdictEvent) -> VerdictRecord<'_> {
        let connection = Connection::of_packet(&event.packet);
        let direction = self
            .local
            .direction(event.ifindex, connection.map(|c| c.server));
        let extras = self.enricher.verdict(event, connection.as_ref());
        VerdictRecord::new(
            event,
            connection,
            self.clock.unix_ns(event.timestamp_ns),
            direction,
            self.names.name(event.ifindex),
            extras,
        )
    }

    pub fn flow(&mut self, ended: &EndedFlow) -> FlowRecord<'_> {
        let EndedFlow { key, stats, reason } = ended;
        let (connection, counts) = Connection::of_flow(key, stats);
        let direction = self.flow_direction(key, stats, connection.as_ref());
        let extras = self.enricher.flow(connection.as_ref(), stats);
        let context = FlowContext {
            start_unix_ns: self.clock.unix_ns(stats.first_ns),
            end_unix_ns: self.clock.unix_ns(stats.last_ns),
            reason: *reason,
            direction,
            iface: self.names.name(key.ifindex),
        };
        FlowRecord::new(key, stats, (connection, counts), context, extras)
    }

    /// Outbound when the first packet left through tc egress; else inbound, or forward when
    /// the server is not this machine.
    fn flow_direction(
        &mut self,
        key: &FlowKey,
        stats: &FlowStats,
        connection: Option<&Connection>,
    ) -> Direction {
        if stats.first_seen == SEEN_EGRESS {
            return Direction::Outbound;
        }
        self.local
            .direction(key.ifindex, connection.map(|c| c.server))
    }
}
