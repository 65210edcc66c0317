//! Classifier benchmarks over the ClassBench sets in `../shared/classbench`:
//! batched lookups over each trace (throughput in lookups) and the build.
//! Sets whose files are missing are skipped. The NSG-estate benchmarks live
//! in their own bench file.

use std::path::PathBuf;
use std::time::Duration;

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use nsgd::classbench::{read_rules, read_trace};
use nsgd::compile::classifier::{Classifier, NO_MATCH};

fn classbench_benches(c: &mut Criterion) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/classbench");
    for size in ["1k", "10k", "100k"] {
        for fam in ["acl1", "fw1", "ipc1"] {
            let name = format!("{fam}_{size}");
            let rules_path = dir.join(format!("{name}.rules.gz"));
            let trace_path = dir.join(format!("{name}.trace.gz"));
            if !rules_path.exists() || !trace_path.exists() {
                eprintln!("skipping {name}: files not found in {}", dir.display());
                continue;
            }
            let rules = read_rules(&rules_path).expect("rules");
            let keys: Vec<_> = read_trace(&trace_path)
                .expect("trace")
                .iter()
                .map(|t| t.key)
                .collect();
            let classifier = Classifier::build(&rules);
            let big = size == "100k";

            let mut g = c.benchmark_group(format!("classbench/{name}"));
            g.sample_size(10)
                .warm_up_time(Duration::from_millis(if big { 500 } else { 300 }))
                .measurement_time(Duration::from_secs(if big { 3 } else { 2 }));
            g.throughput(Throughput::Elements(keys.len() as u64));
            let mut out = vec![NO_MATCH; keys.len()];
            g.bench_function("classify_batch", |b| {
                b.iter(|| classifier.classify_batch(black_box(&keys), &mut out))
            });
            g.bench_function("classify", |b| {
                b.iter(|| {
                    for (k, o) in black_box(&keys).iter().zip(out.iter_mut()) {
                        *o = classifier.classify(k).unwrap_or(NO_MATCH);
                    }
                })
            });
            g.throughput(Throughput::Elements(rules.len() as u64));
            g.bench_function("build", |b| {
                b.iter_batched(
                    || rules.clone(),
                    |r| Classifier::build(black_box(&r)),
                    BatchSize::LargeInput,
                )
            });
            g.finish();
        }
    }
}

criterion_group!(benches, classbench_benches);
criterion_main!(benches);
