//! Frames to flow keys: zero-copy parsing of captured frames (Ethernet, VLAN,
//! Linux cooked capture, raw IP) down to the 5-tuple and the few facts the
//! dataplane needs (TCP flags, fragment identity, the flow an ICMP error
//! quotes). Owns no state, allocates nothing, never panics on input: a frame
//! that cannot be judged yields a typed [`DropReason`].
//!
//! One job per file: `link.rs` peels link headers, `ip.rs` checks the IPv4 /
//! IPv6 header and extension chain, `transport.rs` reads TCP/UDP ports,
//! `icmp.rs` reads ICMP/ICMPv6 (echo identifiers, quoted flows),
//! `drop_reason.rs` names every way a frame fails. This file holds the
//! result types and [`parse`], which strings the layers together.
//!
//! Truncation policy (captures cut by the snap length are normal):
//! - every header up to and including the IP header (and every IPv6
//!   extension header before the upper layer) must be captured in full;
//! - IP length fields larger than the capture are fine (`ip_length` still
//!   reports the declared length); smaller than their own header is an
//!   error;
//! - a packet is judged once the fields the filter needs were captured: TCP
//!   through its flags byte (14 bytes; options may be cut), UDP its two
//!   ports (the UDP length field is never trusted), ICMP its 8-byte header
//!   and, for errors, the quoted IP header (the quoted ports when present);
//! - a non-first fragment carries no transport header and needs none.

mod drop_reason;
mod icmp;
mod ip;
mod link;
mod transport;

pub use drop_reason::DropReason;
pub use link::{LinkType, MAX_VLAN_TAGS};

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The flow identity of one packet, in its own direction. Addresses are
/// stored as integers: an IPv4 address in the low 32 bits with `ipv6 ==
/// false`. For ICMP/ICMPv6 echo both ports hold the echo identifier (so a
/// request and its reply share one connection); other portless protocols
/// have zero ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct FlowKey {
    pub source: u128,
    pub destination: u128,
    pub source_port: u16,
    pub destination_port: u16,
    pub protocol: u8,
    pub ipv6: bool,
}

impl FlowKey {
    /// The same flow seen from the other end.
    #[inline]
    pub fn reversed(&self) -> FlowKey {
        FlowKey {
            source: self.destination,
            destination: self.source,
            source_port: self.destination_port,
            destination_port: self.source_port,
            protocol: self.protocol,
            ipv6: self.ipv6,
        }
    }

    pub fn source_ip(&self) -> IpAddr {
        to_ip(self.source, self.ipv6)
    }

    pub fn destination_ip(&self) -> IpAddr {
        to_ip(self.destination, self.ipv6)
    }

    /// A direction-independent form: both directions of a connection give
    /// the same value (used as the connection-table key and for dispatch).
    #[inline]
    pub fn canonical(&self) -> FlowKey {
        let reversed = self.reversed();
        if (reversed.source, reversed.source_port) < (self.source, self.source_port) {
            reversed
        } else {
            *self
        }
    }
}

fn to_ip(value: u128, ipv6: bool) -> IpAddr {
    if ipv6 {
        IpAddr::V6(Ipv6Addr::from(value))
    } else {
        IpAddr::V4(Ipv4Addr::from(value as u32))
    }
}

impl fmt::Display for FlowKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "proto {} {}:{} -> {}:{}",
            self.protocol,
            self.source_ip(),
            self.source_port,
            self.destination_ip(),
            self.destination_port
        )
    }
}

/// The outcome of parsing one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// An IP packet that can be judged.
    Ip(PacketMeta),
    /// A frame that carries no IP (ARP, MPLS, LLDP, …). `ethertype` is the
    /// innermost EtherType (after VLAN tags) or the Linux cooked-capture
    /// protocol field; for an 802.3 frame it is the length field (< 0x0600).
    NonIp { ethertype: u16 },
    /// A frame that cannot be judged.
    Drop(DropReason),
}

impl Parsed {
    /// The packet's metadata, when it is an IP packet that can be judged.
    pub fn meta(&self) -> Option<&PacketMeta> {
        match self {
            Parsed::Ip(meta) => Some(meta),
            _ => None,
        }
    }

    /// Why the frame was dropped, when it was.
    pub fn drop_reason(&self) -> Option<DropReason> {
        match self {
            Parsed::Drop(reason) => Some(*reason),
            _ => None,
        }
    }
}

