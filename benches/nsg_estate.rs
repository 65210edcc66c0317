//! Verdicts per second on a realistic NSG estate: hundreds of rules per NSG,
//! tags, ASGs, an NSG on every subnet and on every NIC, so NIC-to-NIC flows run
//! the full chain (NIC + subnet NSG outbound, subnet + NIC NSG inbound). This
//! is the dataplane's new-connection path.
//!
//! Two traffic mixes: `hot` sends flows among four NICs (their chains stay in
//! cache, as under a flood towards a few hosts); `estate_wide` spreads flows
//! over all 192 NICs and the internet (chains come from L3 or memory).

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use nsgd::compile::synthetic::{realistic_estate, realistic_flows, EstateShape};
use nsgd::compile::{Flow, Program};
use nsgd::policy::Access;

fn decide_all(program: &Program, flows: &[Flow]) -> usize {
    flows
        .iter()
        .filter(|flow| program.evaluate(black_box(flow)).decision == Access::Allow)
        .count()
}

fn estate(c: &mut Criterion) {
    let shape = EstateShape::default();
    let policy = realistic_estate(&shape);
    let program = Program::compile(&policy).expect("the synthetic estate compiles");
    let estate_wide = realistic_flows(&policy, 100_000, 11);
    let hot_nics: Vec<_> = [0usize, 1, 60, 61]
        .iter()
        .map(|&i| policy.nics[i].ip_addresses[0])
        .collect();
    let hot: Vec<Flow> = estate_wide
        .iter()
        .enumerate()
        .map(|(i, f)| {
            Flow::new(
                f.protocol(),
                hot_nics[i % 4],
                f.source_port(),
                hot_nics[(i / 4 + 1 + i) % 4],
                f.destination_port(),
            )
            .expect("same family")
        })
        .collect();

    let mut group = c.benchmark_group("nsg_estate");
    group.sample_size(20);
    for (name, flows) in [("hot", &hot), ("estate_wide", &estate_wide)] {
        group.throughput(Throughput::Elements(flows.len() as u64));
        group.bench_function(name, |b| b.iter(|| decide_all(&program, flows)));
    }
    group.finish();

    let mut build = c.benchmark_group("nsg_estate_compile");
    build.sample_size(10);
    build.bench_function("compile", |b| {
        b.iter_batched(
            || policy.clone(),
            |p| Program::compile(&p).expect("compiles"),
            BatchSize::LargeInput,
        )
    });
    build.finish();
}

criterion_group!(benches, estate);
criterion_main!(benches);
