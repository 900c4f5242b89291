//! The name cache against hostile answers: unsolicited, another id, name, resolver or port,
//! late, refused; and its bounds.

use std::net::SocketAddr;

use fwlog_common::{
    flow::{SEEN_EGRESS, SEEN_INGRESS},
    packet::{PacketInfo, IPPROTO_UDP, IP_VERSION_4, IP_VERSION_6, PKT_HAS_PORTS},
};
use simple_dns::{rdata, Name, Question, ResourceRecord, CLASS, QCLASS, QTYPE, TYPE};

use super::*;

const HOST: &str = "10.200.0.1:40000";
const RESOLVER: &str = "10.200.0.2:53";

fn datagram(src: &str, dst: &str) -> PacketInfo {
    let (src, dst): (SocketAddr, SocketAddr) =
        (src.parse().expect("src"), dst.parse().expect("dst"));
    let mut packet = PacketInfo {
        proto: IPPROTO_UDP,
        flags: PKT_HAS_PORTS,
        src_port: src.port(),
        dst_port: dst.port(),
        ..PacketInfo::default()
    };
    for (addr, bytes) in [
        (src.ip(), &mut packet.src_addr),
        (dst.ip(), &mut packet.dst_addr),
    ] {
        match addr {
            IpAddr::V4(v4) => {
                packet.ip_version = IP_VERSION_4;
                bytes[..4].copy_from_slice(&v4.octets());
            }
            IpAddr::V6(v6) => {
                packet.ip_version = IP_VERSION_6;
                *bytes = v6.octets();
            }
        }
    }
    packet
}

fn question(id: u16, name: &str) -> Vec<u8> {
    let mut packet = Packet::new_query(id);
    packet.questions.push(Question::new(
        Name::new_unchecked(name),
        QTYPE::TYPE(TYPE::A),
        QCLASS::CLASS(CLASS::IN),
        false,
    ));
    packet.build_bytes_vec().expect("builds")
}

fn response(id: u16, name: &str, answers: &[IpAddr], ttl: u32) -> Vec<u8> {
    let mut packet = Packet::new_reply(id);
    let qname = Name::new_unchecked(name);
    packet.questions.push(Question::new(
        qname.clone(),
        QTYPE::TYPE(TYPE::A),
        QCLASS::CLASS(CLASS::IN),
        false,
    ));
    for addr in answers {
        let data = match addr {
            IpAddr::V4(v4) => RData::A(rdata::A {
                address: u32::from(*v4),
            }),
            IpAddr::V6(v6) => RData::AAAA(rdata::AAAA {
                address: u128::from(*v6),
            }),
        };
        packet
            .answers
            .push(ResourceRecord::new(qname.clone(), CLASS::IN, ttl, data));
    }
    packet.build_bytes_vec().expect("builds")
}

fn ask(cache: &mut NameCache, id: u16, name: &str) {
    let learnt = cache.learn(&datagram(HOST, RESOLVER), SEEN_EGRESS, &question(id, name));
    assert_eq!(learnt, Learnt::Question);
}

fn answer(cache: &mut NameCache, from: (&str, &str), message: &[u8]) -> Learnt {
    cache.learn(&datagram(from.0, from.1), SEEN_INGRESS, message)
}

fn ip(text: &str) -> IpAddr {
    text.parse().expect("address")
}

#[test]
fn an_answer_to_the_hosts_question_names_its_a_and_aaaa_addresses() {
    let mut cache = NameCache::default();
    ask(&mut cache, 7, "example.test");
    let (v4, v6) = (ip("10.9.0.2"), ip("fd00:200::2"));
    let message = response(7, "Example.TEST", &[v4, v6], 300);
    assert_eq!(
        answer(&mut cache, (RESOLVER, HOST), &message),
        Learnt::Answer(2)
    );
    assert_eq!(
        cache.name(v4).as_deref(),
        Some("example.test"),
        "as the host asked it"
    );
    assert_eq!(cache.name(v6).as_deref(), Some("example.test"));
    assert_eq!(cache.name(ip("10.9.9.9")), None);
    // One answer per question: the same again teaches nothing.
    assert_eq!(
        answer(&mut cache, (RESOLVER, HOST), &message),
        Learnt::Nothing
    );
}

