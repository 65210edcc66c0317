//! ICMP and ICMPv6: what the message means for flow tracking. Echo
//! request/reply carry their identifier (which becomes both ports of the
//! key, so a ping and its reply share one connection); errors carry the
//! flow of the packet they quote, read from the quoted IP header and the
//! first bytes after it; neighbour discovery and the rest are just
//! messages.
//!
//! The 8-byte ICMP header is read at fixed offsets rather than through
//! etherparse's `Icmpv4Slice`, which rejects timestamp messages whose length
//! is not exact; the quoted packet goes through the same checked IP views
//! as a packet on the wire (`ip.rs`), in their quote mode.

use super::ip::{self, IpPacket, Mode};
use super::{transport, DropReason, FlowKey, IcmpInfo};

const PROTOCOL_ICMP: u8 = 1;
const PROTOCOL_ICMPV6: u8 = 58;
/// Type, code, checksum and the 4 type-specific bytes.
const HEADER_LEN: usize = 8;

/// What one ICMP/ICMPv6 header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Icmp {
    pub info: IcmpInfo,
    /// The echo identifier, used as both ports; 0 for other messages.
    pub identifier: u16,
    pub type_code: (u8, u8),
}

/// ICMPv4 (protocol 1 in IPv4) from its captured bytes.
pub(super) fn icmpv4(bytes: &[u8]) -> Result<Icmp, DropReason> {
    let header = bytes
        .get(..HEADER_LEN)
        .ok_or(DropReason::TruncatedTransport)?;
    let (kind, code) = (header[0], header[1]);
    let identifier = u16::from_be_bytes([header[4], header[5]]);
    let (info, identifier) = match kind {
        8 => (IcmpInfo::Echo { request: true }, identifier),
        0 => (IcmpInfo::Echo { request: false }, identifier),
        // Destination unreachable, source quench, redirect, time exceeded,
        // parameter problem: all quote the offending packet.
        3 | 4 | 5 | 11 | 12 => {
            let quoted = quote(&bytes[HEADER_LEN..], false)?;
            (IcmpInfo::Error { quoted }, 0)
        }
        _ => (IcmpInfo::Other, 0),
    };
    Ok(Icmp {
        info,
        identifier,
        type_code: (kind, code),
    })
}

/// ICMPv6 (next header 58 in IPv6) from its captured bytes.
pub(super) fn icmpv6(bytes: &[u8]) -> Result<Icmp, DropReason> {
    let header = bytes
        .get(..HEADER_LEN)
        .ok_or(DropReason::TruncatedTransport)?;
    let (kind, code) = (header[0], header[1]);
    let identifier = u16::from_be_bytes([header[4], header[5]]);
    let (info, identifier) = match kind {
        128 => (IcmpInfo::Echo { request: true }, identifier),
        129 => (IcmpInfo::Echo { request: false }, identifier),
        // Destination unreachable, packet too big, time exceeded, parameter
        // problem.
        1..=4 => {
            let quoted = quote(&bytes[HEADER_LEN..], true)?;
            (IcmpInfo::Error { quoted }, 0)
        }
        // Neighbour discovery (133..=137), MLD and the rest.
        _ => (IcmpInfo::Other, 0),
    };
    Ok(Icmp {
        info,
        identifier,
        type_code: (kind, code),
    })
}

/// Whether an ICMPv6 type is neighbour discovery (RFC 4861: router
/// solicitation/advertisement, neighbour solicitation/advertisement,
/// redirect).
pub(super) fn is_neighbour_discovery_type(kind: u8) -> bool {
    (133..=137).contains(&kind)
}

/// The flow of the quoted packet, in its own direction.
fn quote(bytes: &[u8], ipv6: bool) -> Result<FlowKey, DropReason> {
    let packet = if ipv6 {
        ip::ipv6(bytes, Mode::Quote)
    } else {
        ip::ipv4(bytes)
    }
    .map_err(|reason| match reason {
        DropReason::TruncatedIpv4 | DropReason::TruncatedIpv6 => DropReason::TruncatedIcmpQuote,
        _ => DropReason::BadIcmpQuote,
    })?;
    let (source_port, destination_port) = quoted_ports(&packet);
    Ok(FlowKey {
        source: packet.source,
        destination: packet.destination,
        source_port,
        destination_port,
        protocol: packet.protocol,
        ipv6: packet.ipv6,
    })
}

