//! Bounds-checked parsing of IPv4/IPv6 and TCP/UDP/ICMP headers, shared by the eBPF programs
//! and the unit tests (which feed it byte arrays).
//!
//! Every read goes through [`PacketReader::read`], which fails instead of reading past the end,
//! so a truncated or malformed packet yields flags, never a misread field.

/// `PacketInfo::flags`: `src_port`/`dst_port` are set (TCP, UDP, UDP-Lite, SCTP).
pub const PKT_HAS_PORTS: u8 = 1 << 0;
/// `icmp_type`/`icmp_code` are set (ICMP, ICMPv6).
pub const PKT_HAS_ICMP: u8 = 1 << 1;
/// `tcp_flags` is set.
pub const PKT_HAS_TCP_FLAGS: u8 = 1 << 2;
/// A fragment without the transport header (a later one, or a first one cut before the end
/// of that header): no ports.
pub const PKT_FRAGMENT: u8 = 1 << 3;
/// The transport header is cut short or malformed (or the IPv6 extension chain is too long);
/// the addresses and protocol are still right.
pub const PKT_L4_UNPARSED: u8 = 1 << 4;
/// A fragment (first or later): `frag_id` is the IP identification that ties them together.
pub const PKT_FRAGMENTED: u8 = 1 << 5;
/// An ICMP/ICMPv6 query or its answer (echo, timestamp, information, address mask, node
/// information): `icmp_id` is its identifier, which conntrack keys the exchange by.
pub const PKT_HAS_ICMP_ID: u8 = 1 << 6;

pub const IP_VERSION_4: u8 = 4;
pub const IP_VERSION_6: u8 = 6;

pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_ICMPV6: u8 = 58;
pub const IPPROTO_SCTP: u8 = 132;
pub const IPPROTO_UDPLITE: u8 = 136;

const IPV6_HOP_BY_HOP: u8 = 0;
const IPV6_ROUTING: u8 = 43;
const IPV6_FRAGMENT: u8 = 44;
const IPV6_AH: u8 = 51;
const IPV6_DEST_OPTS: u8 = 60;
/// Extension headers walked before giving up. Linux itself walks any number (it only bounds
/// the options inside one header, `net.ipv6.max_dst_opts_number`); RFC 8200 4.1 orders at
/// most six kinds, a destination-options header at most twice, so 12 is past any chain a real
/// stack sends, and one longer is counted as malformed rather than misread. Each step costs
/// the verifier: 16 took flow_ingress to 230 000 instructions verified, against 93 000 for 8.
pub const MAX_IPV6_EXT_HEADERS: usize = 12;

/// The connection tuple and a few header fields of one packet.
///
/// IPv4 addresses use the first 4 bytes of `src_addr`/`dst_addr`; the rest stays zero.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PacketInfo {
    pub src_addr: [u8; 16],
    pub dst_addr: [u8; 16],
    pub src_port: u16,
    pub dst_port: u16,
    /// 4 or 6.
    pub ip_version: u8,
    /// Transport protocol number (IPv6: after the extension headers).
    pub proto: u8,
    /// TCP flags byte (FIN = 0x01 … CWR = 0x80), valid with [`PKT_HAS_TCP_FLAGS`].
    pub tcp_flags: u8,
    pub icmp_type: u8,
    pub icmp_code: u8,
    /// `PKT_*` flags.
    pub flags: u8,
    /// Echo identifier, valid with [`PKT_HAS_ICMP_ID`].
    pub icmp_id: u16,
    /// IP identification (IPv4) or fragment-header identification (IPv6), valid with
    /// [`PKT_FRAGMENTED`].
    pub frag_id: u32,
}

const _: () = assert!(core::mem::size_of::<PacketInfo>() == 48);
const _: () = assert!(core::mem::align_of::<PacketInfo>() == 4);

