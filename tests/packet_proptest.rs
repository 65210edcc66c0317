//! `packet::parse` on hostile input: random bytes under every link type,
//! and valid frames (built with etherparse) cut at every length or with
//! bits flipped. Nothing may panic, and every `Ip` result must keep the
//! invariants the dataplane relies on.

use etherparse::{
    Icmpv4Type, Icmpv6Type, LinkExtSlice, NetSlice, PacketBuilder, SlicedPacket, TransportSlice,
};
use nsgd::packet::{parse, FlowKey, IcmpInfo, LinkType, Parsed};
use proptest::prelude::*;

const LINKS: [LinkType; 6] = [
    LinkType::Ethernet,
    LinkType::LinuxSll,
    LinkType::LinuxSll2,
    LinkType::RawIp,
    LinkType::Ipv4,
    LinkType::Ipv6,
];

const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 1];
const MAC_B: [u8; 6] = [2, 0, 0, 0, 0, 2];
const V6_A: [u8; 16] = [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const V6_B: [u8; 16] = [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

/// Valid Ethernet frames of every shape the parser knows.
fn seeds() -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    let mut push = |write: &dyn Fn(&mut Vec<u8>)| {
        let mut frame = Vec::new();
        write(&mut frame);
        frames.push(frame);
    };
    push(&|f| {
        PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp(1234, 80, 1, 1000)
            .syn()
            .write(f, &[1, 2, 3])
            .unwrap()
    });
    push(&|f| {
        PacketBuilder::ethernet2(MAC_A, MAC_B)
            .double_vlan(1.try_into().unwrap(), 2.try_into().unwrap())
            .ipv6(V6_A, V6_B, 64)
            .udp(53, 5353)
            .write(f, &[0; 16])
            .unwrap()
    });
    push(&|f| {
        PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .icmpv4_echo_request(7, 1)
            .write(f, &[0; 8])
            .unwrap()
    });
    let mut quoted = Vec::new();
    PacketBuilder::ipv4([10, 0, 0, 2], [10, 0, 0, 1], 64)
        .udp(5000, 53)
        .write(&mut quoted, &[0; 8])
        .unwrap();
    push(&|f| {
        PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .icmpv4_raw(3, 3, [0; 4])
            .write(f, &quoted)
            .unwrap()
    });
    let mut quoted6 = Vec::new();
    PacketBuilder::ipv6(V6_B, V6_A, 64)
        .tcp(443, 40000, 1, 1000)
        .write(&mut quoted6, &[])
        .unwrap();
    push(&|f| {
        PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv6(V6_A, V6_B, 64)
            .icmpv6_raw(1, 4, [0; 4])
            .write(f, &quoted6)
            .unwrap()
    });
    // IPv6 with hop-by-hop and a first fragment header, by hand.
    let mut v6 = vec![0; 12];
    v6.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0, 0, 28, 0, 64]);
    v6.extend_from_slice(&V6_A);
    v6.extend_from_slice(&V6_B);
    v6.extend_from_slice(&[44, 0, 1, 4, 0, 0, 0, 0]);
    v6.extend_from_slice(&[17, 0, 0, 1, 0, 0, 0, 9]);
    v6.extend_from_slice(&[0, 53, 0, 53, 0, 12, 0, 0, 1, 2, 3, 4]);
    frames.push(v6);
    frames
}

fn check_invariants(parsed: Parsed) {
    if let Parsed::Ip(meta) = parsed {
        if !meta.key.ipv6 {
            assert!(meta.key.source <= u128::from(u32::MAX));
            assert!(meta.key.destination <= u128::from(u32::MAX));
        }
        if meta.is_later_fragment() {
            assert_eq!(
                (
                    meta.key.source_port,
                    meta.key.destination_port,
                    meta.tcp_flags
                ),
                (0, 0, 0)
            );
            assert_eq!(meta.icmp, IcmpInfo::None);
        }
        if let IcmpInfo::Echo { .. } = meta.icmp {
            assert_eq!(meta.key.source_port, meta.key.destination_port);
        }
        if let IcmpInfo::Error { quoted } = meta.icmp {
            assert_eq!(quoted.ipv6, meta.key.ipv6);
        }
        if meta.key.protocol != 6 {
            assert_eq!(meta.tcp_flags, 0);
        }
        if meta.is_neighbour_discovery() {
            assert_eq!(meta.icmp, IcmpInfo::Other);
        }
    }
}