/// Ports of a quoted packet as far as the quote allows: TCP/UDP ports, or
/// the identifier of a quoted echo (the ping's own key), else zero.
fn quoted_ports(packet: &IpPacket<'_>) -> (u16, u16) {
    let Some(bytes) = packet.transport else {
        return (0, 0);
    };
    let echo_types: &[u8] = match (packet.protocol, packet.ipv6) {
        (PROTOCOL_ICMP, false) => &[0, 8],
        (PROTOCOL_ICMPV6, true) => &[128, 129],
        _ => {
            let ports = transport::ports(packet.protocol, bytes, Mode::Quote).unwrap_or_default();
            return (ports.source, ports.destination);
        }
    };
    match bytes.get(..6) {
        Some(header) if echo_types.contains(&header[0]) => {
            let identifier = u16::from_be_bytes([header[4], header[5]]);
            (identifier, identifier)
        }
        _ => (0, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    fn udp_v4() -> Vec<u8> {
        let mut bytes = Vec::new();
        PacketBuilder::ipv4([10, 0, 0, 1], [192, 0, 2, 9], 64)
            .udp(5353, 53)
            .write(&mut bytes, &[1, 2, 3, 4])
            .unwrap();
        bytes
    }

    fn error_v4(kind: u8, quote: &[u8]) -> Vec<u8> {
        let mut bytes = vec![kind, 3, 0, 0, 0, 0, 0, 0];
        bytes.extend_from_slice(quote);
        bytes
    }

    #[test]
    fn echo_uses_identifier() {
        let icmp = icmpv4(&[8, 0, 0, 0, 0x12, 0x34, 0, 1]).unwrap();
        assert_eq!(icmp.info, IcmpInfo::Echo { request: true });
        assert_eq!(icmp.identifier, 0x1234);
        let icmp = icmpv4(&[0, 0, 0, 0, 0x12, 0x34, 0, 1]).unwrap();
        assert_eq!(icmp.info, IcmpInfo::Echo { request: false });
        let icmp = icmpv6(&[129, 0, 0, 0, 0, 7, 0, 1]).unwrap();
        assert_eq!(icmp.info, IcmpInfo::Echo { request: false });
        assert_eq!(icmp.identifier, 7);
        assert_eq!(
            icmpv4(&[8, 0, 0, 0, 0x12, 0x34, 0]),
            Err(DropReason::TruncatedTransport)
        );
        assert_eq!(icmpv6(&[128]), Err(DropReason::TruncatedTransport));
    }

    #[test]
    fn errors_quote_the_original_flow() {
        // Quote the IP header + first 8 bytes, as RFC 792 requires.
        let original = udp_v4();
        for kind in [3, 4, 5, 11, 12] {
            let icmp = icmpv4(&error_v4(kind, &original[..28])).unwrap();
            let IcmpInfo::Error { quoted } = icmp.info else {
                panic!("type {kind} is an error");
            };
            assert_eq!(quoted.source, 0x0a00_0001);
            assert_eq!(quoted.destination, 0xc000_0209);
            assert_eq!((quoted.source_port, quoted.destination_port), (5353, 53));
            assert_eq!(quoted.protocol, 17);
            assert!(!quoted.ipv6);
            assert_eq!(icmp.identifier, 0);
        }
        // A quote that ends before the ports still names the flow.
        let icmp = icmpv4(&error_v4(3, &original[..22])).unwrap();
        let IcmpInfo::Error { quoted } = icmp.info else {
            panic!()
        };
        assert_eq!(
            (quoted.source_port, quoted.destination_port, quoted.protocol),
            (0, 0, 17)
        );
    }

    #[test]
    fn quoted_echo_keeps_its_identifier() {
        let mut ping = Vec::new();
        PacketBuilder::ipv4([10, 0, 0, 1], [192, 0, 2, 9], 1)
            .icmpv4_echo_request(0x4242, 1)
            .write(&mut ping, &[0; 8])
            .unwrap();
        let icmp = icmpv4(&error_v4(11, &ping[..28])).unwrap();
        let IcmpInfo::Error { quoted } = icmp.info else {
            panic!()
        };
        assert_eq!(
            (quoted.source_port, quoted.destination_port, quoted.protocol),
            (0x4242, 0x4242, 1)
        );
    }

    #[test]
    fn quoted_later_fragments_have_no_ports() {
        let mut original = udp_v4();
        original[6] = 0x00;
        original[7] = 0x10; // offset 16 (x 8 bytes)
        let icmp = icmpv4(&error_v4(11, &original)).unwrap();
        let IcmpInfo::Error { quoted } = icmp.info else {
            panic!()
        };
        assert_eq!(
            (quoted.source_port, quoted.destination_port, quoted.protocol),
            (0, 0, 17)
        );

        let mut v6 = Vec::new();
        etherparse::Ipv6Header {
            payload_length: 16,
            next_header: etherparse::IpNumber::IPV6_FRAGMENTATION_HEADER,
            hop_limit: 1,
            source: [1; 16],
            destination: [2; 16],
            ..Default::default()
        }
        .write(&mut v6)
        .unwrap();
        v6.extend_from_slice(&[6, 0, 0, 0x18, 0, 0, 0, 1]); // offset 3, TCP
        v6.extend_from_slice(&[0x01, 0xbb, 0x9c, 0x40, 0, 0, 0, 0]);
        let mut bytes = vec![3, 1, 0, 0, 0, 0, 0, 0];
        bytes.extend_from_slice(&v6);
        let icmp = icmpv6(&bytes).unwrap();
        let IcmpInfo::Error { quoted } = icmp.info else {
            panic!()
        };
        assert_eq!(
            (quoted.source_port, quoted.destination_port, quoted.protocol),
            (0, 0, 6)
        );
        // The first fragment's quote keeps its ports.
        bytes[8 + 40 + 3] = 0x01;
        let icmp = icmpv6(&bytes).unwrap();
        let IcmpInfo::Error { quoted } = icmp.info else {
            panic!()
        };
        assert_eq!((quoted.source_port, quoted.destination_port), (443, 40000));
    }

    #[test]
    fn bad_quotes() {
        let original = udp_v4();
        assert_eq!(
            icmpv4(&error_v4(3, &original[..19])),
            Err(DropReason::TruncatedIcmpQuote)
        );
        assert_eq!(
            icmpv4(&error_v4(3, &[])),
            Err(DropReason::TruncatedIcmpQuote)
        );
        let mut wrong = original.clone();
        wrong[0] = 0x60;
        assert_eq!(icmpv4(&error_v4(3, &wrong)), Err(DropReason::BadIcmpQuote));
        // An ICMPv6 error quoting IPv4.
        let mut bytes = vec![1, 4, 0, 0, 0, 0, 0, 0];
        bytes.extend_from_slice(&original);
        bytes.extend_from_slice(&[0; 20]);
        assert_eq!(icmpv6(&bytes), Err(DropReason::BadIcmpQuote));
        assert_eq!(icmpv6(&bytes[..30]), Err(DropReason::TruncatedIcmpQuote));
    }

    #[test]
    fn icmpv6_errors_and_neighbour_discovery() {
        let mut original = Vec::new();
        PacketBuilder::ipv6([0x20; 16], [0x30; 16], 64)
            .tcp(40000, 443, 1, 1000)
            .syn()
            .write(&mut original, &[])
            .unwrap();
        for kind in 1..=4 {
            let mut bytes = vec![kind, 0, 0, 0, 0, 0, 5, 0x00];
            bytes.extend_from_slice(&original[..48]);
            let icmp = icmpv6(&bytes).unwrap();
            let IcmpInfo::Error { quoted } = icmp.info else {
                panic!()
            };
            assert!(quoted.ipv6);
            assert_eq!(
                (quoted.source_port, quoted.destination_port, quoted.protocol),
                (40000, 443, 6)
            );
            assert_eq!(quoted.source, u128::from_be_bytes([0x20; 16]));
        }
        for kind in 133..=137 {
            let icmp = icmpv6(&[kind, 0, 0, 0, 0, 0, 0, 0]).unwrap();
            assert_eq!(icmp.info, IcmpInfo::Other);
            assert!(is_neighbour_discovery_type(kind));
        }
        assert!(!is_neighbour_discovery_type(128));
        assert_eq!(
            icmpv6(&[143, 0, 0, 0, 0, 0, 0, 0]).unwrap().info,
            IcmpInfo::Other
        );
        assert_eq!(
            icmpv4(&[13, 0, 0, 0, 0, 0, 0, 0]).unwrap().info,
            IcmpInfo::Other
        );
    }
}