impl PacketInfo {
    /// Zeroes every field, a 32-bit word at a time. `*self = PacketInfo::default()` compiles to
    /// a call to a byte-at-a-time `memset` in eBPF, which cost more than the programs' own work
    /// in `cargo xtask bench`; volatile stores keep LLVM from turning this back into one.
    #[inline(always)]
    pub fn clear(&mut self) {
        let words = (self as *mut Self).cast::<u32>();
        let mut i = 0;
        while i < core::mem::size_of::<Self>() / 4 {
            // SAFETY: `i` stays within the struct, which is 4-aligned (checked above) and made
            // of integers and byte arrays, for which all-zero is valid.
            unsafe { core::ptr::write_volatile(words.add(i), 0) };
            i += 1;
        }
    }
}

/// Why the IP header itself could not be read. Transport-level problems are flags instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// Fewer bytes than the fixed IP header.
    Truncated,
    /// The version nibble is neither 4 nor 6.
    UnknownVersion,
    /// IPv4 IHL below 5 (a header shorter than 20 bytes).
    BadHeaderLength,
    /// The IP header's length field does not fit the packet: shorter than the header itself,
    /// or longer than the bytes there are. The stack drops such packets
    /// (net/ipv4/ip_input.c `ip_rcv_core`, net/ipv6/ip6_input.c `ip6_rcv_core`).
    BadTotalLength,
}

/// Fixed-size, bounds-checked reads from a packet.
pub trait PacketReader {
    /// The `N` bytes at `offset`, or `None` if any of them lies past the end of the packet.
    fn read<const N: usize>(&self, offset: usize) -> Option<[u8; N]>;

    /// The two bytes at `offset`, as two values. For lengths that become offsets: LLVM builds
    /// a 2-byte array read from packet memory as `(b1 << 8) | b0`, and before Linux 6.10 the
    /// verifier knows nothing of an OR of two unknown values, so every offset computed from
    /// either byte would be unbounded and the next packet read refused (the tc programs did
    /// not load on 6.1). Readers of packet memory override this with two byte loads.
    #[inline(always)]
    fn read_pair(&self, offset: usize) -> Option<(u8, u8)> {
        self.read::<2>(offset)
            .map(|[first, second]| (first, second))
    }
    /// Bytes in the packet (the frame, at tc; the IP packet, in netfilter).
    fn packet_len(&self) -> usize;
    /// `offset`, with what the eBPF verifier knows about it forgotten (beyond its being a
    /// packet offset): the IPv6 extension-header walk calls it at each step, so the verifier
    /// checks each step once instead of once per way of getting there.
    #[inline(always)]
    fn forget(&self, offset: usize) -> usize {
        offset
    }
    /// [`read`](Self::read) for rare headers (IPv6 extension headers): one way of reading,
    /// where `read` may have two (straight from the packet, else through a helper), which
    /// doubled what the verifier walked at every step of the chain.
    #[inline(always)]
    fn read_rare<const N: usize>(&self, offset: usize) -> Option<[u8; N]> {
        self.read(offset)
    }
}

impl PacketReader for [u8] {
    fn read<const N: usize>(&self, offset: usize) -> Option<[u8; N]> {
        let bytes = self.get(offset..offset.checked_add(N)?)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Some(out)
    }

    fn packet_len(&self) -> usize {
        <[u8]>::len(self)
    }
}

/// Where a parsed IP packet's parts are: the transport header (or [`NO_L4`]) and the end of
/// the packet as its IP header says (never past the bytes there are).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpLayout {
    pub l4_offset: usize,
    pub ip_end: usize,
}

impl IpLayout {
    /// The packet's length from its IP header on, as the header says: what the stack keeps
    /// of it (link-layer padding after it is trimmed, net/ipv4/ip_input.c `ip_rcv_core`).
    pub const fn ip_len(&self, l3_offset: usize) -> usize {
        self.ip_end.saturating_sub(l3_offset)
    }
}

/// Parses the IP packet that starts at `offset`.
pub fn parse_ip<R: PacketReader + ?Sized>(
    packet: &R,
    offset: usize,
) -> Result<PacketInfo, ParseError> {
    let mut info = PacketInfo::default();
    parse_ip_into(packet, offset, &mut info).map(|_| info)
}

/// [`parse_ip`], also returning the packet's layout.
pub fn parse_ip_layout<R: PacketReader + ?Sized>(
    packet: &R,
    offset: usize,
) -> Result<(PacketInfo, IpLayout), ParseError> {
    let mut info = PacketInfo::default();
    parse_ip_into(packet, offset, &mut info).map(|layout| (info, layout))
}

