//! The network layer: a checked IPv4 or IPv6 header (with IPv6 extension
//! headers) to addresses, the upper-layer protocol, the fragment identity
//! and the captured transport bytes. Never looks inside the transport
//! header (that is `transport.rs` and `icmp.rs`).
//!
//! Length policy (captures are routinely cut by the snap length):
//! - the IP header itself must be captured in full (IPv4 with every option
//!   byte its IHL declares, the 40-byte IPv6 header, and every IPv6
//!   extension header before the upper-layer header);
//! - a length field larger than what was captured is *not* an error: the
//!   transport bytes are the captured ones, and `ip_length` still reports
//!   the length the header declares (for byte counters);
//! - a length field smaller than the header it covers is an error
//!   (`bad-ipv4-total-length`; for IPv6 the extension headers must fit in
//!   the payload length, else `bad-ipv6-extension`);
//! - bytes past the declared length (Ethernet padding, a trailing FCS) are
//!   ignored.
//!
//! Inside an ICMP error ([`Mode::Quote`]) the quoted packet is cut short by
//! design, so IPv6 extension headers that run off the end stop the walk
//! (the quote then yields no ports) instead of failing it.

use etherparse::{
    IpAuthHeaderSlice, IpNumber, Ipv4HeaderSlice, Ipv6FragmentHeaderSlice, Ipv6HeaderSlice,
    Ipv6RawExtHeaderSlice,
};

use super::{DropReason, Fragment};

/// Whether the bytes are a packet on the wire or the quote in an ICMP error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    Packet,
    Quote,
}

/// A checked IP header and what follows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct IpPacket<'a> {
    pub source: u128,
    pub destination: u128,
    pub ipv6: bool,
    /// The upper-layer protocol (after IPv6 extension headers).
    pub protocol: u8,
    /// The length the header declares, from the start of the IP header.
    pub ip_length: u32,
    /// Set only when the packet really is a fragment (an IPv6 atomic
    /// fragment, offset 0 without more fragments, is a whole packet).
    pub fragment: Option<Fragment>,
    /// The captured bytes of the upper-layer header and payload, or `None`
    /// for a non-first fragment (which carries no transport header).
    pub transport: Option<&'a [u8]>,
}

/// Parse an IPv4 header at the start of `bytes` (the same rules hold for a
/// quote: its total length is the original packet's).
pub(super) fn ipv4(bytes: &[u8]) -> Result<IpPacket<'_>, DropReason> {
    // Judge the fields in the order that names the real fault: a header
    // whose total length cannot even hold its own IHL is wrong, not merely
    // truncated, even when the capture also stops early.
    let first = *bytes.first().ok_or(DropReason::TruncatedIpv4)?;
    if first >> 4 != 4 {
        return Err(DropReason::BadIpVersion);
    }
    let header_length = usize::from(first & 0x0f) * 4;
    if header_length < 20 {
        return Err(DropReason::BadIpv4HeaderLength);
    }
    if let Some(total) = bytes.get(2..4) {
        if usize::from(u16::from_be_bytes([total[0], total[1]])) < header_length {
            return Err(DropReason::BadIpv4TotalLength);
        }
    }
    let header = Ipv4HeaderSlice::from_slice(bytes).map_err(|_| DropReason::TruncatedIpv4)?;
    let total_length = usize::from(header.total_len());
    let end = bytes.len().min(total_length);
    let offset = header.fragments_offset().value();
    let more = header.more_fragments();
    let fragment = (offset != 0 || more).then_some(Fragment {
        id: u32::from(header.identification()),
        offset,
        more,
    });
    let transport = if offset == 0 {
        Some(bytes.get(header_length..end).unwrap_or(&[]))
    } else {
        None
    };
    Ok(IpPacket {
        source: u128::from(u32::from_be_bytes(header.source())),
        destination: u128::from(u32::from_be_bytes(header.destination())),
        ipv6: false,
        protocol: header.protocol().0,
        ip_length: total_length as u32,
        fragment,
        transport,
    })
}

