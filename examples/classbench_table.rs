//! Runs every ClassBench set in `../shared/classbench` (or the folder given as
//! the first argument) and prints a table. Optional second argument: a
//! substring filter on the set name; `--linear` adds the linear-scan baseline.
//!
//! `cargo run --release --example classbench_table`

use std::path::PathBuf;

use nsgd::classbench::{run_linear_baseline, run_with, RunOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let linear = args.iter().any(|a| a == "--linear");
    let pos: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    let dir = pos
        .first()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/classbench"));
    let filter = pos.get(1).map(|s| s.as_str()).unwrap_or("");
    println!(
        "{:<10} {:>7} {:>8} {:>5} {:>9} {:>12} {:>12} {:>9} {:>8}",
        "set", "rules", "lookups", "miss", "build_ms", "batched/s", "single/s", "MiB", "B/rule"
    );
    for size in ["1k", "10k", "100k"] {
        for fam in ["acl1", "fw1", "ipc1"] {
            let name = format!("{fam}_{size}");
            if !name.contains(filter) {
                continue;
            }
            let f = |ext: &str| dir.join(format!("{name}.{ext}.gz"));
            if !f("rules").exists() {
                continue;
            }
            let r = run_with(
                &f("rules"),
                &f("trace"),
                &f("expected"),
                &RunOptions::default(),
            )?;
            println!(
                "{:<10} {:>7} {:>8} {:>5} {:>9.1} {:>11.2}M {:>11.2}M {:>9.2} {:>8.1}",
                name,
                r.rules,
                r.lookups,
                r.mismatches,
                r.build_ms,
                r.lookups_per_sec / 1e6,
                r.single_lookups_per_sec / 1e6,
                r.table_bytes as f64 / (1 << 20) as f64,
                r.bytes_per_rule
            );
            if linear {
                let opts = RunOptions {
                    min_seconds: 1.0,
                    ..RunOptions::default()
                };
                let l = run_linear_baseline(&f("rules"), &f("trace"), &f("expected"), &opts)?;
                println!(
                    "{:<10} linear scan: {:.3}M lookups/s over {} lookups, {} mismatches; speedup {:.0}x",
                    "",
                    l.lookups_per_sec / 1e6,
                    l.lookups,
                    l.mismatches,
                    r.lookups_per_sec / l.lookups_per_sec
                );
            }
        }
    }
    Ok(())
}
