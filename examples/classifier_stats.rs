//! Prints the shape of the classifier built for each ClassBench set, and the
//! average work per lookup. `cargo run --release --example classifier_stats DIR [FILTER]`

use std::path::PathBuf;
use std::time::Instant;

use nsgd::classbench::{read_rules, read_trace};
use nsgd::compile::classifier::{BuildConfig, Classifier, NO_MATCH};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = PathBuf::from(&args[0]);
    let filter = args.get(1).map(String::as_str).unwrap_or("");
    for size in ["1k", "10k", "100k"] {
        for fam in ["acl1", "fw1", "ipc1"] {
            let name = format!("{fam}_{size}");
            if !name.contains(filter) {
                continue;
            }
            let rules = read_rules(&dir.join(format!("{name}.rules.gz")))?;
            let keys: Vec<_> = read_trace(&dir.join(format!("{name}.trace.gz")))?
                .iter()
                .map(|t| t.key)
                .collect();
            let t = Instant::now();
            let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<f64>().ok());
            let mut cfg = BuildConfig::default();
            if let Some(v) = env("REP") {
                cfg.max_cut_replication = v;
            }
            if let Some(v) = env("LEAF") {
                cfg.leaf_size = v as usize;
            }
            if let Some(v) = env("FAN") {
                cfg.max_fanout = v as usize;
            }
            if let Some(v) = env("BUDGET") {
                cfg.budget_per_rule = v as usize;
            }
            if let Some(v) = env("MINF") {
                cfg.min_subset_fraction = v;
            }
            if let Some(v) = env("SMALL") {
                cfg.small_prefix = v as u32;
            }
            if let Some(v) = env("PART") {
                cfg.partition = v != 0.0;
            }
            let c = Classifier::build_with(&rules, &cfg);
            let ms = t.elapsed().as_secs_f64() * 1e3;
            let mut out = vec![NO_MATCH; keys.len()];
            let mut best = f64::MAX;
            let reps = std::env::var("REPS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(5);
            for _ in 0..reps {
                let t = Instant::now();
                c.classify_batch(&keys, &mut out);
                best = best.min(t.elapsed().as_secs_f64());
            }
            let (mut tt, mut tn, mut tr) = (0u64, 0u64, 0u64);
            for k in &keys {
                let (t, n, r) = c.lookup_cost(k);
                tt += u64::from(t);
                tn += u64::from(n);
                tr += u64::from(r);
            }
            let kl = keys.len() as f64;
            println!(
                "{name:<10} per lookup: trees {:.2} nodes {:.2} rules {:.2}",
                tt as f64 / kl,
                tn as f64 / kl,
                tr as f64 / kl
            );
            println!(
                "{name:<10} build {ms:>7.1} ms  {:>6.2} M/s  {:>7.2} MiB  {:?}",
                keys.len() as f64 / best / 1e6,
                c.table_bytes() as f64 / 1048576.0,
                c.stats()
            );
        }
    }
    Ok(())
}
