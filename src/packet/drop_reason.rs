//! Why a frame could not be judged. Owns the [`DropReason`] vocabulary: a
//! fieldless `Copy` enum so counters can be indexed by it, a stable
//! machine name ([`DropReason::as_str`]) for logs and metrics, and a
//! full-sentence `Display` for people. Adding a reason appends to
//! [`DropReason::ALL`]; names never change once released.

use std::fmt;

/// The reason a frame was dropped before it could be judged by policy.
///
/// Each reason names the layer and says whether bytes were *missing*
/// (`truncated-…`) or *wrong* (`bad-…`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DropReason {
    /// The capture's link type is not one nsgd parses.
    UnsupportedLinkType,
    /// Fewer than 14 bytes: no complete Ethernet II header.
    TruncatedEthernet,
    /// A VLAN tag (802.1Q/802.1ad/QinQ) was cut short.
    TruncatedVlan,
    /// More stacked VLAN tags than [`MAX_VLAN_TAGS`](super::link::MAX_VLAN_TAGS).
    VlanTooDeep,
    /// The Linux cooked-capture (SLL or SLL2) header was cut short.
    TruncatedLinuxSll,
    /// Raw-IP frame with no bytes at all, so not even a version nibble.
    TruncatedIp,
    /// The IP version nibble does not match the link layer's promise (or is
    /// neither 4 nor 6 for raw IP).
    BadIpVersion,
    /// The IPv4 header (20 bytes plus options per IHL) was not captured in
    /// full.
    TruncatedIpv4,
    /// IPv4 IHL below 5 (a header shorter than 20 bytes).
    BadIpv4HeaderLength,
    /// IPv4 total length smaller than the header length it declares.
    BadIpv4TotalLength,
    /// Fewer than the 40 bytes of the fixed IPv6 header.
    TruncatedIpv6,
    /// An IPv6 extension header is malformed, out of order, or runs past the
    /// captured bytes or the payload length.
    BadIpv6Extension,
    /// The transport header of an unfragmented packet or first fragment does
    /// not reach the fields needed to judge it.
    TruncatedTransport,
    /// TCP data offset below 5 (a header shorter than 20 bytes).
    BadTcpHeaderLength,
    /// An ICMP/ICMPv6 error whose quoted packet is too short to give the
    /// original addresses and protocol.
    TruncatedIcmpQuote,
    /// An ICMP/ICMPv6 error whose quoted packet is not a valid IP header of
    /// the same family.
    BadIcmpQuote,
}

impl DropReason {
    /// Every reason, in declaration order (a stable index for counters).
    pub const ALL: [DropReason; 16] = [
        DropReason::UnsupportedLinkType,
        DropReason::TruncatedEthernet,
        DropReason::TruncatedVlan,
        DropReason::VlanTooDeep,
        DropReason::TruncatedLinuxSll,
        DropReason::TruncatedIp,
        DropReason::BadIpVersion,
        DropReason::TruncatedIpv4,
        DropReason::BadIpv4HeaderLength,
        DropReason::BadIpv4TotalLength,
        DropReason::TruncatedIpv6,
        DropReason::BadIpv6Extension,
        DropReason::TruncatedTransport,
        DropReason::BadTcpHeaderLength,
        DropReason::TruncatedIcmpQuote,
        DropReason::BadIcmpQuote,
    ];

    /// Position in [`DropReason::ALL`], for array-indexed counters.
    #[inline]
    pub fn index(self) -> usize {
        self as usize
    }

    /// The stable machine name (kebab-case) used in logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::UnsupportedLinkType => "unsupported-link-type",
            DropReason::TruncatedEthernet => "truncated-ethernet",
            DropReason::TruncatedVlan => "truncated-vlan",
            DropReason::VlanTooDeep => "vlan-too-deep",
            DropReason::TruncatedLinuxSll => "truncated-linux-sll",
            DropReason::TruncatedIp => "truncated-ip",
            DropReason::BadIpVersion => "bad-ip-version",
            DropReason::TruncatedIpv4 => "truncated-ipv4",
            DropReason::BadIpv4HeaderLength => "bad-ipv4-header-length",
            DropReason::BadIpv4TotalLength => "bad-ipv4-total-length",
            DropReason::TruncatedIpv6 => "truncated-ipv6",
            DropReason::BadIpv6Extension => "bad-ipv6-extension",
            DropReason::TruncatedTransport => "truncated-transport",
            DropReason::BadTcpHeaderLength => "bad-tcp-header-length",
            DropReason::TruncatedIcmpQuote => "truncated-icmp-quote",
            DropReason::BadIcmpQuote => "bad-icmp-quote",
        }
    }

    /// The reason whose [`as_str`](DropReason::as_str) is `name`.
    pub fn from_name(name: &str) -> Option<DropReason> {
        DropReason::ALL
            .into_iter()
            .find(|reason| reason.as_str() == name)
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sentence = match self {
            DropReason::UnsupportedLinkType => {
                "The capture's link type is not one nsgd can parse (Ethernet, Linux SLL/SLL2, raw IP, IPv4 or IPv6)."
            }
            DropReason::TruncatedEthernet => {
                "The frame ended before the 14-byte Ethernet II header was complete."
            }
            DropReason::TruncatedVlan => "The frame ended inside a 4-byte VLAN tag.",
            DropReason::VlanTooDeep => "The frame stacks more VLAN tags than nsgd accepts.",
            DropReason::TruncatedLinuxSll => {
                "The frame ended before the Linux cooked-capture (SLL or SLL2) header was complete."
            }
            DropReason::TruncatedIp => "The frame ended before the first byte of the IP header.",
            DropReason::BadIpVersion => {
                "The IP version field is not the version the link layer announced (or neither 4 nor 6)."
            }
            DropReason::TruncatedIpv4 => {
                "The frame ended before the IPv4 header (with the options its IHL declares) was complete."
            }
            DropReason::BadIpv4HeaderLength => {
                "The IPv4 header length (IHL) is below 5, shorter than the fixed 20-byte header."
            }
            DropReason::BadIpv4TotalLength => {
                "The IPv4 total length is smaller than the header length the packet declares."
            }
            DropReason::TruncatedIpv6 => {
                "The frame ended before the 40-byte IPv6 header was complete."
            }
            DropReason::BadIpv6Extension => {
                "An IPv6 extension header is malformed, out of order, or runs past the end of the packet."
            }
            DropReason::TruncatedTransport => {
                "The transport header was cut short before the ports (and, for TCP, the flags) it must carry."
            }
            DropReason::BadTcpHeaderLength => {
                "The TCP data offset is below 5, shorter than the fixed 20-byte header."
            }
            DropReason::TruncatedIcmpQuote => {
                "The ICMP error was cut short before the quoted packet's IP header was complete."
            }
            DropReason::BadIcmpQuote => {
                "The ICMP error quotes something that is not a valid IP header of the same family."
            }
        };
        f.write_str(sentence)
    }
}

impl std::error::Error for DropReason {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_kebab_case_and_round_trip() {
        for (position, reason) in DropReason::ALL.into_iter().enumerate() {
            assert_eq!(reason.index(), position);
            let name = reason.as_str();
            assert!(name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'-' || b.is_ascii_digit()));
            assert_eq!(DropReason::from_name(name), Some(reason));
            let sentence = reason.to_string();
            assert!(sentence.starts_with(char::is_uppercase) && sentence.ends_with('.'));
        }
        assert_eq!(DropReason::from_name("no-such-reason"), None);
    }
}
