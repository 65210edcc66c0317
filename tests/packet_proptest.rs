//! `packet::parse` on hostile input: random bytes under every link type,
//! and valid frames (built with etherparse) cut at every length or with
//! bits flipped. Nothing may panic, and every `Ip` result must keep the
//! invariants the dataplane relies on.

use etherparse::PacketBuilder;
use nsgd::packet::{parse, IcmpInfo, LinkType, Parsed};
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
