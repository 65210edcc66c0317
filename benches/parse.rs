//! Frame parsing cost: `packet::parse` on a few representative frames
//! (plain TCP/IPv4, VLAN-tagged TCP, IPv6 UDP, an ICMP error with its quote),
//! one frame per iteration, so the reported time is ns/frame.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use etherparse::PacketBuilder;
use nsgd::packet::{parse, LinkType, Parsed};

const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 1];
const MAC_B: [u8; 6] = [2, 0, 0, 0, 0, 2];

fn frames() -> Vec<(&'static str, Vec<u8>)> {
    let mut tcp = Vec::new();
    PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .tcp(40000, 443, 1, 64240)
        .ack(1)
        .write(&mut tcp, &[0; 64])
        .unwrap();
    let mut vlan = Vec::new();
    PacketBuilder::ethernet2(MAC_A, MAC_B)
        .single_vlan(3136.try_into().unwrap())
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .tcp(40000, 80, 1, 64240)
        .syn()
        .write(&mut vlan, &[])
        .unwrap();
    let mut udp6 = Vec::new();
    PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv6([0x20; 16], [0x30; 16], 64)
        .udp(5353, 53)
        .write(&mut udp6, &[0; 40])
        .unwrap();
    let mut icmp_error = Vec::new();
    PacketBuilder::ethernet2(MAC_B, MAC_A)
        .ipv4([10, 0, 0, 2], [10, 0, 0, 1], 64)
        .icmpv4_raw(3, 3, [0; 4])
        .write(&mut icmp_error, &tcp[14..42])
        .unwrap();
    vec![
        ("tcp-ipv4", tcp),
        ("vlan-tcp-ipv4", vlan),
        ("udp-ipv6", udp6),
        ("icmp-error-ipv4", icmp_error),
    ]
}

fn bench(c: &mut Criterion) {
    let frames = frames();
    let mut group = c.benchmark_group("parse");
    group.throughput(Throughput::Elements(1));
    for (name, frame) in &frames {
        assert!(matches!(parse(LinkType::Ethernet, frame), Parsed::Ip(_)));
        group.bench_function(*name, |b| {
            b.iter(|| parse(LinkType::Ethernet, black_box(frame)))
        });
    }
    group.bench_function("mix-of-4", |b| {
        b.iter(|| {
            for (_, frame) in &frames {
                black_box(parse(LinkType::Ethernet, black_box(frame)));
            }
        })
    });
    // Reference point: etherparse's own full slicing of the same TCP frame.
    let tcp = &frames[0].1;
    group.bench_function("baseline-etherparse-sliced-packet-tcp-ipv4", |b| {
        b.iter(|| etherparse::SlicedPacket::from_ethernet(black_box(tcp)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