/// Parse an IPv6 header and its extension headers at the start of `bytes`.
pub(super) fn ipv6(bytes: &[u8], mode: Mode) -> Result<IpPacket<'_>, DropReason> {
    let header = Ipv6HeaderSlice::from_slice(bytes).map_err(|error| match error {
        etherparse::err::ipv6::HeaderSliceError::Len(_) => DropReason::TruncatedIpv6,
        etherparse::err::ipv6::HeaderSliceError::Content(_) => DropReason::BadIpVersion,
    })?;
    let header_length = header.slice().len();
    let payload_length = usize::from(header.payload_length());
    let jumbo = payload_length == 0 && header.next_header() == IpNumber::IPV6_HEADER_HOP_BY_HOP;
    // A jumbogram (RFC 2675) says 0 here and its real length in a
    // hop-by-hop option; fall back to what was captured.
    let (end, ip_length) = if jumbo {
        (bytes.len(), bytes.len())
    } else {
        let declared = header_length + payload_length;
        (bytes.len().min(declared), declared)
    };
    let payload = bytes.get(header_length..end).unwrap_or(&[]);
    let walk = extensions(header.next_header(), payload, mode)?;
    Ok(IpPacket {
        source: u128::from_be_bytes(header.source()),
        destination: u128::from_be_bytes(header.destination()),
        ipv6: true,
        protocol: walk.protocol.0,
        ip_length: ip_length as u32,
        fragment: walk.fragment,
        transport: walk.transport,
    })
}

struct Walk<'a> {
    protocol: IpNumber,
    fragment: Option<Fragment>,
    transport: Option<&'a [u8]>,
}

/// Walk the IPv6 extension headers with etherparse's checked slices.
///
/// Hand-rolled rather than `Ipv6ExtensionsSlice::from_slice` because the
/// walk must stop right after the fragment header of a non-first fragment:
/// what follows there is a piece of payload, not another header.
fn extensions(mut next: IpNumber, mut rest: &[u8], mode: Mode) -> Result<Walk<'_>, DropReason> {
    let mut fragment = None;
    let mut first_header = true;
    loop {
        let length = match next {
            IpNumber::IPV6_FRAGMENTATION_HEADER => {
                match Ipv6FragmentHeaderSlice::from_slice(rest) {
                    Ok(slice) => {
                        let offset = slice.fragment_offset().value();
                        if slice.is_fragmenting_payload() {
                            fragment = Some(Fragment {
                                id: slice.identification(),
                                offset,
                                more: slice.more_fragments(),
                            });
                        }
                        if offset != 0 {
                            return Ok(Walk {
                                protocol: slice.next_header(),
                                fragment,
                                transport: None,
                            });
                        }
                        next = slice.next_header();
                        slice.slice().len()
                    }
                    Err(_) => return stop(next, fragment, mode),
                }
            }
            IpNumber::AUTHENTICATION_HEADER => match IpAuthHeaderSlice::from_slice(rest) {
                Ok(slice) => {
                    next = slice.next_header();
                    slice.slice().len()
                }
                Err(_) => return stop(next, fragment, mode),
            },
            IpNumber::IPV6_HEADER_HOP_BY_HOP if !first_header => {
                // RFC 8200 §4.1: hop-by-hop options only directly after the
                // IPv6 header.
                return stop(next, fragment, mode);
            }
            header if Ipv6RawExtHeaderSlice::header_type_supported(header) => {
                match Ipv6RawExtHeaderSlice::from_slice(rest) {
                    Ok(slice) => {
                        next = slice.next_header();
                        slice.slice().len()
                    }
                    Err(_) => return stop(next, fragment, mode),
                }
            }
            _ => {
                return Ok(Walk {
                    protocol: next,
                    fragment,
                    transport: Some(rest),
                })
            }
        };
        rest = rest.get(length..).unwrap_or(&[]);
        first_header = false;
    }
}

