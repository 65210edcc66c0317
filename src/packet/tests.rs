//! Whole-frame tests of [`parse`]: every link type, the layers strung
//! together, and every [`DropReason`] reachable from a frame.

use super::*;
use etherparse::{IpNumber, Ipv4Header, PacketBuilder};

const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 1];
const MAC_B: [u8; 6] = [2, 0, 0, 0, 0, 2];
const V4_A: [u8; 4] = [10, 1, 0, 4];
const V4_B: [u8; 4] = [10, 2, 0, 5];
const V6_A: [u8; 16] = [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xa];
const V6_B: [u8; 16] = [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xb];

fn tcp_syn_v4() -> Vec<u8> {
    let mut frame = Vec::new();
    PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv4(V4_A, V4_B, 64)
        .tcp(40000, 443, 7, 64240)
        .syn()
        .write(&mut frame, &[])
        .unwrap();
    frame
}

fn meta(parsed: Parsed) -> PacketMeta {
    match parsed {
        Parsed::Ip(meta) => meta,
        other => panic!("expected an IP packet, got {other:?}"),
    }
}

fn reason(parsed: Parsed) -> DropReason {
    match parsed {
        Parsed::Drop(reason) => reason,
        other => panic!("expected a drop, got {other:?}"),
    }
}

#[test]
fn tcp_over_ethernet() {
    let frame = tcp_syn_v4();
    let meta = meta(parse(LinkType::Ethernet, &frame));
    assert_eq!(
        meta.key,
        FlowKey {
            source: u128::from(u32::from_be_bytes(V4_A)),
            destination: u128::from(u32::from_be_bytes(V4_B)),
            source_port: 40000,
            destination_port: 443,
            protocol: 6,
            ipv6: false,
        }
    );
    assert_eq!(
        meta.key.to_string(),
        "proto 6 10.1.0.4:40000 -> 10.2.0.5:443"
    );
    assert_eq!(meta.tcp_flags, 0x02);
    assert_eq!(meta.ip_length, 40);
    assert_eq!(meta.fragment, None);
    assert_eq!(meta.icmp, IcmpInfo::None);
    assert_eq!(meta.icmp_type_code, None);
    assert!(!meta.is_neighbour_discovery());
}

#[test]
fn vlan_and_qinq() {
    let mut frame = Vec::new();
    PacketBuilder::ethernet2(MAC_A, MAC_B)
        .double_vlan(100.try_into().unwrap(), 200.try_into().unwrap())
        .ipv6(V6_A, V6_B, 64)
        .udp(5353, 53)
        .write(&mut frame, &[0; 12])
        .unwrap();
    let meta = meta(parse(LinkType::Ethernet, &frame));
    assert!(meta.key.ipv6);
    assert_eq!(
        (
            meta.key.source_port,
            meta.key.destination_port,
            meta.key.protocol
        ),
        (5353, 53, 17)
    );
    assert_eq!(meta.ip_length, 60);
}

#[test]
fn every_link_type_reaches_the_same_key() {
    let ethernet = tcp_syn_v4();
    let ip = &ethernet[14..];
    let expected = meta(parse(LinkType::Ethernet, &ethernet)).key;

    let mut sll = vec![0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0, 0x08, 0x00];
    sll.extend_from_slice(ip);
    let mut sll2 = vec![
        0x08, 0x00, 0, 0, 0, 0, 0, 3, 0, 1, 4, 6, 2, 0, 0, 0, 0, 1, 0, 0,
    ];
    sll2.extend_from_slice(ip);
    for (link, frame) in [
        (LinkType::LinuxSll, &sll[..]),
        (LinkType::LinuxSll2, &sll2[..]),
        (LinkType::RawIp, ip),
        (LinkType::Ipv4, ip),
    ] {
        assert_eq!(meta(parse(link, frame)).key, expected, "{link:?}");
    }

    let mut v6 = Vec::new();
    PacketBuilder::ipv6(V6_A, V6_B, 64)
        .udp(1, 2)
        .write(&mut v6, &[])
        .unwrap();
    assert!(meta(parse(LinkType::Ipv6, &v6)).key.ipv6);
    assert!(meta(parse(LinkType::RawIp, &v6)).key.ipv6);
    assert_eq!(reason(parse(LinkType::Ipv4, &v6)), DropReason::BadIpVersion);
    assert_eq!(reason(parse(LinkType::Ipv6, ip)), DropReason::BadIpVersion);
}

