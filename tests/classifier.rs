//! The classifier through its public API against the definition of truth
//! (`ClassifierRule::matches`, smallest id), on random rule sets shaped like
//! NSG estates (wide wildcard rules expanded into ranges) and on degenerate
//! sets.

use nsgd::compile::classifier::{
    AddressKey, BuildConfig, Classifier, ClassifierRule, PacketKey, ANY_PORT, NO_MATCH, NO_PORT,
};
use proptest::prelude::*;

fn naive<A: AddressKey>(rules: &[ClassifierRule<A>], key: &PacketKey<A>) -> u32 {
    rules
        .iter()
        .filter(|r| r.matches(key))
        .map(|r| r.id)
        .min()
        .unwrap_or(NO_MATCH)
}

fn check<A: AddressKey>(c: &Classifier<A>, rules: &[ClassifierRule<A>], keys: &[PacketKey<A>]) {
    let want: Vec<u32> = keys.iter().map(|k| naive(rules, k)).collect();
    let single: Vec<u32> = keys
        .iter()
        .map(|k| c.classify(k).unwrap_or(NO_MATCH))
        .collect();
    assert_eq!(single, want);
    for len in [keys.len(), 1, 5, 15, 16, 17, 31, 63] {
        let n = len.min(keys.len());
        let mut out = vec![0xDEAD_BEEF; n];
        c.classify_batch(&keys[..n], &mut out);
        assert_eq!(out, want[..n]);
    }
}

/// Address ranges: prefixes of any length (wide ones common, as NSG service
/// tags and `*` are), arbitrary ranges and edges.
fn addr_range(bits: u32) -> impl Strategy<Value = (u128, u128)> {
    let max = u128::MAX >> (128 - bits);
    let base = prop_oneof![
        any::<u128>().prop_map(move |v| v & max),
        (0u128..8).prop_map(move |v| (v << (bits - 3)) & max),
        Just(0u128),
        Just(max),
    ];
    prop_oneof![
        2 => Just((0, max)),
        4 => (base.clone(), 0u32..=bits).prop_map(move |(v, len)| {
            let host = max.checked_shr(len).unwrap_or(0);
            (v & !host, (v & !host) | host)
        }),
        2 => (base.clone(), base).prop_map(|(a, b)| (a.min(b), a.max(b))),
    ]
}

fn ports() -> impl Strategy<Value = (u32, u32)> {
    prop_oneof![
        3 => Just(ANY_PORT),
        2 => prop::sample::select(vec![22u32, 53, 80, 443, 3389, 0, 65535]).prop_map(|p| (p, p)),
        2 => (0u32..=65535, 0u32..=65535).prop_map(|(a, b)| (a.min(b), a.max(b))),
        1 => Just((0, 65535)),
        1 => Just((1024, NO_PORT)),
    ]
}

fn rules<A: AddressKey>(max: usize) -> impl Strategy<Value = Vec<ClassifierRule<A>>> {
    prop::collection::vec(
        (
            prop::sample::select(vec![None, Some(6u8), Some(17), Some(1), Some(0), Some(255)]),
            addr_range(A::BITS),
            addr_range(A::BITS),
            ports(),
            ports(),
            0u32..5000,
        ),
        0..max,
    )
    .prop_map(|v| {
        v.into_iter()
            .map(|(protocol, s, d, sp, dp, id)| ClassifierRule {
                protocol,
                source: (A::from_u128(s.0), A::from_u128(s.1)),
                destination: (A::from_u128(d.0), A::from_u128(d.1)),
                source_port: sp,
                destination_port: dp,
                // Shared ids: one policy rule expanded into several.
                id: id / 3,
            })
            .collect()
    })
}

