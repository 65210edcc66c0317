//! The multi-field packet classifier: given rules over (protocol, source address,
//! destination address, source port, destination port), each field a range, find
//! the matching rule with the smallest id (= highest priority).
//!
//! This room knows nothing of NSGs: `compile` feeds it NSG rules, `classbench`
//! feeds it ClassBench rules. Lookups never allocate and never lock.

use std::fmt::Debug;
use std::hash::Hash;

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

/// The compiled classifier. Placeholder: a linear scan over rules sorted by id,
/// to be replaced by the real multi-field structure.
#[derive(Debug, Clone)]
pub struct Classifier<A> {
    rules: Vec<ClassifierRule<A>>,
}

impl<A: AddressKey> Classifier<A> {
    /// Builds the lookup structure. Rules may come in any order.
    pub fn build(rules: &[ClassifierRule<A>]) -> Self {
        let mut rules = rules.to_vec();
        rules.sort_by_key(|r| r.id);
        Classifier { rules }
    }

    /// The smallest id among the rules matching `key`.
    #[inline]
    pub fn classify(&self, key: &PacketKey<A>) -> Option<u32> {
        self.rules.iter().find(|r| r.matches(key)).map(|r| r.id)
    }

    /// Classifies many keys at once (`out[i]` answers `keys[i]`, [`NO_MATCH`]
    /// when nothing matches). `out` must be at least as long as `keys`.
    pub fn classify_batch(&self, keys: &[PacketKey<A>], out: &mut [u32]) {
        for (key, slot) in keys.iter().zip(out.iter_mut()) {
            *slot = self.classify(key).unwrap_or(NO_MATCH);
        }
    }

    /// Number of rules the classifier was built from.
    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// Heap bytes held by the compiled tables.
    pub fn table_bytes(&self) -> usize {
        self.rules.capacity() * std::mem::size_of::<ClassifierRule<A>>()
    }
}
