//! The multi-field packet classifier: given rules over (protocol, source address,
//! destination address, source port, destination port), each field a range, find
//! the matching rule with the smallest id (= highest priority).
//!
//! This room knows nothing of NSGs: `compile` feeds it NSG rules, `classbench`
//! feeds it ClassBench rules. Lookups never allocate and never lock.
//!
//! # Structure
//!
//! Rules are partitioned by which address fields are specific (CutSplit /
//! EffiCuts), and each subset becomes a flat multi-way split tree (HyperSplit
//! with up to 16 children per node, one 64-byte node per cache line for IPv4;
//! see `build.rs` and `tree.rs`). Several partitionings and leaf sizes are
//! built and the one with the lowest estimated lookup cost on sampled
//! rule-corner keys is kept. A lookup walks the trees in order of their
//! smallest rule id and stops once no remaining tree can beat the best match.
//! [`Classifier::classify_batch`] walks 16 keys in lock-step without branches
//! so their cache misses overlap.

use std::fmt::Debug;
use std::hash::Hash;

mod build;
#[cfg(test)]
mod tests;
mod tree;

pub use build::{BuildConfig, ClassifierStats};

/// Port value a packet without ports (ICMP, ESP, AH, …) carries. Only a port
/// condition that covers everything (`*`) includes it: rules built from `*`
/// ports use `0..=NO_PORT`, rules naming ports stay within `0..=65535`.
pub const NO_PORT: u32 = 65536;

/// The full port range including [`NO_PORT`]: what `*` compiles to.
pub const ANY_PORT: (u32, u32) = (0, NO_PORT);

/// An address width the classifier can key on: IPv4 (`u32`) or IPv6 (`u128`).
pub trait AddressKey: Copy + Ord + Eq + Hash + Debug + Default + Send + Sync + 'static {
    const BITS: u32;
    const MAX: Self;
    /// The address as an unsigned integer widened to 128 bits.
    fn to_u128(self) -> u128;
    /// Narrows a 128-bit value; callers guarantee it fits.
    fn from_u128(value: u128) -> Self;
}

impl AddressKey for u32 {
    const BITS: u32 = 32;
    const MAX: Self = u32::MAX;
    fn to_u128(self) -> u128 {
        u128::from(self)
    }
    fn from_u128(value: u128) -> Self {
        value as u32
    }
}

impl AddressKey for u128 {
    const BITS: u32 = 128;
    const MAX: Self = u128::MAX;
    fn to_u128(self) -> u128 {
        self
    }
    fn from_u128(value: u128) -> Self {
        value
    }
}

/// One rule: a box in the 5-field space. All ranges are inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClassifierRule<A> {
    /// `None` matches every protocol number.
    pub protocol: Option<u8>,
    pub source: (A, A),
    pub destination: (A, A),
    /// Within `0..=NO_PORT`.
    pub source_port: (u32, u32),
    pub destination_port: (u32, u32),
    /// Priority: the smallest matching id wins. Several rules may share an id
    /// (one policy rule that lists several prefixes or port ranges).
    pub id: u32,
}

/// The header fields a lookup keys on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct PacketKey<A> {
    pub protocol: u8,
    pub source: A,
    pub destination: A,
    /// `0..=65535`, or [`NO_PORT`] for protocols without ports.
    pub source_port: u32,
    pub destination_port: u32,
}

impl<A: AddressKey> ClassifierRule<A> {
    /// Whether the rule matches the key: the definition every classifier
    /// structure must agree with.
    #[inline]
    pub fn matches(&self, key: &PacketKey<A>) -> bool {
        self.protocol.is_none_or(|p| p == key.protocol)
            && self.source.0 <= key.source
            && key.source <= self.source.1
            && self.destination.0 <= key.destination
            && key.destination <= self.destination.1
            && self.source_port.0 <= key.source_port
            && key.source_port <= self.source_port.1
            && self.destination_port.0 <= key.destination_port
            && key.destination_port <= self.destination_port.1
    }
}

/// Value [`Classifier::classify_batch`] writes for a key no rule matches.
pub const NO_MATCH: u32 = u32::MAX;

