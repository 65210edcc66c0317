//! Build time and table size on adversarial rule sets (random arbitrary
//! ranges, heavy overlap), to check the replication budget holds.
//! `cargo run --release --example classifier_stress`

use std::time::Instant;

use nsgd::compile::classifier::{Classifier, ClassifierRule, ANY_PORT};

fn main() {
    let mut x: u64 = 0xDEAD_BEEF_1234_5678;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for n in [10_000usize, 100_000] {
        for kind in ["random ranges", "wide prefixes", "port ranges"] {
            let rules: Vec<ClassifierRule<u32>> = (0..n)
                .map(|i| {
                    let mut range = |wide: bool| {
                        let a = rnd() as u32;
                        let b = rnd() as u32;
                        if wide {
                            let len = (rnd() % 9) as u32;
                            let host = u32::MAX.checked_shr(len).unwrap_or(0);
                            (a & !host, (a & !host) | host)
                        } else {
                            (a.min(b), a.max(b))
                        }
                    };
                    let (source, destination, sp, dp) = match kind {
                        "random ranges" => (range(false), range(false), ANY_PORT, ANY_PORT),
                        "wide prefixes" => (range(true), range(true), ANY_PORT, ANY_PORT),
                        _ => {
                            let p = |r: u64| {
                                let a = (r % 65536) as u32;
                                let b = ((r >> 16) % 65536) as u32;
                                (a.min(b), a.max(b))
                            };
                            ((0, u32::MAX), range(true), p(rnd()), p(rnd()))
                        }
                    };
                    ClassifierRule {
                        protocol: if rnd() % 2 == 0 { None } else { Some(6) },
                        source,
                        destination,
                        source_port: sp,
                        destination_port: dp,
                        id: i as u32,
                    }
                })
                .collect();
            let t = Instant::now();
            let c = Classifier::build(&rules);
            println!(
                "{n:>6} {kind:<14} build {:>8.1} ms  {:>7.2} MiB  {:?}",
                t.elapsed().as_secs_f64() * 1e3,
                c.table_bytes() as f64 / 1048576.0,
                c.stats()
            );
        }
    }
}