/// The reference: the key etherparse's full `SlicedPacket` gives, for the
/// frames it slices completely (VLAN-only link extensions, an unfragmented
/// IP packet, TCP/UDP/ICMP echo on top). `None` when it cannot say.
fn reference_key(frame: &[u8]) -> Option<FlowKey> {
    let sliced = SlicedPacket::from_ethernet(frame).ok()?;
    if !sliced
        .link_exts
        .iter()
        .all(|ext| matches!(ext, LinkExtSlice::Vlan(_)))
    {
        return None;
    }
    let (source, destination, ipv6, payload) = match sliced.net? {
        NetSlice::Ipv4(ip) => (
            u128::from(u32::from_be_bytes(ip.header().source())),
            u128::from(u32::from_be_bytes(ip.header().destination())),
            false,
            ip.payload().clone(),
        ),
        NetSlice::Ipv6(ip) => (
            u128::from_be_bytes(ip.header().source()),
            u128::from_be_bytes(ip.header().destination()),
            true,
            ip.payload().clone(),
        ),
        NetSlice::Arp(_) => return None,
    };
    if payload.fragmented {
        return None;
    }
    let (source_port, destination_port) = match sliced.transport? {
        TransportSlice::Tcp(tcp) => (tcp.source_port(), tcp.destination_port()),
        TransportSlice::Udp(udp) => (udp.source_port(), udp.destination_port()),
        TransportSlice::Icmpv4(icmp) => match icmp.icmp_type() {
            Icmpv4Type::EchoRequest(echo) | Icmpv4Type::EchoReply(echo) => (echo.id, echo.id),
            _ => return None,
        },
        TransportSlice::Icmpv6(icmp) => match icmp.icmp_type() {
            Icmpv6Type::EchoRequest(echo) | Icmpv6Type::EchoReply(echo) => (echo.id, echo.id),
            _ => return None,
        },
        _ => return None,
    };
    Some(FlowKey {
        source,
        destination,
        source_port,
        destination_port,
        protocol: payload.ip_number.0,
        ipv6,
    })
}

/// Where the reference can judge a frame, `parse` must agree with it.
fn check_against_reference(frame: &[u8]) {
    if let Some(expected) = reference_key(frame) {
        match parse(LinkType::Ethernet, frame) {
            Parsed::Ip(meta) => assert_eq!(meta.key, expected, "{frame:02x?}"),
            other => panic!("reference keyed {expected}, parse gave {other:?} for {frame:02x?}"),
        }
    }
}

#[derive(Debug, Clone)]
enum Upper {
    Tcp { source: u16, destination: u16 },
    Udp { source: u16, destination: u16 },
    Echo { id: u16, request: bool },
}

fn upper() -> impl Strategy<Value = Upper> {
    prop_oneof![
        (any::<u16>(), any::<u16>()).prop_map(|(source, destination)| Upper::Tcp {
            source,
            destination
        }),
        (any::<u16>(), any::<u16>()).prop_map(|(source, destination)| Upper::Udp {
            source,
            destination
        }),
        (any::<u16>(), any::<bool>()).prop_map(|(id, request)| Upper::Echo { id, request }),
    ]
}

