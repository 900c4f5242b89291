//! Ended flows → IPFIX messages (RFC 7011), with netflow_parser's message types and writer.
//!
//! Each flow carries only the elements it has a value for (a flow without a process has no
//! process elements, ICMP has no ports), because a template's string fields cannot be left
//! empty through netflow_parser's writer (it refuses zero-length values) and an empty string
//! is not "unknown". So each distinct element list gets its own template, made on first use
//! and announced in the message that first needs it; a handful exist in practice (IPv4/IPv6 ×
//! ports/ICMP × with/without a process).

use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
};

use anyhow::{anyhow, Result};
use fwlog_common::{event::Action, flow::EndReason};
use netflow_parser::variable_versions::{
    field_value::{DataNumber, FieldValue},
    ipfix::{
        lookup::IPFixField, Data, FlowSet, FlowSetBody, FlowSetHeader, Header, IPFix, OptionsData,
        OptionsTemplate, Template, TemplateField,
    },
};

use super::{
    elements::{self as ie, Element, Extra, EXTRAS, VARIABLE},
    flow::ExportFlow,
};
use crate::{host::HostIdentity, values::Direction};

/// RFC 7011 section 3.1.
const VERSION: u16 = 10;
const TEMPLATE_SET_ID: u16 = 2;
const OPTIONS_TEMPLATE_SET_ID: u16 = 3;
/// The RFC 5610 type records' options template; data templates are numbered after it.
const TYPE_TEMPLATE_ID: u16 = 256;
const FIRST_DATA_TEMPLATE_ID: u16 = 257;
const MESSAGE_HEADER_LEN: usize = 16;
const SET_HEADER_LEN: usize = 4;

/// What the exporter sends with, for its whole life.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncoderOptions {
    /// Private enterprise number of fwlog's own elements.
    pub enterprise: u32,
    pub observation_domain: u32,
    pub host: HostIdentity,
}

/// Turns flows into messages and keeps the templates and the sequence number of one
/// transport session.
pub struct Encoder {
    options: EncoderOptions,
    templates: HashMap<Vec<Element>, u16>,
    /// The element lists again, by template id − [`FIRST_DATA_TEMPLATE_ID`].
    layouts: Vec<Vec<Element>>,
    /// Templates this session's collector has been told about.
    announced: HashSet<u16>,
    types_announced: bool,
    /// Data records sent in this session before the next message (RFC 7011 section 3.1).
    sequence: u32,
}

/// One data record: its fields in template order.
type Record = Vec<(IPFixField, FieldValue)>;

/// An encoded message and how many flows it carries.
#[derive(Debug)]
pub struct Message {
    pub bytes: Vec<u8>,
    pub flows: u32,
}

/// One message being filled.
struct Pending {
    new_templates: Vec<u16>,
    /// Data sets in order of first use: template id and records.
    sets: Vec<(u16, Vec<Record>)>,
    records: u32,
    /// Bytes so far, padding counted at its most.
    size: usize,
}

impl Pending {
    fn new() -> Self {
        Pending {
            new_templates: Vec::new(),
            sets: Vec::new(),
            records: 0,
            size: MESSAGE_HEADER_LEN,
        }
    }
}

impl Encoder {
    pub fn new(options: EncoderOptions) -> Self {
        Encoder {
            options,
            templates: HashMap::new(),
            layouts: Vec::new(),
            announced: HashSet::new(),
            types_announced: false,
            sequence: 0,
        }
    }

    /// A new transport session (a TCP reconnect): templates and type records are announced
    /// again and the sequence starts over.
    pub fn new_session(&mut self) {
        self.announced.clear();
        self.types_announced = false;
        self.sequence = 0;
    }

    /// Over UDP, templates expire at the collector: announce every one again with the next
    /// messages (RFC 7011 section 8.4).
    pub fn refresh_templates(&mut self) {
        self.announced.clear();
        self.types_announced = false;
    }

