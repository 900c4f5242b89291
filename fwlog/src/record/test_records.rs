//! Records for the tests of the writers and filters: the README's examples.

use std::sync::Arc;

use fwlog_common::{
    event::{Action, CtState, VerdictEvent, EVENT_KIND_VERDICT},
    flow::{EndReason, FlowKey, FlowStats, SIDE_B},
    packet::{PacketInfo, IPPROTO_TCP, PKT_HAS_PORTS, PKT_HAS_TCP_FLAGS},
};

use super::{Connection, Extras, FlowContext, FlowRecord, ProcessView, VerdictRecord};
use crate::{host::HostIdentity, values::Direction};

/// 2026-11-25T07:09:10.123456Z
pub const T: i128 = 1_795_590_550_123_456_000;

/// A TCP SYN from 203.0.113.7:51234 to 192.0.2.10:22, dropped.
pub fn inbound_tcp_syn() -> VerdictEvent {
    let mut packet = PacketInfo {
        ip_version: 4,
        proto: IPPROTO_TCP,
        src_port: 51234,
        dst_port: 22,
        tcp_flags: 0x02,
        flags: PKT_HAS_PORTS | PKT_HAS_TCP_FLAGS,
        ..PacketInfo::default()
    };
    packet.src_addr[..4].copy_from_slice(&[203, 0, 113, 7]);
    packet.dst_addr[..4].copy_from_slice(&[192, 0, 2, 10]);
    VerdictEvent {
        kind: EVENT_KIND_VERDICT,
        action: Action::Drop as u8,
        ct_state: CtState::New as u8,
        ifindex: 3,
        len: 60,
        packet,
        ..VerdictEvent::default()
    }
}

/// The record the collector makes of `event`, seen coming in on wlan0.
pub fn inbound_verdict(event: &VerdictEvent, extras: &Extras) -> VerdictRecord<'static> {
    verdict_record(event, Direction::Inbound, Some("wlan0"), extras)
}

/// The record the collector makes of `event`.
pub fn verdict_record(
    event: &VerdictEvent,
    direction: Direction,
    in_iface: Option<&'static str>,
    extras: &Extras,
) -> VerdictRecord<'static> {
    let connection = Connection::of_packet(&event.packet);
    VerdictRecord::new(event, connection, T, direction, in_iface, extras.clone())
}

/// 192.0.2.10:40122 → 198.51.100.4:443, accepted, ended by FIN after 12.503 s; the client is
/// side B of the key, so the writers must turn it round.
pub fn outbound_tcp_flow() -> (FlowKey, FlowStats) {
    let mut key = FlowKey {
        port_a: 443,
        port_b: 40122,
        ifindex: 3,
        proto: IPPROTO_TCP,
        ip_version: 4,
        ..FlowKey::default()
    };
    key.addr_a[..4].copy_from_slice(&[198, 51, 100, 4]);
    key.addr_b[..4].copy_from_slice(&[192, 0, 2, 10]);
    let stats = FlowStats {
        pkts: [18, 14],
        bytes: [19876, 2210],
        tcp_flags: 0x1b,
        opener: SIDE_B,
        action: Action::Accept as u8,
        ct_state: CtState::New as u8,
        ..FlowStats::default()
    };
    (key, stats)
}

/// The record the collector makes of the flow, ended by FIN after 12.503 s, outbound on wlan0.
pub fn outbound_flow(key: &FlowKey, stats: &FlowStats, extras: &Extras) -> FlowRecord<'static> {
    flow_record(key, stats, Direction::Outbound, extras)
}

/// The record the collector makes of the flow, ended by FIN after 12.503 s, on wlan0.
pub fn flow_record(
    key: &FlowKey,
    stats: &FlowStats,
    direction: Direction,
    extras: &Extras,
) -> FlowRecord<'static> {
    let context = FlowContext {
        start_unix_ns: T,
        end_unix_ns: T + 12_503_074_000,
        reason: EndReason::Fin,
        direction,
        iface: Some("wlan0"),
    };
    FlowRecord::new(
        key,
        stats,
        Connection::of_flow(key, stats),
        context,
        extras.clone(),
    )
}

/// curl run by alice, talking to example.com.
pub fn curl_extras() -> Extras {
    Extras {
        community_id: Some("1:LQU9qZlK+B5F3KDmev6m5PMibrg=".into()),
        src_host: None,
        dest_host: Some(Arc::from("example.com")),
        process: Some(ProcessView {
            pid: 1234,
            comm: "curl".into(),
            exe: Some(Arc::from("/usr/bin/curl")),
            uid: 1000,
            user: Some(Arc::from("alice")),
            unit: Some(Arc::from("session-2.scope")),
            container: None,
        }),
    }
}

/// The host the golden lines name (the README's examples).
pub fn test_host() -> HostIdentity {
    HostIdentity::fixed("edge-1", None)
}