/// No transport header (a non-first fragment, or an extension chain that could not be walked).
/// A plain offset rather than `Option`: LLVM may read the payload register of a `None`, which
/// the eBPF verifier rejects as uninitialised.
pub const NO_L4: usize = 0;

/// [`parse_ip`] into `info` (which it resets first), returning where the transport header
/// starts (or [`NO_L4`]) and where the packet ends. The eBPF programs parse into map memory
/// this way: their stack is 512 bytes in all, too small for copies of the result.
///
/// Nothing past the end the IP header gives is read: bytes after it (padding, or what an
/// attacker appends) are not part of the packet the stack sees.
#[inline(always)]
pub fn parse_ip_into<R: PacketReader + ?Sized>(
    packet: &R,
    offset: usize,
    info: &mut PacketInfo,
) -> Result<IpLayout, ParseError> {
    let mut layout = parse_l3(packet, offset, info)?;
    if layout.l4_offset != NO_L4 {
        parse_transport(packet, layout, info);
        if info.flags & (PKT_FRAGMENTED | PKT_L4_UNPARSED) == PKT_FRAGMENTED | PKT_L4_UNPARSED {
            // A first fragment too short for its transport header (RFC 1858's tiny
            // fragments): not malformed, the stack reassembles it before looking further.
            info.flags = (info.flags & !PKT_L4_UNPARSED) | PKT_FRAGMENT;
            layout.l4_offset = NO_L4;
        }
    }
    Ok(layout)
}

/// Parses the packet an ICMP error quotes (its IP header and at least 8 bytes after it, RFC
/// 792/4443), starting at `offset`: addresses, protocol and ports, enough to find its flow.
#[inline(always)]
pub fn parse_quoted_into<R: PacketReader + ?Sized>(
    packet: &R,
    offset: usize,
    info: &mut PacketInfo,
) -> Result<(), ParseError> {
    // A quote is cut to what fits the error (RFC 792: the header and 8 bytes; RFC 4443: as
    // much as fits 1280 bytes), so its own length field overstates it: bound reads by the
    // bytes there are.
    let layout = parse_l3_quoted(packet, offset, info)?;
    if layout.l4_offset != NO_L4 {
        match info.proto {
            IPPROTO_TCP | IPPROTO_UDP | IPPROTO_UDPLITE | IPPROTO_SCTP => {
                parse_ports(packet, layout, info, PORTS)
            }
            IPPROTO_ICMP | IPPROTO_ICMPV6 => parse_icmp(packet, layout, info),
            _ => {}
        }
    }
    Ok(())
}

/// [`parse_quoted_into`] returning the result.
pub fn parse_quoted<R: PacketReader + ?Sized>(
    packet: &R,
    offset: usize,
) -> Result<PacketInfo, ParseError> {
    let mut info = PacketInfo::default();
    parse_quoted_into(packet, offset, &mut info).map(|()| info)
}

/// ICMP and ICMPv6 error types: they quote the packet that caused them.
pub const fn is_icmp_error(info: &PacketInfo) -> bool {
    if info.flags & PKT_HAS_ICMP == 0 {
        return false;
    }
    match info.proto {
        // Destination unreachable, source quench, redirect, time exceeded, parameter problem.
        IPPROTO_ICMP => matches!(info.icmp_type, 3 | 4 | 5 | 11 | 12),
        // Destination unreachable, packet too big, time exceeded, parameter problem.
        IPPROTO_ICMPV6 => matches!(info.icmp_type, 1..=4),
        _ => false,
    }
}

/// Parses the IP header(s) into `info` (reset first) and checks the IP length fields against
/// the packet, as the stack does before it looks any further.
#[inline(always)]
fn parse_l3<R: PacketReader + ?Sized>(
    packet: &R,
    offset: usize,
    info: &mut PacketInfo,
) -> Result<IpLayout, ParseError> {
    parse_l3_as::<R, true>(packet, offset, info)
}

