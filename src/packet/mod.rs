//! Frames to flow keys: zero-copy parsing of captured frames (Ethernet, VLAN,
//! Linux cooked capture, raw IP) down to the 5-tuple and the few facts the
//! dataplane needs (TCP flags, fragment identity, the flow an ICMP error
//! quotes). Owns no state, allocates nothing, never panics on input: a frame
//! that cannot be judged yields a typed [`DropReason`].

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
