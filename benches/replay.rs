//! End-to-end replay: a generated capture (in the page cache after the first
//! read) through the whole pipeline — read, parse, dispatch, conntrack,
//! classify, order — with 1 and 2 workers and no outputs.

use std::io::BufWriter;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use nsgd::compile::Program;
use nsgd::io::{generate, GenerateOptions, PcapWriter, TimestampPrecision, LINKTYPE_ETHERNET};
use nsgd::pipeline::{replay, ReplayOptions};

const PACKETS: u64 = 200_000;

fn replay_bench(c: &mut Criterion) {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let policy =
        nsgd::policy::load(&root.join("configs/hub-spoke.yaml")).expect("bundled policy loads");
    let program = Arc::new(Program::compile(&policy).expect("compiles"));
    let capture =
        std::env::temp_dir().join(format!("nsgd-bench-replay-{}.pcap", std::process::id()));
    {
        let file = std::fs::File::create(&capture).expect("temp file");
        let mut writer = PcapWriter::new(
            BufWriter::new(file),
            LINKTYPE_ETHERNET,
            TimestampPrecision::Nanoseconds,
        )
        .expect("header");
        let options = GenerateOptions {
            flows: PACKETS / 20,
            packets: Some(PACKETS),
            ..GenerateOptions::default()
        };
        generate(&policy, &options, &mut writer).expect("generates");
        writer.finish().expect("flush");
    }
    let mut group = c.benchmark_group("replay");
    group.throughput(Throughput::Elements(PACKETS));
    group.sample_size(10);
    for workers in [1usize, 2] {
        group.bench_function(format!("workers_{workers}"), |b| {
            b.iter(|| {
                let options = ReplayOptions {
                    workers,
                    ..ReplayOptions::default()
                };
                replay(
                    Arc::clone(&program),
                    std::slice::from_ref(&capture),
                    &options,
                )
                .expect("replays")
            })
        });
    }
    group.finish();
    let _ = std::fs::remove_file(&capture);
}

criterion_group!(benches, replay_bench);
criterion_main!(benches);