#[test]
fn non_ip_frames() {
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&MAC_A);
    arp.extend_from_slice(&[0x08, 0x06]);
    arp.extend_from_slice(&[0; 28]);
    assert_eq!(
        parse(LinkType::Ethernet, &arp),
        Parsed::NonIp { ethertype: 0x0806 }
    );
    arp[12..14].copy_from_slice(&[0x88, 0x47]);
    assert_eq!(
        parse(LinkType::Ethernet, &arp),
        Parsed::NonIp { ethertype: 0x8847 }
    );
}

fn ipv4_fragment(offset: u16, more: bool, payload: &[u8]) -> Vec<u8> {
    let mut header = Ipv4Header::new(payload.len() as u16, 64, IpNumber::UDP, V4_A, V4_B).unwrap();
    header.identification = 777;
    header.fragment_offset = offset.try_into().unwrap();
    header.more_fragments = more;
    let mut frame = vec![0; 12];
    frame.extend_from_slice(&[0x08, 0x00]);
    header.write(&mut frame).unwrap();
    frame.extend_from_slice(payload);
    frame
}

#[test]
fn ipv4_fragments_first_has_ports_later_do_not() {
    let udp = [
        0x30, 0x39, 0x00, 0x35, 0x05, 0xdc, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8,
    ];
    let first = meta(parse(LinkType::Ethernet, &ipv4_fragment(0, true, &udp)));
    assert_eq!(
        (first.key.source_port, first.key.destination_port),
        (12345, 53)
    );
    assert_eq!(
        first.fragment,
        Some(Fragment {
            id: 777,
            offset: 0,
            more: true
        })
    );
    assert!(!first.is_later_fragment());

    let later = meta(parse(LinkType::Ethernet, &ipv4_fragment(2, false, &[9; 8])));
    assert_eq!((later.key.source_port, later.key.destination_port), (0, 0));
    assert_eq!(later.key.protocol, 17);
    assert_eq!(
        later.fragment,
        Some(Fragment {
            id: 777,
            offset: 2,
            more: false
        })
    );
    assert!(later.is_later_fragment());

    // A later fragment with no payload captured at all is still judged.
    let empty = meta(parse(LinkType::Ethernet, &ipv4_fragment(3, false, &[])));
    assert!(empty.is_later_fragment());

    // A first fragment too small to hold the ports is a tiny-fragment
    // attack (RFC 1858): it cannot be judged.
    assert_eq!(
        reason(parse(
            LinkType::Ethernet,
            &ipv4_fragment(0, true, &[0x30, 0x39])
        )),
        DropReason::TruncatedTransport
    );
}

#[test]
fn icmp_echo_and_errors() {
    let mut ping = Vec::new();
    PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv4(V4_A, V4_B, 64)
        .icmpv4_echo_request(0xbeef, 3)
        .write(&mut ping, &[0; 32])
        .unwrap();
    let request = meta(parse(LinkType::Ethernet, &ping));
    assert_eq!(request.icmp, IcmpInfo::Echo { request: true });
    assert_eq!(
        (request.key.source_port, request.key.destination_port),
        (0xbeef, 0xbeef)
    );
    assert_eq!(request.icmp_type_code, Some((8, 0)));

    // Port unreachable quoting the SYN (IP header + 8 bytes).
    let syn = tcp_syn_v4();
    let mut error = Vec::new();
    PacketBuilder::ethernet2(MAC_B, MAC_A)
        .ipv4(V4_B, V4_A, 64)
        .icmpv4_raw(3, 3, [0; 4])
        .write(&mut error, &syn[14..42])
        .unwrap();
    let error = meta(parse(LinkType::Ethernet, &error));
    let IcmpInfo::Error { quoted } = error.icmp else {
        panic!("not an error: {:?}", error.icmp)
    };
    assert_eq!(quoted, meta(parse(LinkType::Ethernet, &syn)).key);
    assert_eq!((error.key.source_port, error.key.destination_port), (0, 0));
}

