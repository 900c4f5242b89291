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
/// A non-first fragment: it carries no transport header, so there are no ports.
pub const PKT_FRAGMENT: u8 = 1 << 3;
/// The transport header is cut short or malformed (or the IPv6 extension chain is too long);
/// the addresses and protocol are still right.
pub const PKT_L4_UNPARSED: u8 = 1 << 4;
/// A fragment (first or later): `frag_id` is the IP identification that ties them together.
pub const PKT_FRAGMENTED: u8 = 1 << 5;
/// An ICMP/ICMPv6 echo request or reply: `icmp_id` is its identifier.
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
/// Extension headers walked before giving up (RFC 8200 recommends a small, fixed bound).
pub const MAX_IPV6_EXT_HEADERS: usize = 8;

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
}

impl PacketReader for [u8] {
    fn read<const N: usize>(&self, offset: usize) -> Option<[u8; N]> {
        let bytes = self.get(offset..offset.checked_add(N)?)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Some(out)
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

/// No transport header (a non-first fragment, or an extension chain that could not be walked).
/// A plain offset rather than `Option`: LLVM may read the payload register of a `None`, which
/// the eBPF verifier rejects as uninitialised.
pub const NO_L4: usize = 0;

/// [`parse_ip`] into `info` (which it resets first), returning where the transport header
/// starts, or [`NO_L4`]. The eBPF programs parse into map memory this way: their stack is
/// 512 bytes in all, too small for copies of the result.
#[inline(always)]
pub fn parse_ip_into<R: PacketReader + ?Sized>(
    packet: &R,
    offset: usize,
    info: &mut PacketInfo,
) -> Result<usize, ParseError> {
    let l4_offset = parse_l3(packet, offset, info)?;
    if l4_offset != NO_L4 {
        parse_transport(packet, l4_offset, info);
    }
    Ok(l4_offset)
}

/// Parses the packet an ICMP error quotes (its IP header and at least 8 bytes after it, RFC
/// 792/4443), starting at `offset`: addresses, protocol and ports, enough to find its flow.
#[inline(always)]
pub fn parse_quoted_into<R: PacketReader + ?Sized>(
    packet: &R,
    offset: usize,
    info: &mut PacketInfo,
) -> Result<(), ParseError> {
    let l4_offset = parse_l3(packet, offset, info)?;
    if l4_offset != NO_L4 {
        match info.proto {
            IPPROTO_TCP | IPPROTO_UDP | IPPROTO_UDPLITE | IPPROTO_SCTP => {
                parse_ports(packet, l4_offset, info)
            }
            IPPROTO_ICMP | IPPROTO_ICMPV6 => parse_icmp(packet, l4_offset, info),
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

/// Parses the IP header(s) into `info` (reset first); returns where the transport header
/// starts, if the packet has one (not for non-first fragments or an unparsable extension chain).
#[inline(always)]
fn parse_l3<R: PacketReader + ?Sized>(
    packet: &R,
    offset: usize,
    info: &mut PacketInfo,
) -> Result<usize, ParseError> {
    info.clear();
    // Every IP header is at least 20 bytes: one read (a helper call in the eBPF programs)
    // gives the version and, for IPv4, all the fields used.
    let first: [u8; 20] = packet.read(offset).ok_or(ParseError::Truncated)?;
    match first[0] >> 4 {
        4 => parse_ipv4(&first, offset, info),
        6 => parse_ipv6(packet, &first, offset, info),
        _ => Err(ParseError::UnknownVersion),
    }
}

#[inline(always)]
fn parse_ipv4(
    header: &[u8; 20],
    offset: usize,
    info: &mut PacketInfo,
) -> Result<usize, ParseError> {
    let ihl = (header[0] & 0x0f) as usize;
    if ihl < 5 {
        return Err(ParseError::BadHeaderLength);
    }
    info.ip_version = IP_VERSION_4;
    info.proto = header[9];
    info.src_addr[..4].copy_from_slice(&header[12..16]);
    info.dst_addr[..4].copy_from_slice(&header[16..20]);
    let fragment = u16::from_be_bytes([header[6], header[7]]);
    let more_fragments = fragment & 0x2000 != 0;
    let fragment_offset = fragment & 0x1fff;
    if more_fragments || fragment_offset != 0 {
        info.flags |= PKT_FRAGMENTED;
        info.frag_id = u16::from_be_bytes([header[4], header[5]]) as u32;
    }
    if fragment_offset != 0 {
        info.flags |= PKT_FRAGMENT;
        return Ok(NO_L4);
    }
    Ok(offset + ihl * 4)
}

#[inline(always)]
fn parse_ipv6<R: PacketReader + ?Sized>(
    packet: &R,
    header: &[u8; 20],
    offset: usize,
    info: &mut PacketInfo,
) -> Result<usize, ParseError> {
    // The rest of the 40-byte header: the source address's last 4 bytes and the destination.
    let rest: [u8; 20] = packet.read(offset + 20).ok_or(ParseError::Truncated)?;
    info.ip_version = IP_VERSION_6;
    info.src_addr[..12].copy_from_slice(&header[8..20]);
    info.src_addr[12..].copy_from_slice(&rest[..4]);
    info.dst_addr.copy_from_slice(&rest[4..]);
    let mut next_header = header[6];
    let mut l4_offset = offset + 40;
    let mut steps = 0;
    while steps < MAX_IPV6_EXT_HEADERS {
        steps += 1;
        let ext_len = match next_header {
            IPV6_HOP_BY_HOP | IPV6_ROUTING | IPV6_DEST_OPTS | IPV6_AH => {
                // The length goes into the next offset: see `read_pair`.
                let Some((header, units)) = packet.read_pair(l4_offset) else {
                    info.proto = next_header;
                    info.flags |= PKT_L4_UNPARSED;
                    return Ok(NO_L4);
                };
                let len = if next_header == IPV6_AH {
                    (units as usize + 2) * 4
                } else {
                    (units as usize + 1) * 8
                };
                next_header = header;
                len
            }
            IPV6_FRAGMENT => {
                let Some(ext) = packet.read::<8>(l4_offset) else {
                    info.proto = next_header;
                    info.flags |= PKT_L4_UNPARSED;
                    return Ok(NO_L4);
                };
                next_header = ext[0];
                info.flags |= PKT_FRAGMENTED;
                info.frag_id = u32::from_be_bytes([ext[4], ext[5], ext[6], ext[7]]);
                if u16::from_be_bytes([ext[2], ext[3]]) >> 3 != 0 {
                    info.proto = next_header;
                    info.flags |= PKT_FRAGMENT;
                    return Ok(NO_L4);
                }
                8
            }
            _ => {
                info.proto = next_header;
                return Ok(l4_offset);
            }
        };
        l4_offset += ext_len;
    }
    // Still inside the extension chain after the bound: report the packet, not its ports.
    info.proto = next_header;
    info.flags |= PKT_L4_UNPARSED;
    Ok(NO_L4)
}

#[inline(always)]
fn parse_transport<R: PacketReader + ?Sized>(packet: &R, offset: usize, info: &mut PacketInfo) {
    match info.proto {
        IPPROTO_TCP => match packet.read::<14>(offset) {
            // A data offset below 5 words is not a TCP header.
            Some(tcp) if tcp[12] >> 4 >= 5 => {
                info.src_port = u16::from_be_bytes([tcp[0], tcp[1]]);
                info.dst_port = u16::from_be_bytes([tcp[2], tcp[3]]);
                info.tcp_flags = tcp[13];
                info.flags |= PKT_HAS_PORTS | PKT_HAS_TCP_FLAGS;
            }
            _ => info.flags |= PKT_L4_UNPARSED,
        },
        IPPROTO_UDP | IPPROTO_UDPLITE | IPPROTO_SCTP => parse_ports(packet, offset, info),
        IPPROTO_ICMP | IPPROTO_ICMPV6 => parse_icmp(packet, offset, info),
        _ => {}
    }
}

#[inline(always)]
fn parse_ports<R: PacketReader + ?Sized>(packet: &R, offset: usize, info: &mut PacketInfo) {
    match packet.read::<4>(offset) {
        Some(ports) => {
            info.src_port = u16::from_be_bytes([ports[0], ports[1]]);
            info.dst_port = u16::from_be_bytes([ports[2], ports[3]]);
            info.flags |= PKT_HAS_PORTS;
        }
        None => info.flags |= PKT_L4_UNPARSED,
    }
}

#[inline(always)]
fn parse_icmp<R: PacketReader + ?Sized>(packet: &R, offset: usize, info: &mut PacketInfo) {
    let Some(icmp) = packet.read::<2>(offset) else {
        info.flags |= PKT_L4_UNPARSED;
        return;
    };
    info.icmp_type = icmp[0];
    info.icmp_code = icmp[1];
    info.flags |= PKT_HAS_ICMP;
    let echo = match info.proto {
        IPPROTO_ICMP => matches!(icmp[0], 0 | 8),
        _ => matches!(icmp[0], 128 | 129),
    };
    if echo {
        if let Some(header) = packet.read::<6>(offset) {
            info.icmp_id = u16::from_be_bytes([header[4], header[5]]);
            info.flags |= PKT_HAS_ICMP_ID;
        }
    }
}

#[cfg(test)]
mod tests;

#[cfg(feature = "user")]
mod user;
#[cfg(feature = "user")]
pub use user::{ip_addr, protocol_keyword, protocol_name, protocol_number};
