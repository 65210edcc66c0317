//! Transmit-side coalescing cost: a burst of 64 full-size TCP/IPv4
//! segments of one stream offered to `io::coalesce::Coalescer` and taken
//! as aggregates (two: one holds at most 64,000 bytes), every frame's
//! checksum verified on the way, reported per frame; and the same for 64
//! datagrams of 18 bytes (a 64-byte flood: one aggregate).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use etherparse::{IpHeaders, Ipv4Header, PacketBuilder};
use nsgd::io::coalesce::{Aggregate, Coalescer};

const BURST: usize = 64;

fn ipv4(id: u16, protocol: etherparse::IpNumber) -> IpHeaders {
    let mut header = Ipv4Header::new(0, 64, protocol, [10, 0, 0, 1], [10, 0, 0, 2]).unwrap();
    header.identification = id;
    header.dont_fragment = true;
    IpHeaders::Ipv4(header, Default::default())
}

fn tcp_burst() -> Vec<Vec<u8>> {
    (0..BURST)
        .map(|i| {
            let mut frame = Vec::new();
            PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
                .ip(ipv4(100 + i as u16, etherparse::IpNumber::TCP))
                .tcp(40000, 5201, 1000 + (i * 1460) as u32, 501)
                .ack(7)
                .write(&mut frame, &[i as u8; 1460])
                .unwrap();
            frame
        })
        .collect()
}

fn udp_burst() -> Vec<Vec<u8>> {
    (0..BURST)
        .map(|i| {
            let mut frame = Vec::new();
            PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
                .ip(ipv4(100 + i as u16, etherparse::IpNumber::UDP))
                .udp(40000, 9000)
                .write(&mut frame, &[i as u8; 18])
                .unwrap();
            frame
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("coalesce");
    group.throughput(Throughput::Elements(BURST as u64));
    for (name, burst) in [("tcp-1514-x64", tcp_burst()), ("udp-60-x64", udp_burst())] {
        let mut coalescer = Coalescer::default();
        // As the sender does: a frame that cannot join ends the aggregate
        // (a TCP burst fills one at 64,000 bytes) and starts the next.
        let offer_all = |coalescer: &mut Coalescer| {
            let mut merged = 0;
            for frame in &burst {
                if !coalescer.offer(black_box(frame)) {
                    merged +=
                        usize::from(matches!(coalescer.take(), Some(Aggregate::Merged { .. })));
                    assert!(coalescer.offer(frame));
                }
            }
            merged + usize::from(matches!(coalescer.take(), Some(Aggregate::Merged { .. })))
        };
        let aggregates = offer_all(&mut coalescer);
        assert!(
            (1..=2).contains(&aggregates),
            "{name}: {aggregates} aggregates"
        );
        group.bench_function(name, |b| b.iter(|| black_box(offer_all(&mut coalescer))));
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
