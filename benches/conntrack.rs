//! Connection-table benchmarks (ns per operation = time / elements):
//! - `insert_empty`: new flows into an empty, preallocated table;
//! - `hit_10k`: lookup + update in a cache-resident table of 10k flows;
//! - `hit_1m`: lookup + update of established flows in a table holding one
//!   million live flows, in a scattered order (the per-packet fast path);
//! - `hit_1m_batched`: the same through `lookup_batch` (32 keys at a time,
//!   misses overlapped), then one `update` per packet;
//! - `lookup_only_1m`: the lookup alone, for the split;
//! - `mixed_1m`: the same full table, 90% established packets and 10% new
//!   flows (miss + insert, evicting the oldest unestablished entry).

use std::time::Duration;

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use nsgd::conntrack::{ConnectionTable, ConntrackConfig, Side, StoredDecision, LOOKUP_BATCH};
use nsgd::packet::FlowKey;

const SECOND: u64 = 1_000_000_000;

fn udp(i: u32) -> FlowKey {
    // Scatter the addresses so neighbouring keys land far apart.
    let a = i.wrapping_mul(0x9E37_79B9);
    FlowKey {
        source: 0x0a00_0000 | (a >> 8) as u128,
        destination: 0xc0a8_0000 | (i & 0xffff) as u128,
        source_port: (a & 0xffff) as u16 | 1024,
        destination_port: 53,
        protocol: 17,
        ipv6: false,
    }
}

fn allowed() -> StoredDecision {
    StoredDecision {
        allowed: true,
        nsg: 1,
        rule: 100,
        table: 0,
        generation: 1,
    }
}

fn config(max_flows: usize) -> ConntrackConfig {
    ConntrackConfig {
        max_flows,
        ..ConntrackConfig::default()
    }
}

/// A table holding `n` answered UDP flows (established).
fn full_table(n: u32) -> ConnectionTable {
    let mut t = ConnectionTable::new(config(n as usize));
    for i in 0..n {
        let k = udp(i);
        let id = t.insert(&k, allowed(), 0, 100, SECOND).unwrap();
        t.update(id, Side::Reply, 0, 100, SECOND);
    }
    t
}

fn benches(c: &mut Criterion) {
    const INSERTS: u32 = 100_000;
    const LIVE: u32 = 1_000_000;
    const OPS: u32 = 200_000;

    let mut g = c.benchmark_group("conntrack");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));

    g.throughput(Throughput::Elements(INSERTS as u64));
    g.bench_function("insert_empty", |b| {
        b.iter_batched(
            || ConnectionTable::new(config(INSERTS as usize)),
            |mut t| {
                for i in 0..INSERTS {
                    black_box(t.insert(&udp(i), allowed(), 0, 100, SECOND).unwrap());
                }
                t
            },
            BatchSize::PerIteration,
        )
    });

    // Cache-resident table: the compute cost without memory misses.
    {
        const SMALL: u32 = 10_000;
        let mut small = full_table(SMALL);
        let keys: Vec<FlowKey> = (0..SMALL).map(udp).collect();
        let mut now = 2 * SECOND;
        g.throughput(Throughput::Elements(SMALL as u64));
        g.bench_function("hit_10k", |b| {
            b.iter(|| {
                for k in &keys {
                    now += 10;
                    let (id, side) = small.lookup(k, now).expect("live");
                    black_box(small.update(id, side, 0, 100, now));
                }
            })
        });
    }

    let mut t = full_table(LIVE);
    // A scattered visiting order over the live flows (odd stride mod 2^20
    // is a permutation; indices past LIVE are skipped).
    let order: Vec<FlowKey> = (0..1u32 << 20)
        .map(|i| i.wrapping_mul(0x0005_bd1f) & ((1 << 20) - 1))
        .filter(|&i| i < LIVE)
        .take(OPS as usize)
        .map(|i| {
            if i % 2 == 0 {
                udp(i)
            } else {
                udp(i).reversed()
            }
        })
        .collect();
    let mut now = 2 * SECOND;
    g.throughput(Throughput::Elements(OPS as u64));
    g.bench_function("hit_1m", |b| {
        b.iter(|| {
            for k in &order {
                now += 10;
                let (id, side) = t.lookup(k, now).expect("live");
                black_box(t.update(id, side, 0, 100, now));
            }
        })
    });

    let mut answers = vec![None; LOOKUP_BATCH];
    g.bench_function("hit_1m_batched", |b| {
        b.iter(|| {
            for keys in order.chunks(LOOKUP_BATCH) {
                now += 10;
                let answers = &mut answers[..keys.len()];
                t.lookup_batch(keys, now, answers);
                for &answer in answers.iter() {
                    let (id, side) = answer.expect("live");
                    black_box(t.update(id, side, 0, 100, now));
                }
            }
        })
    });

    g.bench_function("lookup_only_1m", |b| {
        b.iter(|| {
            for k in &order {
                black_box(t.lookup(k, now));
            }
        })
    });

    let mut next_new = LIVE;
    g.bench_function("mixed_1m", |b| {
        b.iter(|| {
            for (n, k) in order.iter().enumerate() {
                now += 10;
                if n % 10 == 9 {
                    let k = udp(next_new);
                    next_new = next_new.wrapping_add(1);
                    match t.lookup(&k, now) {
                        Some((id, side)) => {
                            black_box(t.update(id, side, 0, 100, now));
                        }
                        None => {
                            black_box(t.insert(&k, allowed(), 0, 100, now).unwrap());
                        }
                    }
                } else if let Some((id, side)) = t.lookup(k, now) {
                    black_box(t.update(id, side, 0, 100, now));
                }
            }
        })
    });
    g.finish();
    let s = t.stats();
    eprintln!(
        "table: {} flows, {:.1} MiB allocated; evictions: {} unestablished, {} established",
        t.len(),
        t.allocation_size() as f64 / (1 << 20) as f64,
        s.evicted_unestablished,
        s.evicted_established
    );
}

criterion_group!(conntrack, benches);
criterion_main!(conntrack);