/// Keys at rule corners (and one past them) plus random ones.
fn keys<A: AddressKey>(
    rules: &[ClassifierRule<A>],
    seeds: &[(u64, u128, u128)],
) -> Vec<PacketKey<A>> {
    let amax = A::MAX.to_u128();
    seeds
        .iter()
        .map(|&(s, a, b)| {
            let pick = |(lo, hi): (u128, u128), sel: u64| match sel % 4 {
                0 => lo,
                1 => hi,
                2 => lo.saturating_sub(1),
                _ => hi.saturating_add(1),
            };
            match rules.get((s as usize / 7) % rules.len().max(1)) {
                Some(r) if s % 6 != 0 => PacketKey {
                    protocol: r.protocol.unwrap_or(s as u8),
                    source: A::from_u128(
                        pick((r.source.0.to_u128(), r.source.1.to_u128()), s >> 8).min(amax),
                    ),
                    destination: A::from_u128(
                        pick(
                            (r.destination.0.to_u128(), r.destination.1.to_u128()),
                            s >> 10,
                        )
                        .min(amax),
                    ),
                    source_port: pick((r.source_port.0.into(), r.source_port.1.into()), s >> 12)
                        .min(u128::from(NO_PORT)) as u32,
                    destination_port: pick(
                        (r.destination_port.0.into(), r.destination_port.1.into()),
                        s >> 14,
                    )
                    .min(u128::from(NO_PORT)) as u32,
                },
                _ => PacketKey {
                    protocol: (s >> 20) as u8,
                    source: A::from_u128(a & amax),
                    destination: A::from_u128(b & amax),
                    source_port: (s >> 30) as u32 % (NO_PORT + 1),
                    destination_port: (s >> 47) as u32 % (NO_PORT + 1),
                },
            }
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn nsg_like_ipv4(rs in rules::<u32>(1500), seeds in prop::collection::vec(any::<(u64, u128, u128)>(), 1..300)) {
        let ks = keys(&rs, &seeds);
        check(&Classifier::build(&rs), &rs, &ks);
    }

    #[test]
    fn nsg_like_ipv6(rs in rules::<u128>(1500), seeds in prop::collection::vec(any::<(u64, u128, u128)>(), 1..300)) {
        let ks = keys(&rs, &seeds);
        check(&Classifier::build(&rs), &rs, &ks);
    }

    #[test]
    fn tight_budgets_stay_correct(rs in rules::<u32>(600), seeds in prop::collection::vec(any::<(u64, u128, u128)>(), 1..200)) {
        let ks = keys(&rs, &seeds);
        let cfg = BuildConfig { leaf_size: 2, budget_per_rule: 1, max_depth: 3, ..BuildConfig::default() };
        check(&Classifier::build_with(&rs, &cfg), &rs, &ks);
    }
}

#[test]
fn degenerate_sets_never_panic() {
    let any = ClassifierRule::<u32> {
        protocol: None,
        source: (0, u32::MAX),
        destination: (0, u32::MAX),
        source_port: ANY_PORT,
        destination_port: ANY_PORT,
        id: 9,
    };
    let specific = ClassifierRule {
        protocol: Some(17),
        source: (1, 1),
        destination: (u32::MAX, u32::MAX),
        source_port: (NO_PORT, NO_PORT),
        destination_port: (0, 0),
        id: 3,
    };
    let empty_range = ClassifierRule {
        source: (5, 4),
        id: 0,
        ..any
    };
    let sets: Vec<Vec<ClassifierRule<u32>>> = vec![
        vec![],
        vec![any; 100_000],
        vec![specific; 100_000],
        vec![empty_range; 1000],
        (0..5000)
            .map(|i| ClassifierRule {
                id: 5000 - i,
                ..any
            })
            .collect(),
        (0..5000u32)
            .map(|i| ClassifierRule {
                source: (i, i),
                destination: (0, i),
                id: i % 7,
                ..specific
            })
            .collect(),
    ];
    let probe = [
        PacketKey::default(),
        PacketKey {
            protocol: 17,
            source: 1,
            destination: u32::MAX,
            source_port: NO_PORT,
            destination_port: 0,
        },
        PacketKey {
            protocol: 255,
            source: u32::MAX,
            destination: u32::MAX,
            source_port: u32::MAX,
            destination_port: u32::MAX,
        },
        PacketKey {
            protocol: 17,
            source: 4,
            destination: 100,
            source_port: NO_PORT,
            destination_port: 0,
        },
    ];
    for rs in &sets {
        let c = Classifier::build(rs);
        assert_eq!(c.rule_count(), rs.len());
        check(&c, rs, &probe);
        // Output longer than input: the tail is left alone; shorter: no panic.
        let mut out = [1u32; 6];
        c.classify_batch(&probe, &mut out);
        assert_eq!(out[4..], [1, 1]);
        let mut short = [0u32; 2];
        c.classify_batch(&probe, &mut short);
    }
}