#[test]
fn answers_to_no_question_of_the_host_teach_nothing() {
    let mut cache = NameCache::default();
    let forged = ip("100.64.0.9");
    let message = response(7, "updates.microsoft.com", &[forged], 300);
    assert_eq!(
        answer(&mut cache, (RESOLVER, HOST), &message),
        Learnt::Nothing,
        "unsolicited"
    );
    ask(&mut cache, 7, "example.test");
    let cases = [
        (
            "another id",
            response(8, "example.test", &[forged], 300),
            (RESOLVER, HOST),
        ),
        ("another name", message.clone(), (RESOLVER, HOST)),
        (
            "another resolver",
            response(7, "example.test", &[forged], 300),
            ("10.200.0.3:53", HOST),
        ),
        (
            "another resolver port",
            response(7, "example.test", &[forged], 300),
            ("10.200.0.2:5353", HOST),
        ),
        (
            "another local port",
            response(7, "example.test", &[forged], 300),
            (RESOLVER, "10.200.0.1:40001"),
        ),
        (
            "a question, not an answer",
            question(7, "example.test"),
            (RESOLVER, HOST),
        ),
    ];
    for (case, message, from) in cases {
        assert_eq!(
            answer(&mut cache, from, &message),
            Learnt::Nothing,
            "{case}"
        );
        assert_eq!(cache.name(forged), None, "{case}");
    }
    // The question still waits for its own answer.
    let real = response(7, "example.test", &[ip("10.9.0.2")], 300);
    assert_eq!(
        answer(&mut cache, (RESOLVER, HOST), &real),
        Learnt::Answer(1)
    );
}

#[test]
fn a_late_answer_teaches_nothing() {
    let mut cache = NameCache::default();
    let asked = Instant::now();
    let message = question(7, "example.test");
    cache.learn_at(&datagram(HOST, RESOLVER), SEEN_EGRESS, &message, asked);
    let reply = response(7, "example.test", &[ip("10.9.0.2")], 300);
    let late = asked + QUESTION_TIMEOUT + Duration::from_secs(1);
    let learnt = cache.learn_at(&datagram(RESOLVER, HOST), SEEN_INGRESS, &reply, late);
    assert_eq!(learnt, Learnt::Nothing);
}

#[test]
fn the_host_answering_is_no_question() {
    let mut cache = NameCache::default();
    let reply = response(7, "example.test", &[ip("10.9.0.2")], 300);
    let learnt = cache.learn(&datagram(HOST, RESOLVER), SEEN_EGRESS, &reply);
    assert_eq!(learnt, Learnt::Nothing);
}

#[test]
fn a_dropped_answer_takes_back_its_names_and_the_question_waits_again() {
    let mut cache = NameCache::default();
    ask(&mut cache, 7, "example.test");
    let addr = ip("10.9.0.2");
    let message = response(7, "example.test", &[addr], 300);
    assert_eq!(
        answer(&mut cache, (RESOLVER, HOST), &message),
        Learnt::Answer(1)
    );
    // A drop of something else from the resolver to another port takes nothing back.
    assert_eq!(cache.dropped(&datagram(RESOLVER, "10.200.0.1:40001")), 0);
    assert_eq!(cache.dropped(&datagram(RESOLVER, HOST)), 1);
    assert_eq!(cache.name(addr), None);
    assert_eq!(
        answer(&mut cache, (RESOLVER, HOST), &message),
        Learnt::Answer(1)
    );
    assert_eq!(cache.name(addr).as_deref(), Some("example.test"));
}

#[test]
fn garbage_teaches_nothing() {
    let mut cache = NameCache::default();
    ask(&mut cache, 7, "example.test");
    let from = (RESOLVER, HOST);
    assert_eq!(
        answer(&mut cache, from, b"not a dns message at all"),
        Learnt::Nothing
    );
    assert_eq!(answer(&mut cache, from, &[]), Learnt::Nothing);
    let mut truncated = response(7, "example.test", &[ip("10.0.0.1")], 60);
    truncated.truncate(truncated.len() - 3);
    assert_eq!(answer(&mut cache, from, &truncated), Learnt::Nothing);
}

#[test]
fn stays_bounded() {
    let mut cache = NameCache::default();
    for i in 0..(CAPACITY as u32 + 10) {
        let id = (i % 60_000) as u16;
        let local = format!("10.200.{}.{}:40000", (i >> 8) & 0xff, i & 0xff);
        let asked = cache.learn(
            &datagram(&local, RESOLVER),
            SEEN_EGRESS,
            &question(id, "many.test"),
        );
        assert_eq!(asked, Learnt::Question);
        assert!(cache.questions.len() <= QUESTIONS);
        let addr = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
        let reply = response(id, "many.test", &[addr], 60 + i % 1000);
        cache.learn(&datagram(RESOLVER, &local), SEEN_INGRESS, &reply);
    }
    assert!(cache.names.len() <= CAPACITY);
    assert!(cache.recent.len() <= RECENT_ANSWERS);
}
