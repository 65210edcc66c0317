//! Differential tests: the classifier against the naive first-match scan.

use super::*;
use proptest::prelude::*;

fn naive<A: AddressKey>(rules: &[ClassifierRule<A>], key: &PacketKey<A>) -> Option<u32> {
    rules.iter().filter(|r| r.matches(key)).map(|r| r.id).min()
}

fn check<A: AddressKey>(rules: &[ClassifierRule<A>], keys: &[PacketKey<A>], cfg: &BuildConfig) {
    let c = Classifier::build_with(rules, cfg);
    assert_eq!(c.rule_count(), rules.len());
    let want: Vec<u32> = keys
        .iter()
        .map(|k| naive(rules, k).unwrap_or(NO_MATCH))
        .collect();
    for (k, w) in keys.iter().zip(&want) {
        assert_eq!(c.classify(k).unwrap_or(NO_MATCH), *w, "key {k:?}");
    }
    let mut out = vec![0u32; keys.len()];
    c.classify_batch(keys, &mut out);
    assert_eq!(out, want);
    // Odd sub-batches, and an output longer than the input.
    for len in [1usize, 3, 17, 33] {
        let n = len.min(keys.len());
        let mut out = vec![7u32; n + 2];
        c.classify_batch(&keys[..n], &mut out);
        assert_eq!(&out[..n], &want[..n]);
        assert_eq!(&out[n..], &[7, 7]);
    }
}

fn configs() -> Vec<BuildConfig> {
    vec![
        BuildConfig::default(),
        BuildConfig {
            leaf_size: 1,
            max_fanout: 2,
            partition: false,
            ..BuildConfig::default()
        },
        BuildConfig {
            leaf_size: 2,
            max_fanout: 4,
            budget_per_rule: 1,
            min_subset_fraction: 0.0,
            ..BuildConfig::default()
        },
    ]
}

/// A range in `0..=max`: a prefix, an arbitrary range, a point, or an edge.
fn range_strategy(bits: u32) -> impl Strategy<Value = (u128, u128)> {
    let max = if bits == 128 {
        u128::MAX
    } else {
        (1u128 << bits) - 1
    };
    let value = prop_oneof![
        Just(0u128),
        Just(max),
        any::<u128>().prop_map(move |v| v & max),
        // Clustered values so that ranges overlap often.
        (0u128..16).prop_map(move |v| (v << (bits - 4)) & max),
        (0u128..64).prop_map(move |v| v.min(max)),
    ];
    prop_oneof![
        3 => (value.clone(), 0u32..=bits).prop_map(move |(v, len)| {
            let host = max.checked_shr(len).unwrap_or(0);
            (v & !host & max, (v & !host & max) | host)
        }),
        3 => (value.clone(), value.clone()).prop_map(|(a, b)| (a.min(b), a.max(b))),
        1 => value.clone().prop_map(|v| (v, v)),
        1 => Just((0, max)),
        // Degenerate (empty) ranges must simply never match.
        1 => (value.clone(), value).prop_map(|(a, b)| (a.max(b), a.min(b))),
    ]
}

fn port_strategy() -> impl Strategy<Value = (u32, u32)> {
    prop_oneof![
        2 => Just(ANY_PORT),
        1 => Just((0u32, 65535u32)),
        2 => (0u32..=65535).prop_map(|p| (p, p)),
        2 => (0u32..=NO_PORT, 0u32..=NO_PORT).prop_map(|(a, b)| (a.min(b), a.max(b))),
        1 => (0u32..=20, 0u32..=20).prop_map(|(a, b)| (a.min(b), a.max(b))),
    ]
}

fn rule_strategy<A: AddressKey>() -> impl Strategy<Value = ClassifierRule<A>> {
    (
        prop_oneof![
            Just(None),
            (0u8..4).prop_map(Some),
            any::<u8>().prop_map(Some)
        ],
        range_strategy(A::BITS),
        range_strategy(A::BITS),
        port_strategy(),
        port_strategy(),
        0u32..40,
    )
        .prop_map(|(protocol, s, d, sp, dp, id)| ClassifierRule {
            protocol,
            source: (A::from_u128(s.0), A::from_u128(s.1)),
            destination: (A::from_u128(d.0), A::from_u128(d.1)),
            source_port: sp,
            destination_port: dp,
            id,
        })
}