/// [`parse_l3`] for a packet quoted in an ICMP error: cut short by design, so its length
/// fields are not checked and it ends where the bytes do.
#[inline(always)]
fn parse_l3_quoted<R: PacketReader + ?Sized>(
    packet: &R,
    offset: usize,
    info: &mut PacketInfo,
) -> Result<IpLayout, ParseError> {
    parse_l3_as::<R, false>(packet, offset, info)
}

#[inline(always)]
fn parse_l3_as<R: PacketReader + ?Sized, const WHOLE: bool>(
    packet: &R,
    offset: usize,
    info: &mut PacketInfo,
) -> Result<IpLayout, ParseError> {
    info.clear();
    // Every IP header is at least 20 bytes: one read (a helper call in the eBPF programs)
    // gives the version and, for IPv4, all the fields used.
    let first: [u8; 20] = packet.read(offset).ok_or(ParseError::Truncated)?;
    let available = packet.packet_len().saturating_sub(offset);
    match first[0] >> 4 {
        4 => parse_ipv4::<WHOLE>(&first, offset, available, info),
        6 => parse_ipv6::<R, WHOLE>(packet, &first, offset, available, info),
        _ => Err(ParseError::UnknownVersion),
    }
}

/// Above this an IP packet's length no longer fits its 16-bit field: GSO packets built that
/// big ("BIG TCP") carry 0 there and take their length from the buffer
/// (include/net/ip.h `iph_set_totlen`, include/linux/ipv6.h `ipv6_has_hopopt_jumbo`).
const IP_MAX_LEN: usize = 0xffff;

#[inline(always)]
fn parse_ipv4<const WHOLE: bool>(
    header: &[u8; 20],
    offset: usize,
    available: usize,
    info: &mut PacketInfo,
) -> Result<IpLayout, ParseError> {
    let ihl = (header[0] & 0x0f) as usize;
    if ihl < 5 {
        return Err(ParseError::BadHeaderLength);
    }
    let total = u16::from_be_bytes([header[2], header[3]]) as usize;
    let ip_len = if !WHOLE || total == 0 && available > IP_MAX_LEN {
        available
    } else if total < ihl * 4 || total > available {
        return Err(ParseError::BadTotalLength);
    } else {
        total
    };
    info.ip_version = IP_VERSION_4;
    info.proto = header[9];
    info.src_addr[..4].copy_from_slice(&header[12..16]);
    info.dst_addr[..4].copy_from_slice(&header[16..20]);
    let ip_end = offset + ip_len;
    let fragment = u16::from_be_bytes([header[6], header[7]]);
    let more_fragments = fragment & 0x2000 != 0;
    let fragment_offset = fragment & 0x1fff;
    if more_fragments || fragment_offset != 0 {
        info.flags |= PKT_FRAGMENTED;
        info.frag_id = u16::from_be_bytes([header[4], header[5]]) as u32;
    }
    if fragment_offset != 0 {
        info.flags |= PKT_FRAGMENT;
        return Ok(IpLayout {
            l4_offset: NO_L4,
            ip_end,
        });
    }
    Ok(IpLayout {
        l4_offset: offset + ihl * 4,
        ip_end,
    })
}

const fn is_extension_header(next_header: u8) -> bool {
    matches!(
        next_header,
        IPV6_HOP_BY_HOP | IPV6_ROUTING | IPV6_FRAGMENT | IPV6_AH | IPV6_DEST_OPTS
    )
}