/// A random valid frame: random addresses, 0-2 VLAN tags, IPv4 or IPv6,
/// TCP/UDP/echo with random ports or identifier and payload.
fn build(
    ipv6: bool,
    tags: u8,
    source: [u8; 16],
    destination: [u8; 16],
    upper: &Upper,
    payload: &[u8],
) -> Vec<u8> {
    let link = PacketBuilder::ethernet2(MAC_A, MAC_B);
    let vlan_id = |v: u16| v.try_into().unwrap();
    macro_rules! finish {
        ($ip:expr) => {{
            let mut frame = Vec::new();
            match (upper, ipv6) {
                (
                    Upper::Tcp {
                        source,
                        destination,
                    },
                    _,
                ) => $ip
                    .tcp(*source, *destination, 1, 1000)
                    .ack(5)
                    .write(&mut frame, payload),
                (
                    Upper::Udp {
                        source,
                        destination,
                    },
                    _,
                ) => $ip.udp(*source, *destination).write(&mut frame, payload),
                (Upper::Echo { id, request: true }, false) => {
                    $ip.icmpv4_echo_request(*id, 1).write(&mut frame, payload)
                }
                (Upper::Echo { id, request: false }, false) => {
                    $ip.icmpv4_echo_reply(*id, 1).write(&mut frame, payload)
                }
                (Upper::Echo { id, request: true }, true) => {
                    $ip.icmpv6_echo_request(*id, 1).write(&mut frame, payload)
                }
                (Upper::Echo { id, request: false }, true) => {
                    $ip.icmpv6_echo_reply(*id, 1).write(&mut frame, payload)
                }
            }
            .unwrap();
            frame
        }};
    }
    let v4 = |a: [u8; 16]| [a[0], a[1], a[2], a[3]];
    match (tags, ipv6) {
        (0, false) => finish!(link.ipv4(v4(source), v4(destination), 64)),
        (0, true) => finish!(link.ipv6(source, destination, 64)),
        (1, false) => finish!(link
            .single_vlan(vlan_id(7))
            .ipv4(v4(source), v4(destination), 64)),
        (1, true) => finish!(link.single_vlan(vlan_id(7)).ipv6(source, destination, 64)),
        (_, false) => {
            finish!(link
                .double_vlan(vlan_id(1), vlan_id(2))
                .ipv4(v4(source), v4(destination), 64))
        }
        (_, true) => {
            finish!(link
                .double_vlan(vlan_id(1), vlan_id(2))
                .ipv6(source, destination, 64))
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    /// Differential: random valid frames agree with etherparse's own full
    /// slicing, and stay consistent when the capture cuts them short.
    #[test]
    fn random_valid_frames_match_the_reference(
        ipv6 in any::<bool>(),
        tags in 0u8..3,
        source in any::<[u8; 16]>(),
        destination in any::<[u8; 16]>(),
        upper in upper(),
        payload in proptest::collection::vec(any::<u8>(), 0..64),
        cut in any::<prop::sample::Index>(),
    ) {
        let frame = build(ipv6, tags, source, destination, &upper, &payload);
        let expected = reference_key(&frame).expect("etherparse slices what it built");
        let Parsed::Ip(meta) = parse(LinkType::Ethernet, &frame) else {
            panic!("valid frame dropped");
        };
        prop_assert_eq!(meta.key, expected);
        prop_assert_eq!(meta.ip_length as usize, frame.len() - 14 - 4 * usize::from(tags));
        match upper {
            Upper::Tcp { .. } => prop_assert_eq!(meta.tcp_flags, 0x10),
            Upper::Echo { request, .. } => prop_assert_eq!(meta.icmp, IcmpInfo::Echo { request }),
            Upper::Udp { .. } => prop_assert_eq!(meta.icmp, IcmpInfo::None),
        }
        // A snap-length cut either keeps the same key or drops; never a
        // different flow.
        let cut = &frame[..cut.index(frame.len() + 1)];
        match parse(LinkType::Ethernet, cut) {
            Parsed::Ip(short) => {
                prop_assert_eq!(short.key, expected);
                prop_assert_eq!(short.ip_length, meta.ip_length);
            }
            Parsed::Drop(_) => {}
            Parsed::NonIp { .. } => prop_assert!(false, "a cut IP frame is not non-IP"),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn random_bytes_never_panic(link in 0..LINKS.len(), bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        check_invariants(parse(LINKS[link], &bytes));
    }

    /// Random bytes behind a plausible start, so the deeper layers see
    /// input too.
    #[test]
    fn random_payloads_behind_valid_prefixes(
        prefix in prop::sample::select(vec![
            &[0x45u8][..],
            &[0x46u8, 0, 0, 0xff][..],
            &[0x60u8, 0, 0, 0, 0, 0xff][..],
        ]),
        link in prop::sample::select(vec![LinkType::RawIp, LinkType::Ipv4, LinkType::Ipv6]),
        tail in proptest::collection::vec(any::<u8>(), 0..160),
    ) {
        let mut bytes = prefix.to_vec();
        bytes.extend_from_slice(&tail);
        check_invariants(parse(link, &bytes));
    }

    #[test]
    fn truncated_and_flipped_frames_never_panic(
        seed in 0usize..6,
        cut in any::<prop::sample::Index>(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), 0u8..8), 0..4),
    ) {
        let mut frame = seeds()[seed].clone();
        for (at, bit) in flips {
            let at = at.index(frame.len());
            frame[at] ^= 1 << bit;
        }
        let length = cut.index(frame.len() + 1);
        check_invariants(parse(LinkType::Ethernet, &frame[..length]));
        check_against_reference(&frame[..length]);
        // The same bytes without the Ethernet header, as raw IP.
        check_invariants(parse(LinkType::RawIp, frame.get(14..length).unwrap_or(&[])));
    }
}

#[test]
fn every_prefix_of_every_seed() {
    for frame in seeds() {
        assert!(matches!(parse(LinkType::Ethernet, &frame), Parsed::Ip(_)));
        for length in 0..=frame.len() {
            for link in LINKS {
                check_invariants(parse(link, &frame[..length]));
            }
        }
    }
}