/// Keys: random, or built from rule corners (low/high/just outside).
fn keys_for<A: AddressKey>(
    rules: &[ClassifierRule<A>],
    picks: &[(usize, u8, u128, u128)],
) -> Vec<PacketKey<A>> {
    let amax = A::MAX.to_u128();
    picks
        .iter()
        .map(|&(idx, mode, ra, rb)| {
            let corner = |(lo, hi): (u128, u128), bit: u8| -> u128 {
                match bit % 4 {
                    0 => lo,
                    1 => hi,
                    2 => lo.saturating_sub(1),
                    _ => hi.saturating_add(1).min(amax),
                }
            };
            match rules.get(idx % rules.len().max(1)) {
                Some(r) if mode % 5 != 0 => {
                    let port = |(lo, hi): (u32, u32), bit: u8| -> u32 {
                        let v = corner((u128::from(lo), u128::from(hi)), bit);
                        (v as u32).min(NO_PORT)
                    };
                    PacketKey {
                        protocol: r.protocol.unwrap_or((ra % 7) as u8),
                        source: A::from_u128(corner(
                            (r.source.0.to_u128(), r.source.1.to_u128()),
                            mode,
                        )),
                        destination: A::from_u128(corner(
                            (r.destination.0.to_u128(), r.destination.1.to_u128()),
                            mode / 4,
                        )),
                        source_port: port(r.source_port, (rb % 4) as u8),
                        destination_port: port(r.destination_port, (rb / 4 % 4) as u8),
                    }
                }
                _ => PacketKey {
                    protocol: (ra % 256) as u8,
                    source: A::from_u128(ra & amax),
                    destination: A::from_u128(rb & amax),
                    source_port: (ra % 65537) as u32,
                    destination_port: (rb % 65537) as u32,
                },
            }
        })
        .collect()
}

fn run_case<A: AddressKey>(rules: Vec<ClassifierRule<A>>, picks: Vec<(usize, u8, u128, u128)>) {
    let keys = keys_for(&rules, &picks);
    for cfg in configs() {
        check(&rules, &keys, &cfg);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn differential_ipv4(
        rules in prop::collection::vec(rule_strategy::<u32>(), 0..300),
        picks in prop::collection::vec((any::<usize>(), any::<u8>(), any::<u128>(), any::<u128>()), 1..200),
    ) {
        run_case(rules, picks);
    }

    #[test]
    fn differential_ipv6(
        rules in prop::collection::vec(rule_strategy::<u128>(), 0..300),
        picks in prop::collection::vec((any::<usize>(), any::<u8>(), any::<u128>(), any::<u128>()), 1..200),
    ) {
        run_case(rules, picks);
    }
}

fn any_rule<A: AddressKey>(id: u32) -> ClassifierRule<A> {
    ClassifierRule {
        protocol: None,
        source: (A::default(), A::MAX),
        destination: (A::default(), A::MAX),
        source_port: ANY_PORT,
        destination_port: ANY_PORT,
        id,
    }
}

#[test]
fn empty_set_matches_nothing() {
    let c = Classifier::<u32>::build(&[]);
    assert_eq!(c.classify(&PacketKey::default()), None);
    let mut out = [0u32; 3];
    c.classify_batch(&[PacketKey::default(); 3], &mut out);
    assert_eq!(out, [NO_MATCH; 3]);
    assert_eq!(c.rule_count(), 0);
}

#[test]
fn wildcards_and_identical_rules() {
    let mut rules: Vec<ClassifierRule<u32>> = (0..20_000).map(|i| any_rule(50_000 - i)).collect();
    let specific = ClassifierRule {
        protocol: Some(6),
        source: (10, 10),
        destination: (20, 20),
        source_port: (1, 1),
        destination_port: (2, 2),
        id: 5,
    };
    rules.extend(std::iter::repeat_n(specific, 20_000));
    let c = Classifier::build(&rules);
    let k = PacketKey {
        protocol: 6,
        source: 10,
        destination: 20,
        source_port: 1,
        destination_port: 2,
    };
    assert_eq!(c.classify(&k), Some(5));
    assert_eq!(c.classify(&PacketKey::default()), Some(30_001));
    let c6 = Classifier::<u128>::build(&[any_rule(3), any_rule(1)]);
    assert_eq!(c6.classify(&PacketKey::default()), Some(1));
}

#[test]
fn no_port_only_matches_wildcard_ports() {
    let mut r = any_rule::<u32>(1);
    r.destination_port = (0, 65535);
    let c = Classifier::build(&[r, any_rule(2)]);
    let mut k = PacketKey {
        destination_port: NO_PORT,
        ..PacketKey::default()
    };
    assert_eq!(c.classify(&k), Some(2));
    k.destination_port = 65535;
    assert_eq!(c.classify(&k), Some(1));
}