    /// The messages that carry `flows`, each at most `budget` bytes unless a single record is
    /// larger; templates not announced yet go in the first message that needs them. Without
    /// flows: the type records and every template not announced (a refresh).
    pub fn encode(
        &mut self,
        flows: &[ExportFlow],
        budget: usize,
        export_time: u32,
    ) -> Result<Vec<Message>> {
        let mut messages = Vec::new();
        if !self.types_announced {
            messages.push(self.type_records_message(export_time)?);
            self.types_announced = true;
        }
        if flows.is_empty() {
            let mut pending = Pending::new();
            pending.new_templates = (0..self.layouts.len())
                .map(|index| FIRST_DATA_TEMPLATE_ID + index as u16)
                .filter(|id| !self.announced.contains(id))
                .collect();
            if !pending.new_templates.is_empty() {
                messages.push(self.finish_message(pending, export_time)?);
            }
            return Ok(messages);
        }
        let mut pending = Pending::new();
        for flow in flows {
            let fields = self.fields(flow);
            let elements: Vec<Element> = fields.iter().map(|(element, _)| *element).collect();
            let id = self.template_id(elements)?;
            let record_size = record_size(&fields);
            if pending.records > 0 && pending.size + self.growth(&pending, id, record_size) > budget
            {
                let full = std::mem::replace(&mut pending, Pending::new());
                messages.push(self.finish_message(full, export_time)?);
            }
            pending.size += self.growth(&pending, id, record_size);
            if !self.announced.contains(&id) && !pending.new_templates.contains(&id) {
                pending.new_templates.push(id);
            }
            let record = fields
                .into_iter()
                .map(|(element, value)| (IPFixField::new(element.id, element.enterprise), value))
                .collect();
            match pending.sets.iter_mut().find(|(set, _)| *set == id) {
                Some((_, records)) => records.push(record),
                None => pending.sets.push((id, vec![record])),
            }
            pending.records += 1;
        }
        if pending.records > 0 {
            messages.push(self.finish_message(pending, export_time)?);
        }
        Ok(messages)
    }

    /// How much a record of `record_size` bytes for template `id` adds to `pending`: the
    /// record, its template when not announced yet, and a set (header and the most padding)
    /// when it is the first record for `id`. Each new template is counted with a set header
    /// of its own, a few bytes more than it takes.
    fn growth(&self, pending: &Pending, id: u16, record_size: usize) -> usize {
        let template = if self.announced.contains(&id) || pending.new_templates.contains(&id) {
            0
        } else {
            template_size(self.elements_of(id)) + SET_HEADER_LEN
        };
        let set = if pending.sets.iter().any(|(set, _)| *set == id) {
            0
        } else {
            SET_HEADER_LEN + 3
        };
        record_size + template + set
    }

    /// The template of `elements`, made when first asked for. There is one per combination of
    /// optional elements, fewer than 2^15 of the 65 279 ids there are.
    fn template_id(&mut self, elements: Vec<Element>) -> Result<u16> {
        if let Some(id) = self.templates.get(&elements) {
            return Ok(*id);
        }
        let id = u16::try_from(usize::from(FIRST_DATA_TEMPLATE_ID) + self.layouts.len())
            .map_err(|_| anyhow!("out of IPFIX template ids"))?;
        self.layouts.push(elements.clone());
        self.templates.insert(elements, id);
        Ok(id)
    }

    fn elements_of(&self, id: u16) -> &[Element] {
        id.checked_sub(FIRST_DATA_TEMPLATE_ID)
            .and_then(|index| self.layouts.get(usize::from(index)))
            .map_or(&[], Vec::as_slice)
    }

    fn finish_message(&mut self, pending: Pending, export_time: u32) -> Result<Message> {
        let mut flowsets = Vec::new();
        if !pending.new_templates.is_empty() {
            let templates = pending
                .new_templates
                .iter()
                .map(|id| template(*id, self.elements_of(*id)))
                .collect();
            flowsets.push(flow_set(TEMPLATE_SET_ID, FlowSetBody::Templates(templates)));
        }
        for (id, records) in pending.sets {
            let lengths = self.elements_of(id).iter().map(|e| e.length).collect();
            let data =
                Data::with_template_field_lengths(records, lengths).map_err(|e| anyhow!(e))?;
            flowsets.push(flow_set(id, FlowSetBody::Data(data)));
        }
        self.announced.extend(pending.new_templates);
        let bytes = self.message(flowsets, pending.records, export_time)?;
        Ok(Message {
            bytes,
            flows: pending.records,
        })
    }

    /// The RFC 5610 options template and one type record per enterprise element, so a
    /// collector (libfixbuf's `ipfixDump --rfc5610`, for one) learns their names and types.
    fn type_records_message(&mut self, export_time: u32) -> Result<Message> {
        let fields: Vec<TemplateField> = ie::TYPE_RECORD_SCOPE
            .iter()
            .chain(&ie::TYPE_RECORD_OPTIONS)
            .map(template_field)
            .collect();
        let lengths = fields.iter().map(|f| f.field_length).collect();
        let options = OptionsTemplate {
            template_id: TYPE_TEMPLATE_ID,
            field_count: fields.len() as u16,
            scope_field_count: ie::TYPE_RECORD_SCOPE.len() as u16,
            fields,
        };
        let pen = self.options.enterprise;
        let records: Vec<Record> = EXTRAS.iter().map(|extra| type_record(pen, extra)).collect();
        let count = records.len() as u32;
        let data =
            OptionsData::with_template_field_lengths(records, lengths).map_err(|e| anyhow!(e))?;
        let flowsets = vec![
            flow_set(
                OPTIONS_TEMPLATE_SET_ID,
                FlowSetBody::OptionsTemplate(options),
            ),
            flow_set(TYPE_TEMPLATE_ID, FlowSetBody::OptionsData(data)),
        ];
        let bytes = self.message(flowsets, count, export_time)?;
        Ok(Message { bytes, flows: 0 })
    }