/// The compiled classifier: a few decision trees, one per subset of rules
/// that are specific in the same fields (see [`build`] for the algorithm).
#[derive(Debug, Clone)]
pub struct Classifier<A> {
    trees: Vec<tree::Tree<A>>,
    rule_count: usize,
}

impl<A: AddressKey> Classifier<A> {
    /// Builds the lookup structure. Rules may come in any order.
    pub fn build(rules: &[ClassifierRule<A>]) -> Self {
        Self::build_with(rules, &BuildConfig::default())
    }

    /// Builds with explicit tuning knobs (leaf size, fan-out, budgets).
    pub fn build_with(rules: &[ClassifierRule<A>], config: &BuildConfig) -> Self {
        Classifier {
            trees: build::build_trees(rules, config),
            rule_count: rules.len(),
        }
    }

    /// The smallest id among the rules matching `key`.
    #[inline]
    pub fn classify(&self, key: &PacketKey<A>) -> Option<u32> {
        let fields = tree::key_fields(key);
        let mut best = NO_MATCH;
        for t in &self.trees {
            if t.min_id >= best {
                break;
            }
            best = t.lookup(key, &fields, best);
        }
        (best != NO_MATCH).then_some(best)
    }

    /// Classifies many keys at once (`out[i]` answers `keys[i]`, [`NO_MATCH`]
    /// when nothing matches). `out` must be at least as long as `keys`; extra
    /// keys beyond `out.len()` are ignored.
    pub fn classify_batch(&self, keys: &[PacketKey<A>], out: &mut [u32]) {
        let n = keys.len().min(out.len());
        let (keys, out) = (&keys[..n], &mut out[..n]);
        for slot in out.iter_mut() {
            *slot = NO_MATCH;
        }
        for t in &self.trees {
            t.lookup_batch(keys, out);
        }
    }

    /// Number of rules the classifier was built from.
    pub fn rule_count(&self) -> usize {
        self.rule_count
    }

    /// Heap bytes held by the compiled tables.
    pub fn table_bytes(&self) -> usize {
        self.trees.iter().map(|t| t.table_bytes()).sum::<usize>()
            + self.trees.capacity() * std::mem::size_of::<tree::Tree<A>>()
    }

    /// Work one lookup does: (trees walked, nodes visited, leaf rules
    /// compared). For tuning and tests.
    pub fn lookup_cost(&self, key: &PacketKey<A>) -> (u32, u32, u32) {
        let fields = tree::key_fields(key);
        let mut best = NO_MATCH;
        let (mut trees, mut nodes, mut rules) = (0, 0, 0);
        for t in &self.trees {
            if t.min_id >= best {
                break;
            }
            let (n, r, b) = t.cost(key, &fields, best);
            trees += 1;
            nodes += n;
            rules += r;
            best = b;
        }
        (trees, nodes, rules)
    }

    /// Shape statistics of the compiled structure (for tuning and reports).
    pub fn stats(&self) -> ClassifierStats {
        let mut s = ClassifierStats {
            trees: self.trees.len(),
            ..Default::default()
        };
        for t in &self.trees {
            t.add_stats(&mut s);
        }
        s
    }
}

/// Reference first-match linear scan: the baseline the classifier is measured
/// against. Rules sorted by id; the first match is the smallest id.
#[derive(Debug, Clone)]
pub struct LinearClassifier<A> {
    rules: Vec<ClassifierRule<A>>,
}

impl<A: AddressKey> LinearClassifier<A> {
    pub fn build(rules: &[ClassifierRule<A>]) -> Self {
        let mut rules = rules.to_vec();
        rules.sort_by_key(|r| r.id);
        LinearClassifier { rules }
    }

    #[inline]
    pub fn classify(&self, key: &PacketKey<A>) -> Option<u32> {
        self.rules.iter().find(|r| r.matches(key)).map(|r| r.id)
    }

    pub fn classify_batch(&self, keys: &[PacketKey<A>], out: &mut [u32]) {
        for (key, slot) in keys.iter().zip(out.iter_mut()) {
            *slot = self.classify(key).unwrap_or(NO_MATCH);
        }
    }
}