/// What the dataplane needs to know about one IP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketMeta {
    /// The flow, in this packet's direction. Non-first fragments have zero
    /// ports; ICMP/ICMPv6 echo have the identifier in both ports.
    pub key: FlowKey,
    /// The TCP flags byte (CWR ECE URG ACK PSH RST SYN FIN); 0 when not TCP
    /// or when no TCP header is present (a non-first fragment).
    pub tcp_flags: u8,
    /// The IP length the header declares, from the start of the IP header
    /// (IPv4 total length; IPv6 40 + payload length, or the captured length
    /// for a jumbogram). May exceed what was captured.
    pub ip_length: u32,
    /// Set when the packet is a fragment of a larger datagram.
    pub fragment: Option<Fragment>,
    /// What an ICMP/ICMPv6 header says; `None` for other protocols and for
    /// non-first ICMP fragments.
    pub icmp: IcmpInfo,
    /// The ICMP/ICMPv6 (type, code) when an ICMP header was read.
    pub icmp_type_code: Option<(u8, u8)>,
}

impl PacketMeta {
    /// An ICMPv6 neighbour-discovery message (router/neighbour solicitation
    /// or advertisement, redirect: types 133 to 137).
    pub fn is_neighbour_discovery(&self) -> bool {
        self.key.ipv6
            && self.key.protocol == 58
            && matches!(self.icmp_type_code, Some((kind, _)) if icmp::is_neighbour_discovery_type(kind))
    }

    /// A fragment other than the first: its transport header (and so its
    /// ports) is in another packet.
    pub fn is_later_fragment(&self) -> bool {
        matches!(self.fragment, Some(fragment) if !fragment.is_first())
    }
}

/// The identity of one IP fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fragment {
    /// IPv4 identification, or the IPv6 fragment header's identification.
    pub id: u32,
    /// Offset in 8-byte units; 0 for the first fragment.
    pub offset: u16,
    /// More fragments follow.
    pub more: bool,
}

impl Fragment {
    /// The first fragment, which carries the transport header.
    pub fn is_first(&self) -> bool {
        self.offset == 0
    }
}

/// What an ICMP or ICMPv6 message means for flow tracking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IcmpInfo {
    /// Not ICMP, or no ICMP header in this packet (non-first fragment).
    None,
    /// Echo request or reply (ICMP 8/0, ICMPv6 128/129); the key's ports
    /// hold the identifier.
    Echo { request: bool },
    /// An error (ICMP 3, 4, 5, 11, 12; ICMPv6 1 to 4) quoting part of an
    /// earlier packet. `quoted` is that packet's flow in its own direction:
    /// addresses and protocol always, ports when the quote reaches them (an
    /// echo's identifier for a quoted ping), zero otherwise.
    Error { quoted: FlowKey },
    /// Any other message (neighbour discovery, MLD, timestamp, …).
    Other,
}

/// Parse one captured frame of the given link type. Zero-copy, allocation
/// free, never panics.
pub fn parse(link: LinkType, frame: &[u8]) -> Parsed {
    match parse_frame(link, frame) {
        Ok(parsed) => parsed,
        Err(reason) => Parsed::Drop(reason),
    }
}

fn parse_frame(link: LinkType, frame: &[u8]) -> Result<Parsed, DropReason> {
    let packet = match link::network(link, frame)? {
        link::Network::Ipv4(bytes) => ip::ipv4(bytes)?,
        link::Network::Ipv6(bytes) => ip::ipv6(bytes, ip::Mode::Packet)?,
        link::Network::Other { ethertype } => return Ok(Parsed::NonIp { ethertype }),
    };
    let mut meta = PacketMeta {
        key: FlowKey {
            source: packet.source,
            destination: packet.destination,
            source_port: 0,
            destination_port: 0,
            protocol: packet.protocol,
            ipv6: packet.ipv6,
        },
        tcp_flags: 0,
        ip_length: packet.ip_length,
        fragment: packet.fragment,
        icmp: IcmpInfo::None,
        icmp_type_code: None,
    };
    let Some(bytes) = packet.transport else {
        return Ok(Parsed::Ip(meta));
    };
    let message = match (packet.protocol, packet.ipv6) {
        (1, false) => Some(icmp::icmpv4(bytes)?),
        (58, true) => Some(icmp::icmpv6(bytes)?),
        _ => None,
    };
    if let Some(message) = message {
        meta.key.source_port = message.identifier;
        meta.key.destination_port = message.identifier;
        meta.icmp = message.info;
        meta.icmp_type_code = Some(message.type_code);
    } else {
        let ports = transport::ports(packet.protocol, bytes, ip::Mode::Packet)?;
        meta.key.source_port = ports.source;
        meta.key.destination_port = ports.destination;
        meta.tcp_flags = ports.tcp_flags;
    }
    Ok(Parsed::Ip(meta))
}

#[cfg(test)]
mod tests;
