//! The information elements fwlog exports: IANA's (RFC 7012, RFC 5103's reverse elements) and
//! fwlog's own, enterprise-specific ones, with the RFC 5610 type records that let a collector
//! learn the latter's names and types from the stream itself.

/// An information element: its number, and the private enterprise number for non-IANA ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Element {
    pub id: u16,
    pub enterprise: Option<u32>,
    /// Octets on the wire; [`VARIABLE`] for strings.
    pub length: u16,
}

/// RFC 7011 section 7: a field whose length comes with each value.
pub const VARIABLE: u16 = 65535;
/// RFC 5103: reverse-direction elements are IANA's numbers under this enterprise number.
pub const REVERSE_PEN: u32 = 29305;

const fn iana(id: u16, length: u16) -> Element {
    Element {
        id,
        enterprise: None,
        length,
    }
}

const fn reverse(id: u16, length: u16) -> Element {
    Element {
        id,
        enterprise: Some(REVERSE_PEN),
        length,
    }
}

pub const OCTET_DELTA_COUNT: Element = iana(1, 8);
pub const PACKET_DELTA_COUNT: Element = iana(2, 8);
pub const REVERSE_OCTET_DELTA_COUNT: Element = reverse(1, 8);
pub const REVERSE_PACKET_DELTA_COUNT: Element = reverse(2, 8);
pub const PROTOCOL_IDENTIFIER: Element = iana(4, 1);
pub const TCP_CONTROL_BITS: Element = iana(6, 2);
pub const SOURCE_TRANSPORT_PORT: Element = iana(7, 2);
pub const SOURCE_IPV4_ADDRESS: Element = iana(8, 4);
pub const INGRESS_INTERFACE: Element = iana(10, 4);
pub const DESTINATION_TRANSPORT_PORT: Element = iana(11, 2);
pub const DESTINATION_IPV4_ADDRESS: Element = iana(12, 4);
pub const SOURCE_IPV6_ADDRESS: Element = iana(27, 16);
pub const DESTINATION_IPV6_ADDRESS: Element = iana(28, 16);
pub const ICMP_TYPE_CODE_IPV4: Element = iana(32, 2);
pub const FLOW_DIRECTION: Element = iana(61, 1);
pub const INTERFACE_NAME: Element = iana(82, VARIABLE);
pub const FLOW_END_REASON: Element = iana(136, 1);
pub const ICMP_TYPE_CODE_IPV6: Element = iana(139, 2);
pub const FLOW_START_MILLISECONDS: Element = iana(152, 8);
pub const FLOW_END_MILLISECONDS: Element = iana(153, 8);
pub const FIREWALL_EVENT: Element = iana(233, 1);

/// The RFC 5610 Information Element Type Options Template's elements, in the order libfixbuf
/// (`ie_type_spec` in its infomodel.c) requires all of: scope PEN and element id, then type,
/// semantics, units, range, name and description.
pub const TYPE_RECORD_SCOPE: [Element; 2] = [iana(346, 4), iana(303, 2)];
pub const TYPE_RECORD_OPTIONS: [Element; 7] = [
    iana(339, 1),        // informationElementDataType
    iana(344, 1),        // informationElementSemantics
    iana(345, 2),        // informationElementUnits
    iana(342, 8),        // informationElementRangeBegin
    iana(343, 8),        // informationElementRangeEnd
    iana(341, VARIABLE), // informationElementName
    iana(340, VARIABLE), // informationElementDescription
];

/// RFC 7012 section 3.1 data types (IANA "IPFIX Information Element Data Types").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataType {
    Unsigned32 = 3,
    String = 13,
}

/// RFC 7012 section 3.2 data type semantics (IANA "IPFIX Information Element Semantics").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Semantics {
    Default = 0,
    Identifier = 6,
}

/// One of fwlog's enterprise-specific elements, numbered under the configured PEN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extra {
    pub id: u16,
    pub name: &'static str,
    pub data_type: DataType,
    pub semantics: Semantics,
    pub description: &'static str,
}

