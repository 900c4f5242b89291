//! Passive DNS: address → name from the DNS answers that cross the watched interfaces (the tc
//! program copies them). fwlog never sends a query of its own.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    sync::Arc,
    time::{Duration, Instant},
};

use simple_dns::{rdata::RData, Packet};

/// At most this many addresses are remembered; past it, expired ones go, then the oldest half.
const CAPACITY: usize = 65_536;
/// Answers with a TTL below this are kept this long anyway: a connection usually follows its
/// lookup by more than a TTL of 0 or 1 seconds.
const MIN_TTL: Duration = Duration::from_secs(60);

#[derive(Default)]
pub struct NameCache {
    names: HashMap<IpAddr, (Arc<str>, Instant)>,
}

impl NameCache {
    /// Learns the A/AAAA answers of a DNS response. Returns how many addresses it learnt.
    pub fn learn(&mut self, message: &[u8]) -> usize {
        let Ok(packet) = Packet::parse(message) else {
            return 0;
        };
        // The name the user asked for, not the end of a CNAME chain.
        let Some(question) = packet.questions.first() else {
            return 0;
        };
        let name: Arc<str> = question.qname.to_string().into();
        let now = Instant::now();
        let mut learnt = 0;
        for answer in &packet.answers {
            let addr = match &answer.rdata {
                RData::A(a) => IpAddr::V4(Ipv4Addr::from(a.address)),
                RData::AAAA(aaaa) => IpAddr::V6(Ipv6Addr::from(aaaa.address)),
                _ => continue,
            };
            let ttl = Duration::from_secs(answer.ttl.into()).max(MIN_TTL);
            self.make_room(now);
            self.names.insert(addr, (Arc::clone(&name), now + ttl));
            learnt += 1;
        }
        learnt
    }

    /// The name an address was last answered for, while its TTL lasts.
    pub fn name(&self, addr: IpAddr) -> Option<Arc<str>> {
        self.names
            .get(&addr)
            .filter(|(_, expires)| *expires > Instant::now())
            .map(|(name, _)| Arc::clone(name))
    }

    fn make_room(&mut self, now: Instant) {
        if self.names.len() < CAPACITY {
            return;
        }
        self.names.retain(|_, (_, expires)| *expires > now);
        if self.names.len() >= CAPACITY {
            let mut expiries: Vec<Instant> = self.names.values().map(|(_, e)| *e).collect();
            expiries.sort_unstable();
            let cutoff = expiries[expiries.len() / 2];
            self.names.retain(|_, (_, expires)| *expires > cutoff);
        }
    }
}

#[cfg(test)]
mod tests {
    use simple_dns::{rdata, Name, Question, ResourceRecord, CLASS, QCLASS, QTYPE, TYPE};

    use super::*;

    fn response(name: &str, answers: &[IpAddr], ttl: u32) -> Vec<u8> {
        let mut packet = Packet::new_reply(7);
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

    #[test]
    fn learns_a_and_aaaa_answers() {
        let mut cache = NameCache::default();
        let v4: IpAddr = "10.200.0.2".parse().expect("address");
        let v6: IpAddr = "fd00:200::2".parse().expect("address");
        assert_eq!(cache.learn(&response("example.test", &[v4, v6], 300)), 2);
        assert_eq!(cache.name(v4).as_deref(), Some("example.test"));
        assert_eq!(cache.name(v6).as_deref(), Some("example.test"));
        assert_eq!(cache.name("10.9.9.9".parse().expect("address")), None);
    }

    #[test]
    fn garbage_teaches_nothing() {
        let mut cache = NameCache::default();
        assert_eq!(cache.learn(b"not a dns message at all"), 0);
        assert_eq!(cache.learn(&[]), 0);
        let mut truncated = response("example.test", &["10.0.0.1".parse().expect("address")], 60);
        truncated.truncate(truncated.len() - 3);
        assert_eq!(cache.learn(&truncated), 0);
    }

    #[test]
    fn stays_bounded() {
        let mut cache = NameCache::default();
        for i in 0..(CAPACITY as u32 + 10) {
            let addr = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
            cache.learn(&response("many.test", &[addr], 60 + i % 1000));
        }
        assert!(cache.names.len() <= CAPACITY);
    }
}
