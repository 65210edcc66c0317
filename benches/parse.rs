//! Frame parsing cost: `packet::parse` on a few representative frames
//! (plain TCP/IPv4, VLAN-tagged TCP, IPv6 UDP, an ICMP error with its quote),
//! one frame per iteration, so the reported time is ns/frame (results go
//! through `std::hint::black_box`: criterion 0.5's own `black_box` is a
//! byte-wise volatile read that would cost more than the parse itself); and, when the
//! shared corpus is present (`../shared/pcaps/`, or `$NSGD_PCAPS`), every
//! frame of `real-lan-1h.pcap` (62 781 frames of a real LAN), reported as
//! frames/s.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
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
            b.iter(|| {
                black_box(parse(LinkType::Ethernet, black_box(frame)));
            })
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
        b.iter(|| {
            let _ = black_box(etherparse::SlicedPacket::from_ethernet(black_box(tcp)));
        })
    });
    group.finish();
}

/// The records of a classic little-endian pcap file (all the trace needs).
fn real_trace() -> Option<(LinkType, Vec<Vec<u8>>)> {
    let directory = std::env::var_os("NSGD_PCAPS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/pcaps")
        });
    let bytes = std::fs::read(directory.join("real-lan-1h.pcap")).ok()?;
    let word = |at: usize| Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?));
    if word(0)? != 0xa1b2_c3d4 {
        return None;
    }
    let link = LinkType::from_linktype(word(20)?).ok()?;
    let mut frames = Vec::new();
    let mut at = 24;
    while let Some(captured) = word(at + 8) {
        let start = at + 16;
        let Some(frame) = bytes.get(start..start + captured as usize) else {
            break;
        };
        frames.push(frame.to_vec());
        at = start + captured as usize;
    }
    Some((link, frames))
}

fn bench_real_trace(c: &mut Criterion) {
    let Some((link, frames)) = real_trace() else {
        eprintln!("real-lan-1h.pcap not found: skipping the real-trace bench");
        return;
    };
    let mut group = c.benchmark_group("parse-real-lan-1h");
    group.throughput(Throughput::Elements(frames.len() as u64));
    group.sample_size(20);
    group.bench_function("all-frames", |b| {
        b.iter(|| {
            let mut ports = 0u64;
            for frame in &frames {
                if let Parsed::Ip(meta) = parse(link, black_box(frame)) {
                    ports = ports.wrapping_add(u64::from(meta.key.destination_port));
                }
            }
            ports
        })
    });
    group.finish();
}

criterion_group!(benches, bench, bench_real_trace);
criterion_main!(benches);