    fn message(
        &mut self,
        flowsets: Vec<FlowSet>,
        records: u32,
        export_time: u32,
    ) -> Result<Vec<u8>> {
        let message = IPFix {
            header: Header {
                version: VERSION,
                length: 0,
                export_time,
                sequence_number: self.sequence,
                observation_domain_id: self.options.observation_domain,
            },
            flowsets,
        };
        self.sequence = self.sequence.wrapping_add(records);
        message
            .to_be_bytes()
            .map_err(|e| anyhow!("encoding an IPFIX message: {e}"))
    }

    /// The elements `flow` has values for, in template order.
    fn fields(&self, flow: &ExportFlow) -> Vec<(Element, FieldValue)> {
        let connection = &flow.connection;
        let mut fields = Vec::with_capacity(32);
        match (connection.client, connection.server) {
            (IpAddr::V4(client), IpAddr::V4(server)) => {
                fields.push((ie::SOURCE_IPV4_ADDRESS, FieldValue::Ip4Addr(client)));
                fields.push((ie::DESTINATION_IPV4_ADDRESS, FieldValue::Ip4Addr(server)));
            }
            (client, server) => {
                fields.push((ie::SOURCE_IPV6_ADDRESS, FieldValue::Ip6Addr(v6(client))));
                fields.push((
                    ie::DESTINATION_IPV6_ADDRESS,
                    FieldValue::Ip6Addr(v6(server)),
                ));
            }
        }
        if let Some((client, server)) = connection.ports {
            fields.push((ie::SOURCE_TRANSPORT_PORT, u16_value(client)));
            fields.push((ie::DESTINATION_TRANSPORT_PORT, u16_value(server)));
        }
        fields.push((ie::PROTOCOL_IDENTIFIER, u8_value(connection.protocol.0)));
        if let Some((icmp_type, code)) = connection.icmp {
            let element = if connection.client.is_ipv4() {
                ie::ICMP_TYPE_CODE_IPV4
            } else {
                ie::ICMP_TYPE_CODE_IPV6
            };
            fields.push((
                element,
                u16_value(u16::from(icmp_type) << 8 | u16::from(code)),
            ));
        }
        if let Some(flags) = flow.tcp_flags {
            fields.push((ie::TCP_CONTROL_BITS, u16_value(flags.into())));
        }
        let counts = &flow.counts;
        fields.push((ie::OCTET_DELTA_COUNT, u64_value(counts.bytes_toserver)));
        fields.push((ie::PACKET_DELTA_COUNT, u64_value(counts.pkts_toserver)));
        fields.push((
            ie::REVERSE_OCTET_DELTA_COUNT,
            u64_value(counts.bytes_toclient),
        ));
        fields.push((
            ie::REVERSE_PACKET_DELTA_COUNT,
            u64_value(counts.pkts_toclient),
        ));
        fields.push((ie::FLOW_START_MILLISECONDS, u64_value(flow.start_ms)));
        fields.push((ie::FLOW_END_MILLISECONDS, u64_value(flow.end_ms)));
        fields.push((ie::INGRESS_INTERFACE, u32_value(flow.ifindex)));
        push_text(&mut fields, ie::INTERFACE_NAME, flow.iface.as_deref());
        fields.push((ie::FLOW_END_REASON, u8_value(flow_end_reason(flow.reason))));
        if let Some(direction) = flow_direction(flow.direction) {
            fields.push((ie::FLOW_DIRECTION, u8_value(direction)));
        }
        if let Some(action) = flow.action {
            fields.push((ie::FIREWALL_EVENT, u8_value(firewall_event(action))));
        }
        let pen = self.options.enterprise;
        let mut extra_text = |extra: Extra, text: Option<&str>| {
            push_text(&mut fields, extra.element(pen), text);
        };
        extra_text(ie::FIREWALL_ACTION, flow.action.map(Action::as_str));
        let extras = &flow.extras;
        extra_text(ie::COMMUNITY_ID, extras.community_id.as_deref());
        extra_text(ie::SOURCE_HOST_NAME, extras.src_host.as_deref());
        extra_text(ie::DESTINATION_HOST_NAME, extras.dest_host.as_deref());
        extra_text(ie::OBSERVER_HOST_NAME, Some(&self.options.host.name));
        extra_text(ie::OBSERVER_HOST_ID, self.options.host.id.as_deref());
        if let Some(process) = &extras.process {
            fields.push((ie::PROCESS_ID.element(pen), u32_value(process.pid)));
            fields.push((ie::PROCESS_USER_ID.element(pen), u32_value(process.uid)));
            push_text(
                &mut fields,
                ie::PROCESS_NAME.element(pen),
                Some(&process.comm),
            );
            for (extra, text) in [
                (ie::PROCESS_EXECUTABLE, &process.exe),
                (ie::PROCESS_USER_NAME, &process.user),
                (ie::PROCESS_UNIT, &process.unit),
                (ie::PROCESS_CONTAINER, &process.container),
            ] {
                push_text(&mut fields, extra.element(pen), text.as_deref());
            }
        }
        fields
    }
}

