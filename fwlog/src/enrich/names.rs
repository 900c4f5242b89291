//! Passive DNS: address → name from the answers to the questions this host asked (the tc
//! programs copy the questions it sends to port 53 and the answers that come back to them).
//! An answer counts only when its addresses, ports and id are the reverse of a question's and
//! it answers the name asked; an answer the firewall then drops takes back what it taught.
//! fwlog never sends a query of its own.

use std::{
    collections::{HashMap, VecDeque},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::Arc,
    time::{Duration, Instant},
};

use fwlog_common::{flow::SEEN_EGRESS, packet::PacketInfo};
use simple_dns::{rdata::RData, Packet, PacketFlag};

/// Where questions go and answers come from (the tc programs copy only these).
pub const DNS_PORT: u16 = 53;
/// At most this many addresses are remembered; past it, expired ones go, then the oldest half.
const CAPACITY: usize = 65_536;
/// Answers with a TTL below this are kept this long anyway: a connection usually follows its
/// lookup by more than a TTL of 0 or 1 seconds.
const MIN_TTL: Duration = Duration::from_secs(60);
/// Questions waiting for their answer, at most (the kernel remembers as many).
const QUESTIONS: usize = fwlog_common::dns::DNS_QUESTION_SLOTS as usize;
/// A question's answer must come within this: glibc's resolver gives up after 5 s per try
/// (resolv.conf `timeout`), so an answer this late reaches nobody.
const QUESTION_TIMEOUT: Duration = Duration::from_secs(15);
/// Answers kept this long after they taught names, so that a drop verdict for one (which the
/// ring buffer brings after the answer tc copied) can take them back.
const RECENT_ANSWER: Duration = Duration::from_secs(5);
const RECENT_ANSWERS: usize = 256;

/// A question on the wire: who asked, which resolver, which id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct QuestionKey {
    local: SocketAddr,
    resolver: SocketAddr,
    id: u16,
}

#[derive(Clone, Debug)]
struct Asked {
    /// The name as the host asked it.
    name: Arc<str>,
    at: Instant,
}

/// An answer that taught names, for a while.
struct Answered {
    question: QuestionKey,
    asked: Asked,
    addresses: Vec<IpAddr>,
    at: Instant,
}

#[derive(Default)]
pub struct NameCache {
    names: HashMap<IpAddr, (Arc<str>, Instant)>,
    questions: HashMap<QuestionKey, Asked>,
    recent: VecDeque<Answered>,
}

/// What a DNS message taught.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Learnt {
    /// A question the host asked, now waiting for its answer.
    Question,
    /// An answer to one: this many addresses named.
    Answer(usize),
    /// Nothing: not DNS, or an answer to no question the host asked.
    Nothing,
}

impl NameCache {
    /// Learns from a DNS message tc copied: `seen` is `SEEN_EGRESS` for one the host sent.
    pub fn learn(&mut self, packet: &PacketInfo, seen: u8, message: &[u8]) -> Learnt {
        self.learn_at(packet, seen, message, Instant::now())
    }

