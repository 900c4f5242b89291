//! What the collector counts for `/metrics`, per record it builds: plain integers in arrays
//! indexed by the labels' few values, so counting costs an add, and the label sets are fixed
//! (no address or port ever becomes a label).

use fwlog_common::{event::Action, flow::EndReason, packet::PROTOCOL_NAMES};

use crate::{
    record::{Connection, FlowRecord, VerdictRecord},
    values::{Direction, Protocol},
};

/// `action` label values: the chain's action, or `none` for a flow no chain saw.
pub const ACTIONS: [&str; 4] = ["accept", "drop", "reject", "none"];
pub const DIRECTIONS: [&str; 3] = ["inbound", "outbound", "forward"];
/// `proto` label values: fwlog's word for each protocol of fwlog-common's one table, and
/// `other` for the rest (numbers would make up to 256 series).
pub const PROTOS: usize = PROTOCOL_NAMES.len() + 1;
pub const END_REASONS: [EndReason; 5] = [
    EndReason::Fin,
    EndReason::Rst,
    EndReason::Idle,
    EndReason::Evicted,
    EndReason::Exit,
];

/// Records by action, direction and protocol.
pub type ByLabels = [[[u64; PROTOS]; DIRECTIONS.len()]; ACTIONS.len()];

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub verdicts: ByLabels,
    pub flows: ByLabels,
    /// Flows ended, by [`END_REASONS`].
    pub flows_ended: [u64; END_REASONS.len()],
}

impl Counts {
    pub fn verdict(&mut self, record: &VerdictRecord) {
        let (a, d, p) = labels(record.action, record.direction, record.connection.as_ref());
        self.verdicts[a][d][p] += 1;
    }

    pub fn flow(&mut self, record: &FlowRecord) {
        let (a, d, p) = labels(record.action, record.direction, record.connection.as_ref());
        self.flows[a][d][p] += 1;
        if let Some(reason) = END_REASONS.iter().position(|r| *r == record.reason) {
            self.flows_ended[reason] += 1;
        }
    }
}

fn labels(
    action: Option<Action>,
    direction: Direction,
    connection: Option<&Connection>,
) -> (usize, usize, usize) {
    let action = match action {
        Some(Action::Accept) => 0,
        Some(Action::Drop) => 1,
        Some(Action::Reject) => 2,
        None => 3,
    };
    let direction = match direction {
        Direction::Inbound => 0,
        Direction::Outbound => 1,
        Direction::Forward => 2,
    };
    (
        action,
        direction,
        proto_index(connection.map(|c| c.protocol)),
    )
}

fn proto_index(protocol: Option<Protocol>) -> usize {
    protocol
        .and_then(|Protocol(number)| PROTOCOL_NAMES.iter().position(|(n, _, _)| *n == number))
        .unwrap_or(PROTOS - 1)
}

/// The `proto` label of index `index` in [`ByLabels`].
pub fn proto_label(index: usize) -> &'static str {
    PROTOCOL_NAMES
        .get(index)
        .map_or("other", |(_, name, _)| *name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::test_records::{
        curl_extras, inbound_tcp_syn, inbound_verdict, outbound_flow, outbound_tcp_flow,
    };

    #[test]
    fn records_are_counted_under_their_labels() {
        let mut counts = Counts::default();
        let syn = inbound_tcp_syn();
        counts.verdict(&inbound_verdict(&syn, &curl_extras()));
        counts.verdict(&inbound_verdict(&syn, &curl_extras()));
        let (key, stats) = outbound_tcp_flow();
        counts.flow(&outbound_flow(&key, &stats, &curl_extras()));
        assert_eq!(counts.verdicts[1][0][0], 2, "drop, inbound, tcp");
        assert_eq!(counts.flows[0][1][0], 1, "accept, outbound, tcp");
        assert_eq!(counts.flows_ended, [1, 0, 0, 0, 0], "fin");
        assert_eq!(proto_index(Some(Protocol(47))), PROTOS - 1, "gre is other");
        assert_eq!(proto_label(proto_index(Some(Protocol(58)))), "icmpv6");
        assert_eq!(proto_label(proto_index(Some(Protocol(6)))), "tcp");
        assert_eq!(proto_label(proto_index(None)), "other");
    }
}