#[test]
fn icmpv6_echo_errors_and_neighbour_discovery() {
    let mut ping = Vec::new();
    PacketBuilder::ipv6(V6_A, V6_B, 64)
        .icmpv6_echo_reply(9, 1)
        .write(&mut ping, &[])
        .unwrap();
    let reply = meta(parse(LinkType::RawIp, &ping));
    assert_eq!(reply.icmp, IcmpInfo::Echo { request: false });
    assert_eq!((reply.key.source_port, reply.key.destination_port), (9, 9));

    let mut original = Vec::new();
    PacketBuilder::ipv6(V6_A, V6_B, 64)
        .udp(1000, 53)
        .write(&mut original, &[0; 4])
        .unwrap();
    let mut too_big = Vec::new();
    PacketBuilder::ipv6(V6_B, V6_A, 64)
        .icmpv6_raw(2, 0, [0, 0, 5, 0])
        .write(&mut too_big, &original)
        .unwrap();
    let error = meta(parse(LinkType::Ipv6, &too_big));
    let IcmpInfo::Error { quoted } = error.icmp else {
        panic!()
    };
    assert_eq!(quoted, meta(parse(LinkType::Ipv6, &original)).key);

    let mut solicitation = Vec::new();
    PacketBuilder::ipv6(V6_A, V6_B, 255)
        .icmpv6_raw(135, 0, [0; 4])
        .write(&mut solicitation, &[0; 16])
        .unwrap();
    let nd = meta(parse(LinkType::Ipv6, &solicitation));
    assert_eq!(nd.icmp, IcmpInfo::Other);
    assert!(nd.is_neighbour_discovery());
    assert!(!reply.is_neighbour_discovery());
}

#[test]
fn other_protocols_have_zero_ports() {
    for protocol in [
        IpNumber::ENCAPSULATING_SECURITY_PAYLOAD,
        IpNumber::GRE,
        IpNumber(253),
    ] {
        let mut header = Ipv4Header::new(4, 64, protocol, V4_A, V4_B).unwrap();
        header.identification = 1;
        let mut packet = Vec::new();
        header.write(&mut packet).unwrap();
        packet.extend_from_slice(&[1, 2, 3, 4]);
        let meta = meta(parse(LinkType::Ipv4, &packet));
        assert_eq!(meta.key.protocol, protocol.0);
        assert_eq!((meta.key.source_port, meta.key.destination_port), (0, 0));
        assert_eq!(meta.icmp, IcmpInfo::None);
    }
    // ICMPv6's number inside IPv4 is not ICMP.
    let header = Ipv4Header::new(0, 64, IpNumber::IPV6_ICMP, V4_A, V4_B).unwrap();
    let mut packet = Vec::new();
    header.write(&mut packet).unwrap();
    assert_eq!(meta(parse(LinkType::Ipv4, &packet)).icmp, IcmpInfo::None);
}

#[test]
fn snap_length_cuts() {
    let frame = tcp_syn_v4();
    // Ethernet + IP + 14 bytes of TCP: judged.
    let cut = meta(parse(LinkType::Ethernet, &frame[..14 + 20 + 14]));
    assert_eq!(cut.tcp_flags, 0x02);
    assert_eq!(cut.ip_length, 40);
    assert_eq!(
        reason(parse(LinkType::Ethernet, &frame[..14 + 20 + 13])),
        DropReason::TruncatedTransport
    );
}