    fn learn_at(&mut self, packet: &PacketInfo, seen: u8, message: &[u8], now: Instant) -> Learnt {
        let Some((src, dst)) = packet.addresses() else {
            return Learnt::Nothing;
        };
        let (src, dst) = (
            SocketAddr::new(src, packet.src_port),
            SocketAddr::new(dst, packet.dst_port),
        );
        let Ok(dns) = Packet::parse(message) else {
            return Learnt::Nothing;
        };
        // The name the user asked for, not the end of a CNAME chain.
        let Some(question) = dns.questions.first() else {
            return Learnt::Nothing;
        };
        let name = question.qname.to_string();
        let response = dns.has_flags(PacketFlag::RESPONSE);
        if seen == SEEN_EGRESS {
            if response {
                return Learnt::Nothing; // the host answering someone: not its question.
            }
            let key = QuestionKey {
                local: src,
                resolver: dst,
                id: dns.id(),
            };
            self.make_room_for_question(now);
            let name = name.into();
            self.questions.insert(key, Asked { name, at: now });
            return Learnt::Question;
        }
        if !response {
            return Learnt::Nothing;
        }
        let key = QuestionKey {
            local: dst,
            resolver: src,
            id: dns.id(),
        };
        let matches = self.questions.get(&key).is_some_and(|asked| {
            now.duration_since(asked.at) <= QUESTION_TIMEOUT
                && asked.name.eq_ignore_ascii_case(&name)
        });
        // An answer for another name keeps the question for the real one.
        if !matches {
            return Learnt::Nothing;
        }
        let Some(asked) = self.questions.remove(&key) else {
            return Learnt::Nothing;
        };
        let mut addresses = Vec::new();
        for answer in &dns.answers {
            let addr = match &answer.rdata {
                RData::A(a) => IpAddr::V4(Ipv4Addr::from(a.address)),
                RData::AAAA(aaaa) => IpAddr::V6(Ipv6Addr::from(aaaa.address)),
                _ => continue,
            };
            let ttl = Duration::from_secs(answer.ttl.into()).max(MIN_TTL);
            self.make_room(now);
            self.names
                .insert(addr, (Arc::clone(&asked.name), now + ttl));
            addresses.push(addr);
        }
        let learnt = addresses.len();
        self.remember_answer(Answered {
            question: key,
            asked,
            addresses,
            at: now,
        });
        Learnt::Answer(learnt)
    }

    /// A datagram from `resolver` to `local` was dropped or rejected: what an answer from it
    /// taught a moment ago goes, and its question waits for another answer. Returns how many
    /// names went.
    pub fn dropped(&mut self, packet: &PacketInfo) -> usize {
        let Some((src, dst)) = packet.addresses() else {
            return 0;
        };
        let (resolver, local) = (
            SocketAddr::new(src, packet.src_port),
            SocketAddr::new(dst, packet.dst_port),
        );
        let mut forgotten = 0;
        let mut kept = VecDeque::with_capacity(self.recent.len());
        for answered in std::mem::take(&mut self.recent) {
            if answered.question.resolver != resolver || answered.question.local != local {
                kept.push_back(answered);
                continue;
            }
            for addr in &answered.addresses {
                let taught = self
                    .names
                    .get(addr)
                    .is_some_and(|(name, _)| Arc::ptr_eq(name, &answered.asked.name));
                if taught {
                    self.names.remove(addr);
                    forgotten += 1;
                }
            }
            self.questions.insert(answered.question, answered.asked);
        }
        self.recent = kept;
        forgotten
    }

    /// The name an address was last answered for, while its TTL lasts.
    pub fn name(&self, addr: IpAddr) -> Option<Arc<str>> {
        self.names
            .get(&addr)
            .filter(|(_, expires)| *expires > Instant::now())
            .map(|(name, _)| Arc::clone(name))
    }

    fn remember_answer(&mut self, answered: Answered) {
        let now = answered.at;
        while self.recent.front().is_some_and(|old| {
            self.recent.len() >= RECENT_ANSWERS || now.duration_since(old.at) > RECENT_ANSWER
        }) {
            self.recent.pop_front();
        }
        self.recent.push_back(answered);
    }

    fn make_room_for_question(&mut self, now: Instant) {
        if self.questions.len() < QUESTIONS {
            return;
        }
        self.questions
            .retain(|_, asked| now.duration_since(asked.at) <= QUESTION_TIMEOUT);
        if self.questions.len() >= QUESTIONS {
            let mut times: Vec<Instant> = self.questions.values().map(|a| a.at).collect();
            times.sort_unstable();
            let cutoff = times[times.len() / 2];
            self.questions.retain(|_, asked| asked.at > cutoff);
        }
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
mod tests;