impl Extra {
    pub fn element(&self, pen: u32) -> Element {
        Element {
            id: self.id,
            enterprise: Some(pen),
            length: match self.data_type {
                DataType::Unsigned32 => 4,
                DataType::String => VARIABLE,
            },
        }
    }
}

const fn extra(
    id: u16,
    name: &'static str,
    data_type: DataType,
    semantics: Semantics,
    description: &'static str,
) -> Extra {
    Extra {
        id,
        name,
        data_type,
        semantics,
        description,
    }
}

use DataType::{String as Text, Unsigned32};
use Semantics::{Default as Plain, Identifier};

pub const PROCESS_ID: Extra = extra(
    1,
    "fwlogProcessId",
    Unsigned32,
    Identifier,
    "process id (thread group) that opened or accepts the flow",
);
pub const PROCESS_NAME: Extra = extra(
    2,
    "fwlogProcessName",
    Text,
    Plain,
    "its command name as the kernel keeps it (comm)",
);
pub const PROCESS_EXECUTABLE: Extra = extra(
    3,
    "fwlogProcessExecutable",
    Text,
    Plain,
    "its executable (/proc/PID/exe)",
);
pub const PROCESS_USER_ID: Extra = extra(
    4,
    "fwlogProcessUserId",
    Unsigned32,
    Identifier,
    "its user id",
);
pub const PROCESS_USER_NAME: Extra = extra(5, "fwlogProcessUserName", Text, Plain, "its user name");
pub const PROCESS_UNIT: Extra = extra(
    6,
    "fwlogProcessUnit",
    Text,
    Plain,
    "its systemd unit, from its cgroup",
);
pub const PROCESS_CONTAINER: Extra = extra(
    7,
    "fwlogProcessContainer",
    Text,
    Plain,
    "its Docker/Podman container id, from its cgroup",
);
pub const COMMUNITY_ID: Extra = extra(
    8,
    "fwlogCommunityId",
    Text,
    Identifier,
    "Community ID v1 (seed 0) of the connection",
);
pub const SOURCE_HOST_NAME: Extra = extra(
    9,
    "fwlogSourceHostName",
    Text,
    Plain,
    "name of the source address, learnt from DNS answers",
);
pub const DESTINATION_HOST_NAME: Extra = extra(
    10,
    "fwlogDestinationHostName",
    Text,
    Plain,
    "name of the destination address, learnt from DNS answers",
);
pub const OBSERVER_HOST_NAME: Extra = extra(
    11,
    "fwlogObserverHostName",
    Text,
    Plain,
    "name of the host fwlog runs on (its lines' host)",
);
pub const OBSERVER_HOST_ID: Extra = extra(
    12,
    "fwlogObserverHostId",
    Text,
    Identifier,
    "machine id of the host fwlog runs on (its lines' host_id)",
);
pub const FIREWALL_ACTION: Extra = extra(
    13,
    "fwlogFirewallAction",
    Text,
    Plain,
    "what the LOG_AND_* chain did: accept, drop or reject",
);

/// Every enterprise element, in id order: each gets an RFC 5610 type record.
pub const EXTRAS: [Extra; 13] = [
    PROCESS_ID,
    PROCESS_NAME,
    PROCESS_EXECUTABLE,
    PROCESS_USER_ID,
    PROCESS_USER_NAME,
    PROCESS_UNIT,
    PROCESS_CONTAINER,
    COMMUNITY_ID,
    SOURCE_HOST_NAME,
    DESTINATION_HOST_NAME,
    OBSERVER_HOST_NAME,
    OBSERVER_HOST_ID,
    FIREWALL_ACTION,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enterprise_elements_are_numbered_once_in_order() {
        for (index, extra) in EXTRAS.iter().enumerate() {
            assert_eq!(usize::from(extra.id), index + 1, "{}", extra.name);
            assert!(extra.name.starts_with("fwlog"), "{}", extra.name);
        }
    }
}