/// One frame per reason, each going through [`parse`].
#[test]
fn every_drop_reason_is_reachable() {
    let syn = tcp_syn_v4();
    let mut v6 = Vec::new();
    PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv6(V6_A, V6_B, 64)
        .udp(1, 2)
        .write(&mut v6, &[])
        .unwrap();
    let with = |frame: &[u8], edit: &dyn Fn(&mut Vec<u8>)| {
        let mut frame = frame.to_vec();
        edit(&mut frame);
        frame
    };
    let mut deep = syn[..12].to_vec();
    for _ in 0..=MAX_VLAN_TAGS {
        deep.extend_from_slice(&[0x81, 0x00, 0, 1]);
    }
    deep.extend_from_slice(&syn[12..]);
    let icmp_error = |quote: &[u8]| {
        let mut frame = Vec::new();
        PacketBuilder::ethernet2(MAC_B, MAC_A)
            .ipv4(V4_B, V4_A, 64)
            .icmpv4_raw(11, 0, [0; 4])
            .write(&mut frame, quote)
            .unwrap();
        frame
    };
    let cases: Vec<(DropReason, LinkType, Vec<u8>)> = vec![
        (
            DropReason::TruncatedEthernet,
            LinkType::Ethernet,
            syn[..10].to_vec(),
        ),
        (
            DropReason::TruncatedVlan,
            LinkType::Ethernet,
            with(&syn[..16], &|f| f[12..14].copy_from_slice(&[0x81, 0])),
        ),
        (DropReason::VlanTooDeep, LinkType::Ethernet, deep),
        (
            DropReason::TruncatedLinuxSll,
            LinkType::LinuxSll2,
            vec![0; 19],
        ),
        (DropReason::TruncatedIp, LinkType::RawIp, vec![]),
        (
            DropReason::BadIpVersion,
            LinkType::Ethernet,
            with(&syn, &|f| f[14] = 0x55),
        ),
        (
            DropReason::TruncatedIpv4,
            LinkType::Ethernet,
            syn[..20].to_vec(),
        ),
        (
            DropReason::BadIpv4HeaderLength,
            LinkType::Ethernet,
            with(&syn, &|f| f[14] = 0x44),
        ),
        (
            DropReason::BadIpv4TotalLength,
            LinkType::Ethernet,
            with(&syn, &|f| f[14] = 0x4f),
        ),
        (
            DropReason::TruncatedIpv6,
            LinkType::Ethernet,
            v6[..50].to_vec(),
        ),
        (
            DropReason::BadIpv6Extension,
            LinkType::Ethernet,
            with(&v6, &|f| f[20] = 0),
        ),
        (
            DropReason::TruncatedTransport,
            LinkType::Ethernet,
            syn[..40].to_vec(),
        ),
        (
            DropReason::BadTcpHeaderLength,
            LinkType::Ethernet,
            with(&syn, &|f| f[46] = 0x40),
        ),
        (
            DropReason::TruncatedIcmpQuote,
            LinkType::Ethernet,
            icmp_error(&syn[14..30]),
        ),
        (
            DropReason::BadIcmpQuote,
            LinkType::Ethernet,
            icmp_error(&v6[14..]),
        ),
    ];
    for (expected, link, frame) in &cases {
        assert_eq!(parse(*link, frame), Parsed::Drop(*expected), "{expected:?}");
    }
    let mut covered: Vec<DropReason> = cases.iter().map(|case| case.0).collect();
    covered.push(LinkType::from_linktype(147).unwrap_err());
    covered.sort();
    assert_eq!(covered, DropReason::ALL.to_vec());
}

/// Results travel in per-batch arrays: keep them within two cache lines.
#[test]
fn results_stay_small() {
    assert!(
        std::mem::size_of::<Parsed>() <= 128,
        "{}",
        std::mem::size_of::<Parsed>()
    );
    assert_eq!(std::mem::size_of::<FlowKey>(), 48);
}

#[test]
fn parsed_accessors() {
    let frame = tcp_syn_v4();
    let parsed = parse(LinkType::Ethernet, &frame);
    assert_eq!(parsed.meta().map(|m| m.key.destination_port), Some(443));
    assert_eq!(parsed.drop_reason(), None);
    let dropped = parse(LinkType::Ethernet, &frame[..3]);
    assert_eq!(dropped.meta(), None);
    assert_eq!(dropped.drop_reason(), Some(DropReason::TruncatedEthernet));
    let error: &dyn std::error::Error = &DropReason::TruncatedEthernet;
    assert!(error.to_string().contains("Ethernet"));
}