#[inline(always)]
fn parse_ipv6<R: PacketReader + ?Sized, const WHOLE: bool>(
    packet: &R,
    header: &[u8; 20],
    offset: usize,
    available: usize,
    info: &mut PacketInfo,
) -> Result<IpLayout, ParseError> {
    // The rest of the 40-byte header: the source address's last 4 bytes and the destination.
    let rest: [u8; 20] = packet.read(offset + 20).ok_or(ParseError::Truncated)?;
    let payload = u16::from_be_bytes([header[4], header[5]]) as usize;
    let ip_len = if !WHOLE {
        available
    } else if payload == 0 {
        // A jumbogram or a BIG TCP packet is longer than the field can say; any other packet
        // with a zero payload length is cut to its header (net/ipv6/ip6_input.c).
        if available > 40 + IP_MAX_LEN {
            available
        } else {
            40
        }
    } else if 40 + payload > available {
        return Err(ParseError::BadTotalLength);
    } else {
        40 + payload
    };
    let ip_end = offset + ip_len;
    info.ip_version = IP_VERSION_6;
    info.src_addr[..12].copy_from_slice(&header[8..20]);
    info.src_addr[12..].copy_from_slice(&rest[..4]);
    info.dst_addr.copy_from_slice(&rest[4..]);
    let mut next_header = header[6];
    let mut l4_offset = offset + 40;
    let unparsed = |info: &mut PacketInfo, next_header: u8| -> Result<IpLayout, ParseError> {
        info.proto = next_header;
        info.flags |= PKT_L4_UNPARSED;
        Ok(IpLayout {
            l4_offset: NO_L4,
            ip_end,
        })
    };
    let mut headers = 0;
    while headers < MAX_IPV6_EXT_HEADERS && is_extension_header(next_header) {
        headers += 1;
        l4_offset = packet.forget(l4_offset);
        // Bounded by the bytes there are only: comparing with the IP packet's end at every
        // step gave the verifier a different bound to keep for every way through the chain
        // (over a million instructions); the end is checked once, after the walk.
        if next_header == IPV6_FRAGMENT {
            let Some(ext) = packet.read_rare::<8>(l4_offset) else {
                return unparsed(info, next_header);
            };
            next_header = ext[0];
            info.flags |= PKT_FRAGMENTED;
            info.frag_id = u32::from_be_bytes([ext[4], ext[5], ext[6], ext[7]]);
            if u16::from_be_bytes([ext[2], ext[3]]) >> 3 != 0 {
                info.proto = next_header;
                info.flags |= PKT_FRAGMENT;
                return Ok(IpLayout {
                    l4_offset: NO_L4,
                    ip_end,
                });
            }
            l4_offset += 8;
            continue;
        }
        // The length goes into the next offset: see `read_pair`.
        let Some((following, length)) = packet.read_pair(l4_offset) else {
            return unparsed(info, next_header);
        };
        let ext_len = if next_header == IPV6_AH {
            (length as usize + 2) * 4
        } else {
            (length as usize + 1) * 8
        };
        next_header = following;
        l4_offset += ext_len;
    }
    if is_extension_header(next_header) || l4_offset > ip_end {
        // Still inside the chain after the bound, or a chain that runs past the packet: the
        // packet, not a guess at its ports.
        return unparsed(info, next_header);
    }
    info.proto = next_header;
    Ok(IpLayout { l4_offset, ip_end })
}

/// Whether `len` bytes from `offset` lie within the IP packet.
#[inline(always)]
const fn within(layout: IpLayout, offset: usize, len: usize) -> bool {
    offset + len <= layout.ip_end
}

/// The shortest headers the stack takes (it drops anything shorter): net/ipv4/tcp_ipv4.c
/// `tcp_v4_rcv`, net/ipv4/udp.c `__udp4_lib_rcv`, net/sctp/input.c, net/ipv4/icmp.c.
const TCP_HEADER: usize = 20;
const UDP_HEADER: usize = 8;
const SCTP_HEADER: usize = 12;
const ICMP_HEADER: usize = 8;
/// What a quote needs for its ports: their 4 bytes (RFC 792 quotes 8 bytes of transport).
const PORTS: usize = 4;

