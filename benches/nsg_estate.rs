//! Verdicts per second on a realistic NSG estate: hundreds of rules per NSG,
//! tags, ASGs, an NSG on every subnet and on every NIC, so NIC-to-NIC flows run
//! the full chain (NIC + subnet NSG outbound, subnet + NIC NSG inbound). This
//! is the dataplane's new-connection path.

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use nsgd::compile::synthetic::{realistic_estate, realistic_flows, EstateShape};
use nsgd::compile::Program;

fn estate(c: &mut Criterion) {
    let shape = EstateShape::default();
    let policy = realistic_estate(&shape);
    let program = Program::compile(&policy).expect("the synthetic estate compiles");
    let flows = realistic_flows(&policy, 100_000, 11);

    let mut group = c.benchmark_group("nsg_estate");
    group.throughput(Throughput::Elements(flows.len() as u64));
    group.sample_size(20);
    group.bench_function("evaluate_full_chain", |b| {
        b.iter(|| {
            let mut allowed = 0usize;
            for flow in &flows {
                allowed += (program.evaluate(black_box(flow)).decision
                    == nsgd::policy::Access::Allow) as usize;
            }
            allowed
        })
    });
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