/// A malformed extension chain: fatal on the wire, the end of the readable
/// part in a quote.
fn stop<'a>(
    protocol: IpNumber,
    fragment: Option<Fragment>,
    mode: Mode,
) -> Result<Walk<'a>, DropReason> {
    match mode {
        Mode::Packet => Err(DropReason::BadIpv6Extension),
        Mode::Quote => Ok(Walk {
            protocol,
            fragment,
            transport: Some(&[]),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{IpFragOffset, Ipv4Header, Ipv6Header, PacketBuilder};

    fn ipv4_udp(fragment: Option<(u16, bool)>) -> Vec<u8> {
        let mut header =
            Ipv4Header::new(8, 64, IpNumber::UDP, [10, 0, 0, 1], [10, 0, 0, 2]).unwrap();
        header.identification = 0x1234;
        if let Some((offset, more)) = fragment {
            header.fragment_offset = IpFragOffset::try_new(offset).unwrap();
            header.more_fragments = more;
        }
        let mut bytes = Vec::new();
        header.write(&mut bytes).unwrap();
        bytes.extend_from_slice(&[0x04, 0xd2, 0x00, 0x35, 0, 8, 0, 0]);
        bytes
    }

    #[test]
    fn ipv4_addresses_protocol_and_length() {
        let bytes = ipv4_udp(None);
        let packet = ipv4(&bytes).unwrap();
        assert_eq!(packet.source, 0x0a00_0001);
        assert_eq!(packet.destination, 0x0a00_0002);
        assert!(!packet.ipv6);
        assert_eq!(packet.protocol, 17);
        assert_eq!(packet.ip_length, 28);
        assert_eq!(packet.fragment, None);
        assert_eq!(packet.transport, Some(&bytes[20..]));
    }

    #[test]
    fn ipv4_padding_is_trimmed_and_snaplen_is_tolerated() {
        let mut bytes = ipv4_udp(None);
        bytes.extend_from_slice(&[0xee; 6]);
        let packet = ipv4(&bytes).unwrap();
        assert_eq!(packet.transport.unwrap().len(), 8);
        let packet = ipv4(&bytes[..24]).unwrap();
        assert_eq!(packet.transport.unwrap().len(), 4);
        assert_eq!(packet.ip_length, 28);
    }

    #[test]
    fn ipv4_options_are_skipped() {
        let builder = PacketBuilder::ipv4([1, 2, 3, 4], [5, 6, 7, 8], 20).udp(1, 2);
        let mut bytes = Vec::new();
        builder.write(&mut bytes, &[]).unwrap();
        // Rebuild with 4 bytes of options (IHL 6).
        let mut with_options = vec![0x46];
        with_options.extend_from_slice(&bytes[1..20]);
        with_options[3] += 4;
        with_options.extend_from_slice(&[1, 1, 1, 0]);
        with_options.extend_from_slice(&bytes[20..]);
        let packet = ipv4(&with_options).unwrap();
        assert_eq!(packet.transport, Some(&bytes[20..]));
        assert_eq!(packet.ip_length, 32);
    }

    #[test]
    fn ipv4_fragments() {
        let first = ipv4_udp(Some((0, true)));
        let packet = ipv4(&first).unwrap();
        assert_eq!(
            packet.fragment,
            Some(Fragment {
                id: 0x1234,
                offset: 0,
                more: true
            })
        );
        assert!(packet.transport.is_some());
        let later = ipv4_udp(Some((185, false)));
        let packet = ipv4(&later).unwrap();
        assert_eq!(
            packet.fragment,
            Some(Fragment {
                id: 0x1234,
                offset: 185,
                more: false
            })
        );
        assert_eq!(packet.transport, None);
    }

    #[test]
    fn ipv4_errors() {
        let bytes = ipv4_udp(None);
        assert_eq!(ipv4(&[]), Err(DropReason::TruncatedIpv4));
        assert_eq!(ipv4(&bytes[..19]), Err(DropReason::TruncatedIpv4));
        assert_eq!(ipv4(&bytes[..3]), Err(DropReason::TruncatedIpv4));
        let mut bad = bytes.clone();
        bad[0] = 0x65;
        assert_eq!(ipv4(&bad), Err(DropReason::BadIpVersion));
        bad[0] = 0x44;
        assert_eq!(ipv4(&bad), Err(DropReason::BadIpv4HeaderLength));
        // IHL 15 with total length 20: wrong, not just short.
        bad[0] = 0x4f;
        bad[2..4].copy_from_slice(&20u16.to_be_bytes());
        assert_eq!(ipv4(&bad), Err(DropReason::BadIpv4TotalLength));
        let mut bad = bytes.clone();
        bad[2..4].copy_from_slice(&19u16.to_be_bytes());
        assert_eq!(ipv4(&bad), Err(DropReason::BadIpv4TotalLength));
    }

    fn ipv6_with(next: IpNumber, extension: &[u8], upper: &[u8]) -> Vec<u8> {
        let header = Ipv6Header {
            payload_length: (extension.len() + upper.len()) as u16,
            next_header: next,
            hop_limit: 64,
            source: [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            destination: [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
            ..Default::default()
        };
        let mut bytes = Vec::new();
        header.write(&mut bytes).unwrap();
        bytes.extend_from_slice(extension);
        bytes.extend_from_slice(upper);
        bytes
    }

    const UDP: [u8; 8] = [0x04, 0xd2, 0x00, 0x35, 0, 8, 0, 0];

    #[test]
    fn ipv6_plain_and_extension_chain() {
        let bytes = ipv6_with(IpNumber::UDP, &[], &UDP);
        let packet = ipv6(&bytes, Mode::Packet).unwrap();
        assert!(packet.ipv6);
        assert_eq!(packet.source, 0x2001_0db8_0000_0000_0000_0000_0000_0001);
        assert_eq!(packet.protocol, 17);
        assert_eq!(packet.ip_length, 48);
        assert_eq!(packet.transport, Some(&UDP[..]));

        // hop-by-hop -> routing -> destination options -> AH -> UDP
        let mut chain = vec![43, 0, 1, 4, 0, 0, 0, 0]; // hop-by-hop, next routing
        chain.extend_from_slice(&[60, 0, 0, 0, 0, 0, 0, 0]); // routing, next dest opts
        chain.extend_from_slice(&[51, 0, 1, 4, 0, 0, 0, 0]); // dest opts, next AH
        chain.extend_from_slice(&[17, 2, 0, 0, 0, 0, 0, 9, 0, 0, 0, 1, 0, 0, 0, 0]); // AH
        let bytes = ipv6_with(IpNumber::IPV6_HEADER_HOP_BY_HOP, &chain, &UDP);
        let packet = ipv6(&bytes, Mode::Packet).unwrap();
        assert_eq!(packet.protocol, 17);
        assert_eq!(packet.transport, Some(&UDP[..]));
    }

    #[test]
    fn ipv6_fragments() {
        let first = [17, 0, 0x00, 0x01, 0, 0, 0xbe, 0xef];
        let bytes = ipv6_with(IpNumber::IPV6_FRAGMENTATION_HEADER, &first, &UDP);
        let packet = ipv6(&bytes, Mode::Packet).unwrap();
        assert_eq!(
            packet.fragment,
            Some(Fragment {
                id: 0xbeef,
                offset: 0,
                more: true
            })
        );
        assert_eq!(packet.transport, Some(&UDP[..]));
        assert_eq!(packet.protocol, 17);

        // Offset 100 (units of 8 bytes), last; next header claims a routing
        // header but what follows is payload and must not be walked.
        let later = [43, 0, 0x03, 0x20, 0, 0, 0xbe, 0xef];
        let bytes = ipv6_with(IpNumber::IPV6_FRAGMENTATION_HEADER, &later, &[0xff; 3]);
        let packet = ipv6(&bytes, Mode::Packet).unwrap();
        assert_eq!(
            packet.fragment,
            Some(Fragment {
                id: 0xbeef,
                offset: 100,
                more: false
            })
        );
        assert_eq!(packet.transport, None);
        assert_eq!(packet.protocol, 43);

        // Atomic fragment: a whole packet.
        let atomic = [17, 0, 0, 0, 0, 0, 0, 7];
        let bytes = ipv6_with(IpNumber::IPV6_FRAGMENTATION_HEADER, &atomic, &UDP);
        let packet = ipv6(&bytes, Mode::Packet).unwrap();
        assert_eq!(packet.fragment, None);
        assert_eq!(packet.transport, Some(&UDP[..]));
    }

    #[test]
    fn ipv6_jumbogram_esp_and_no_next_header() {
        // Payload length 0 with hop-by-hop: a jumbogram, sized by capture.
        let mut bytes = ipv6_with(
            IpNumber::IPV6_HEADER_HOP_BY_HOP,
            &[17, 0, 0xc2, 4, 0, 1, 0, 16],
            &UDP,
        );
        bytes[4..6].copy_from_slice(&[0, 0]);
        let packet = ipv6(&bytes, Mode::Packet).unwrap();
        assert_eq!(packet.ip_length, 56);
        assert_eq!(packet.transport, Some(&UDP[..]));
        // ESP ends the walk: its payload is encrypted.
        let bytes = ipv6_with(
            IpNumber::ENCAPSULATING_SECURITY_PAYLOAD,
            &[],
            &[0, 0, 1, 0, 0, 0, 0, 1],
        );
        assert_eq!(ipv6(&bytes, Mode::Packet).unwrap().protocol, 50);
        let bytes = ipv6_with(IpNumber::IPV6_NO_NEXT_HEADER, &[], &[]);
        let packet = ipv6(&bytes, Mode::Packet).unwrap();
        assert_eq!((packet.protocol, packet.ip_length), (59, 40));
    }

    #[test]
    fn ipv6_errors() {
        let bytes = ipv6_with(IpNumber::UDP, &[], &UDP);
        assert_eq!(
            ipv6(&bytes[..39], Mode::Packet),
            Err(DropReason::TruncatedIpv6)
        );
        let mut bad = bytes.clone();
        bad[0] = 0x40;
        assert_eq!(ipv6(&bad, Mode::Packet), Err(DropReason::BadIpVersion));

        // Hop-by-hop claiming 16 bytes in a 8-byte payload.
        let bytes = ipv6_with(
            IpNumber::IPV6_HEADER_HOP_BY_HOP,
            &[17, 1, 0, 0, 0, 0, 0, 0],
            &[],
        );
        assert_eq!(
            ipv6(&bytes, Mode::Packet),
            Err(DropReason::BadIpv6Extension)
        );
        // ... which a quote tolerates (no ports).
        let quoted = ipv6(&bytes, Mode::Quote).unwrap();
        assert_eq!(quoted.transport, Some(&[][..]));

        // Hop-by-hop anywhere but first.
        let bytes = ipv6_with(
            IpNumber::IPV6_DESTINATION_OPTIONS,
            &[0, 0, 0, 0, 0, 0, 0, 0, 17, 0, 0, 0, 0, 0, 0, 0],
            &UDP,
        );
        assert_eq!(
            ipv6(&bytes, Mode::Packet),
            Err(DropReason::BadIpv6Extension)
        );

        // Extension header cut by the snap length.
        let bytes = ipv6_with(
            IpNumber::IPV6_ROUTE_HEADER,
            &[17, 0, 0, 0, 0, 0, 0, 0],
            &UDP,
        );
        assert_eq!(
            ipv6(&bytes[..45], Mode::Packet),
            Err(DropReason::BadIpv6Extension)
        );
        assert!(ipv6(&bytes[..48], Mode::Packet).is_ok());
        // Extension header running past the payload length, with bytes
        // captured beyond it (padding).
        let mut bytes = ipv6_with(IpNumber::IPV6_ROUTE_HEADER, &[17, 0, 0, 0], &[]);
        bytes.extend_from_slice(&[0; 8]);
        assert_eq!(
            ipv6(&bytes, Mode::Packet),
            Err(DropReason::BadIpv6Extension)
        );
    }
}