#[inline(always)]
fn parse_transport<R: PacketReader + ?Sized>(packet: &R, layout: IpLayout, info: &mut PacketInfo) {
    let offset = layout.l4_offset;
    match info.proto {
        IPPROTO_TCP => match packet.read::<14>(offset) {
            // A data offset below 5 words is not a TCP header, and one past the packet's
            // end does not fit it.
            Some(tcp)
                if within(layout, offset, TCP_HEADER)
                    && tcp[12] >> 4 >= 5
                    && within(layout, offset, (tcp[12] >> 4) as usize * 4) =>
            {
                info.src_port = u16::from_be_bytes([tcp[0], tcp[1]]);
                info.dst_port = u16::from_be_bytes([tcp[2], tcp[3]]);
                info.tcp_flags = tcp[13];
                info.flags |= PKT_HAS_PORTS | PKT_HAS_TCP_FLAGS;
            }
            _ => info.flags |= PKT_L4_UNPARSED,
        },
        IPPROTO_UDP => match packet.read::<8>(offset) {
            // The UDP length must cover the header and fit the packet (the datagram, for a
            // first fragment: the stack checks it after reassembly).
            Some(udp)
                if within(layout, offset, UDP_HEADER)
                    && u16::from_be_bytes([udp[4], udp[5]]) as usize >= UDP_HEADER
                    && (info.flags & PKT_FRAGMENTED != 0
                        || within(
                            layout,
                            offset,
                            u16::from_be_bytes([udp[4], udp[5]]) as usize,
                        )) =>
            {
                info.src_port = u16::from_be_bytes([udp[0], udp[1]]);
                info.dst_port = u16::from_be_bytes([udp[2], udp[3]]);
                info.flags |= PKT_HAS_PORTS;
            }
            _ => info.flags |= PKT_L4_UNPARSED,
        },
        IPPROTO_UDPLITE => parse_ports(packet, layout, info, UDP_HEADER),
        IPPROTO_SCTP => parse_ports(packet, layout, info, SCTP_HEADER),
        IPPROTO_ICMP | IPPROTO_ICMPV6 => parse_icmp(packet, layout, info),
        _ => {}
    }
}

/// The ports of a header of at least `header` bytes.
#[inline(always)]
fn parse_ports<R: PacketReader + ?Sized>(
    packet: &R,
    layout: IpLayout,
    info: &mut PacketInfo,
    header: usize,
) {
    let offset = layout.l4_offset;
    match packet.read::<4>(offset) {
        Some(ports) if within(layout, offset, header) => {
            info.src_port = u16::from_be_bytes([ports[0], ports[1]]);
            info.dst_port = u16::from_be_bytes([ports[2], ports[3]]);
            info.flags |= PKT_HAS_PORTS;
        }
        _ => info.flags |= PKT_L4_UNPARSED,
    }
}

/// ICMP's and ICMPv6's queries and their answers, which conntrack tracks as connections keyed
/// by the query's type and identifier (net/netfilter/nf_conntrack_proto_icmp.c `invmap`,
/// nf_conntrack_proto_icmpv6.c): the request's type, for both.
pub const fn icmp_query_type(proto: u8, icmp_type: u8) -> Option<u8> {
    match (proto, icmp_type) {
        // Echo, timestamp, information, address mask: request and reply.
        (IPPROTO_ICMP, 0 | 8) => Some(8),
        (IPPROTO_ICMP, 13 | 14) => Some(13),
        (IPPROTO_ICMP, 15 | 16) => Some(15),
        (IPPROTO_ICMP, 17 | 18) => Some(17),
        // Echo, node information: query and reply.
        (IPPROTO_ICMPV6, 128 | 129) => Some(128),
        (IPPROTO_ICMPV6, 139 | 140) => Some(139),
        _ => None,
    }
}

#[inline(always)]
fn parse_icmp<R: PacketReader + ?Sized>(packet: &R, layout: IpLayout, info: &mut PacketInfo) {
    let offset = layout.l4_offset;
    let Some(icmp) = packet
        .read::<6>(offset)
        .filter(|_| within(layout, offset, ICMP_HEADER))
    else {
        info.flags |= PKT_L4_UNPARSED;
        return;
    };
    info.icmp_type = icmp[0];
    info.icmp_code = icmp[1];
    info.flags |= PKT_HAS_ICMP;
    if icmp_query_type(info.proto, icmp[0]).is_some() {
        info.icmp_id = u16::from_be_bytes([icmp[4], icmp[5]]);
        info.flags |= PKT_HAS_ICMP_ID;
    }
}

#[cfg(test)]
mod tests;

#[cfg(feature = "user")]
mod user;
#[cfg(feature = "user")]
pub use user::{ip_addr, protocol_keyword, protocol_name, protocol_number, PROTOCOL_NAMES};