/// RFC 5102 flowEndReason: 1 idle timeout, 3 end of flow detected, 4 forced end, 5 lack of
/// resources.
fn flow_end_reason(reason: EndReason) -> u8 {
    match reason {
        EndReason::Idle => 1,
        EndReason::Fin | EndReason::Rst => 3,
        EndReason::Exit => 4,
        EndReason::Evicted => 5,
    }
}

/// IANA flowDirection: 0 ingress, 1 egress (as seen from this machine); a forwarded flow is
/// neither.
fn flow_direction(direction: Direction) -> Option<u8> {
    match direction {
        Direction::Inbound => Some(0),
        Direction::Outbound => Some(1),
        Direction::Forward => None,
    }
}

/// IANA firewallEvent, as Cisco's NSEL uses it for a record sent when a flow is torn down:
/// 2 "flow deleted" for a flow the firewall let through and that has now ended, 3 "flow
/// denied" for one it refused. `fwlogFirewallAction` tells drop from reject.
fn firewall_event(action: Action) -> u8 {
    match action {
        Action::Accept => 2,
        Action::Drop | Action::Reject => 3,
    }
}

fn v6(address: IpAddr) -> std::net::Ipv6Addr {
    match address {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

fn push_text(fields: &mut Vec<(Element, FieldValue)>, element: Element, text: Option<&str>) {
    // An unknown value is left out; the template then has no such field. Longer than a
    // variable-length field can say (64 KiB), a value is cut at a character boundary.
    if let Some(text) = text.filter(|t| !t.is_empty()) {
        let mut end = text.len().min(usize::from(u16::MAX));
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        fields.push((element, FieldValue::Vec(text.as_bytes()[..end].to_vec())));
    }
}

fn type_record(pen: u32, extra: &Extra) -> Record {
    let any = || IPFixField::new(0, None);
    vec![
        (any(), u32_value(pen)),
        (any(), u16_value(extra.id)),
        (any(), u8_value(extra.data_type as u8)),
        (any(), u8_value(extra.semantics as u8)),
        (any(), u16_value(0)),
        (any(), u64_value(0)),
        (any(), u64_value(0)),
        (any(), FieldValue::Vec(extra.name.as_bytes().to_vec())),
        (
            any(),
            FieldValue::Vec(extra.description.as_bytes().to_vec()),
        ),
    ]
}

fn template(id: u16, elements: &[Element]) -> Template {
    Template {
        template_id: id,
        field_count: elements.len() as u16,
        fields: elements.iter().map(template_field).collect(),
    }
}

fn template_field(element: &Element) -> TemplateField {
    TemplateField {
        field_type_number: element.id,
        field_length: element.length,
        enterprise_number: element.enterprise,
        field_type: IPFixField::new(element.id, element.enterprise),
    }
}

fn flow_set(id: u16, body: FlowSetBody) -> FlowSet {
    FlowSet {
        header: FlowSetHeader {
            header_id: id,
            length: 0,
        },
        body,
    }
}

/// A template record's size: id and count, then 4 octets per field (8 with a PEN).
fn template_size(elements: &[Element]) -> usize {
    4 + elements
        .iter()
        .map(|e| if e.enterprise.is_some() { 8 } else { 4 })
        .sum::<usize>()
}

/// A data record's size, with RFC 7011 section 7's length prefixes.
fn record_size(fields: &[(Element, FieldValue)]) -> usize {
    fields
        .iter()
        .map(|(element, value)| {
            let len = value.byte_len();
            match element.length {
                VARIABLE if len < 255 => 1 + len,
                VARIABLE => 3 + len,
                fixed => usize::from(fixed),
            }
        })
        .sum()
}

fn u8_value(n: u8) -> FieldValue {
    FieldValue::DataNumber(DataNumber::U8(n))
}

fn u16_value(n: u16) -> FieldValue {
    FieldValue::DataNumber(DataNumber::U16(n))
}

fn u32_value(n: u32) -> FieldValue {
    FieldValue::DataNumber(DataNumber::U32(n))
}

fn u64_value(n: u64) -> FieldValue {
    FieldValue::DataNumber(DataNumber::U64(n))
}

#[cfg(test)]
mod tests;
