//! Lookup speed on small NSG-shaped rule sets (tens to ~1000 rules, many wide
//! wildcard rules; service tags expanded into several ranges sharing an id).
//! `cargo run --release --example classifier_small`

use std::time::Instant;

use nsgd::compile::classifier::{
    BuildConfig, Classifier, ClassifierRule, PacketKey, ANY_PORT, NO_MATCH,
};

fn main() {
    let mut x: u64 = 0x1234_5678_9ABC_DEF1;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    // VirtualNetwork-like and Internet-like expansions.
    let vnet = [
        (0x0A00_0000u32, 0x0AFF_FFFFu32),
        (0xAC10_0000, 0xAC1F_FFFF),
        (0xC0A8_0000, 0xC0A8_FFFF),
    ];
    let internet = [
        (0x0000_0000u32, 0x09FF_FFFFu32),
        (0x0B00_0000, 0xAC0F_FFFF),
        (0xAC20_0000, 0xC0A7_FFFF),
        (0xC0A9_0000, 0xFFFF_FFFF),
    ];
    for n in [8usize, 30, 100, 300, 1000] {
        let mut rules = Vec::new();
        let mut id = 100;
        while rules.len() < n {
            id += 1;
            let kind = rnd() % 6;
            let srcs: Vec<(u32, u32)> = match kind {
                0 => vec![(0, u32::MAX)],
                1 => vnet.to_vec(),
                2 => internet.to_vec(),
                _ => {
                    let len = 16 + (rnd() % 17) as u32;
                    let host = u32::MAX.checked_shr(len).unwrap_or(0);
                    let base = (0x0A00_0000 | (rnd() as u32 & 0x00FF_FFFF)) & !host;
                    vec![(base, base | host)]
                }
            };
            let dport = match rnd() % 4 {
                0 => ANY_PORT,
                1 => (443, 443),
                2 => (1024, 65535),
                _ => {
                    let p = (rnd() % 65536) as u32;
                    (p, p)
                }
            };
            let protocol = match rnd() % 3 {
                0 => None,
                1 => Some(6),
                _ => Some(17),
            };
            for &s in &srcs {
                rules.push(ClassifierRule {
                    protocol,
                    source: s,
                    destination: vnet[(rnd() % 3) as usize],
                    source_port: ANY_PORT,
                    destination_port: dport,
                    id,
                });
            }
        }
        // Low-priority defaults, as NSGs have.
        for (i, s) in vnet.iter().enumerate() {
            rules.push(ClassifierRule {
                protocol: None,
                source: *s,
                destination: (0, u32::MAX),
                source_port: ANY_PORT,
                destination_port: ANY_PORT,
                id: 65000 + i as u32,
            });
        }
        let keys: Vec<PacketKey<u32>> = (0..4096)
            .map(|_| PacketKey {
                protocol: [6u8, 17, 1][(rnd() % 3) as usize],
                source: if rnd() % 2 == 0 {
                    0x0A00_0000 | (rnd() as u32 & 0xFFFF)
                } else {
                    rnd() as u32
                },
                destination: 0x0A00_0000 | (rnd() as u32 & 0xFFFF),
                source_port: (rnd() % 65536) as u32,
                destination_port: [443u32, 80, 22, 3389][(rnd() % 4) as usize],
            })
            .collect();
        let mut cfg = BuildConfig::default();
        if let Some(l) = std::env::var("LEAF").ok().and_then(|v| v.parse().ok()) {
            cfg.leaf_size = l;
        }
        let c = Classifier::build_with(&rules, &cfg);
        let mut out = vec![NO_MATCH; keys.len()];
        let mut best_b = f64::MAX;
        let mut best_s = f64::MAX;
        for _ in 0..200 {
            let t = Instant::now();
            c.classify_batch(std::hint::black_box(&keys), &mut out);
            best_b = best_b.min(t.elapsed().as_secs_f64());
            let t = Instant::now();
            for (k, o) in keys.iter().zip(out.iter_mut()) {
                *o = c.classify(std::hint::black_box(k)).unwrap_or(NO_MATCH);
            }
            best_s = best_s.min(t.elapsed().as_secs_f64());
        }
        let per = |s: f64| s / keys.len() as f64 * 1e9;
        println!(
            "{:>5} rules: batched {:>5.1} ns/lookup, single {:>5.1} ns/lookup, {:?}",
            rules.len(),
            per(best_b),
            per(best_s),
            c.stats()
        );
    }
}
