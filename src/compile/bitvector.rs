//! The classifier for NSG tables: a bit-vector scheme over equivalence classes
//! (Lakshman–Stiliadis bit vectors, with RFC-style class sharing).
//!
//! NSG rules are set-valued — a rule may list thousands of prefixes and port
//! ranges, and tags such as `Internet` expand to a dozen ranges — so expanding
//! them into boxes for a decision tree multiplies (sources × destinations ×
//! ports) and replicates wide rules. Here each field is indexed on its own:
//! the field's range endpoints cut its axis into elementary intervals; each
//! interval maps to the bit vector of rules (bit i = i-th rule by priority)
//! whose set covers it; identical vectors are stored once. A lookup finds the
//! interval of each field (one binary search each, independent so the CPU
//! overlaps them), ANDs the five vectors word by word from the highest
//! priority and stops at the first set bit. NSG tables hold at most ~1,000
//! rules, so a vector is at most 16 words. Memory is bounded by intervals ×
//! 4 bytes plus distinct classes × vector size, with no cross products.
//!
//! One classifier may hold several rule lists as *segments* (each starting on
//! a word boundary) and answer the first match of each in one pass: a NIC's
//! chain (NIC NSG and subnet NSG) then costs one set of field searches.

use std::collections::HashMap;

use super::classifier::{AddressKey, NO_PORT};

/// Per rule, per field: its set as sorted, disjoint inclusive ranges.
#[derive(Debug, Clone, Copy)]
pub struct SetRule<'a, A> {
    /// `None` matches every protocol number.
    pub protocol: Option<u8>,
    pub source: &'a [(A, A)],
    pub destination: &'a [(A, A)],
    pub source_port: &'a [(u32, u32)],
    pub destination_port: &'a [(u32, u32)],
}

/// What [`BitVectorClassifier::first_matches`] reports for a segment with no
/// matching rule.
pub const NO_RULE: u32 = u32::MAX;

/// Most bytes the class vectors of one classifier may take: a pathological
/// policy is refused at compile time instead of exhausting memory.
pub const MAX_CLASS_BYTES: usize = 256 << 20;

/// Why a table could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the rules cut one field into {classes} distinct rule sets ({bytes} bytes, limit {MAX_CLASS_BYTES})")]
pub struct TooManyClasses {
    pub classes: usize,
    pub bytes: usize,
}

/// One field: elementary interval starts and, per interval, the offset of its
/// class vector in `bits`.
#[derive(Debug, Clone, Default)]
struct FieldIndex<T> {
    starts: Vec<T>,
    offsets: Vec<u32>,
    bits: Vec<u64>,
    /// Every `BLOCK`-th start: a two-level search (summary, then one block
    /// of one or two cache lines) touches fewer cache lines than a binary
    /// search over all starts.
    summary: Vec<T>,
    /// Number of real starts; `starts` is padded to whole blocks.
    len: usize,
}

/// Starts per block: one cache line of IPv4 addresses or ports.
const BLOCK: usize = 16;

impl<T: AddressKey> FieldIndex<T> {
    /// `sets[r]` is rule r's set (sorted, disjoint, non-adjacent ranges);
    fn build(
        sets: &[&[(T, T)]],
        bit_of_rule: &[usize],
        words: usize,
        next: impl Fn(T) -> Option<T>,
    ) -> Result<Self, TooManyClasses> {
        // Events: at `lo` rule r enters, after `hi` it leaves. A rule's ranges
        // are disjoint and non-adjacent, so at most one of them is active.
        let mut events: Vec<(T, bool, usize)> = Vec::new();
        for (rule, ranges) in sets.iter().enumerate() {
            for &(lo, hi) in ranges.iter() {
                events.push((lo, true, rule));
                if let Some(after) = next(hi) {
                    events.push((after, false, rule));
                }
            }
        }
        events.sort_unstable_by_key(|e| e.0);
        let mut starts = vec![T::default()];
        let mut offsets = Vec::new();
        let mut bits: Vec<u64> = Vec::new();
        let mut classes: HashMap<Vec<u64>, u32> = HashMap::new();
        let mut current = vec![0u64; words];
        let mut intern = |vector: &Vec<u64>, bits: &mut Vec<u64>| -> Result<u32, TooManyClasses> {
            if let Some(&offset) = classes.get(vector) {
                return Ok(offset);
            }
            let offset = bits.len();
            let bytes = (offset + words) * 8;
            if bytes > MAX_CLASS_BYTES {
                return Err(TooManyClasses {
                    classes: classes.len() + 1,
                    bytes,
                });
            }
            bits.extend_from_slice(vector);
            classes.insert(vector.clone(), offset as u32);
            Ok(offset as u32)
        };
        let mut i = 0;
        while i < events.len() {
            let at = events[i].0;
            if at != *starts.last().expect("starts is never empty") {
                offsets.push(intern(&current, &mut bits)?);
                starts.push(at);
            }
            while i < events.len() && events[i].0 == at {
                let (_, enter, rule) = events[i];
                let (word, bit) = (bit_of_rule[rule] / 64, bit_of_rule[rule] % 64);
                if enter {
                    current[word] |= 1 << bit;
                } else {
                    current[word] &= !(1 << bit);
                }
                i += 1;
            }
        }
        offsets.push(intern(&current, &mut bits)?);
        let len = starts.len();
        let summary: Vec<T> = starts.iter().step_by(BLOCK).copied().collect();
        // Pad to whole blocks with the axis maximum; lookups clamp to `len`.
        starts.resize(len.div_ceil(BLOCK) * BLOCK, T::MAX);
        Ok(FieldIndex {
            starts,
            offsets,
            bits,
            summary,
            len,
        })
    }

    /// The class vector of the interval holding `value`.
    #[inline(always)]
    fn vector(&self, value: T, words: usize) -> &[u64] {
        // Number of starts <= value, minus one, is the interval. starts[0]
        // is the axis minimum, so that number is at least one.
        let blocks_below = self.summary.partition_point(|&s| s <= value);
        let base = blocks_below.saturating_sub(1) * BLOCK;
        let block = &self.starts[base..base + BLOCK];
        let within = block.partition_point(|&s| s <= value);
        let interval = (base + within).min(self.len).saturating_sub(1);
        let offset = self.offsets[interval] as usize;
        &self.bits[offset..offset + words]
    }

    fn bytes(&self) -> usize {
        self.starts.capacity() * std::mem::size_of::<T>()
            + self.offsets.capacity() * 4
            + self.bits.capacity() * 8
            + self.summary.capacity() * std::mem::size_of::<T>()
    }
}

/// First-match classifier over set-valued rules of one address family.
#[derive(Debug, Clone, Default)]
pub struct BitVectorClassifier<A> {
    rules: usize,
    words: usize,
    /// Per segment: (first word, word count).
    layout: Vec<(usize, usize)>,
    /// Offset into `protocol_bits` per protocol number.
    protocol_offsets: Vec<u32>,
    protocol_bits: Vec<u64>,
    source: FieldIndex<A>,
    destination: FieldIndex<A>,
    source_port: FieldIndex<u32>,
    destination_port: FieldIndex<u32>,
}

impl<A: AddressKey> BitVectorClassifier<A> {
    /// Builds from one rule list in priority order (index = id).
    pub fn build(rules: &[SetRule<'_, A>]) -> Result<Self, TooManyClasses> {
        Self::build_segments(&[rules])
    }

    /// Builds from several rule lists; [`first_matches`](Self::first_matches)
    /// answers each list's first match separately.
    pub fn build_segments(segments: &[&[SetRule<'_, A>]]) -> Result<Self, TooManyClasses> {
        // Lay the segments out on word boundaries: rule `i` of a segment
        // starting at word `w` is bit `w * 64 + i`.
        let mut layout = Vec::with_capacity(segments.len());
        let mut bit_of_rule: Vec<usize> = Vec::new();
        let mut rules: Vec<SetRule<'_, A>> = Vec::new();
        let mut next_word = 0usize;
        for segment in segments {
            let words = segment.len().div_ceil(64);
            layout.push((next_word, words));
            for (i, rule) in segment.iter().enumerate() {
                bit_of_rule.push(next_word * 64 + i);
                rules.push(*rule);
            }
            next_word += words;
        }
        let words = next_word.max(1);
        let rules = &rules[..];
        let set_bit = |vector: &mut Vec<u64>, rule: usize| {
            let bit = bit_of_rule[rule];
            vector[bit / 64] |= 1 << (bit % 64);
        };
        let next_address = |a: A| (a != A::MAX).then(|| A::from_u128(a.to_u128() + 1));
        let next_port = |p: u32| (p < NO_PORT).then_some(p + 1);
        let sources: Vec<&[(A, A)]> = rules.iter().map(|r| r.source).collect();
        let destinations: Vec<&[(A, A)]> = rules.iter().map(|r| r.destination).collect();
        let source_ports: Vec<&[(u32, u32)]> = rules.iter().map(|r| r.source_port).collect();
        let destination_ports: Vec<&[(u32, u32)]> =
            rules.iter().map(|r| r.destination_port).collect();

        // Protocol: one vector per distinct named protocol, one for the rest.
        let mut any = vec![0u64; words];
        for (i, rule) in rules.iter().enumerate() {
            if rule.protocol.is_none() {
                set_bit(&mut any, i);
            }
        }
        let mut protocol_bits = any.clone();
        let mut protocol_offsets = vec![0u32; 256];
        let mut named: Vec<u8> = rules.iter().filter_map(|r| r.protocol).collect();
        named.sort_unstable();
        named.dedup();
        for protocol in named {
            let mut vector = any.clone();
            for (i, rule) in rules.iter().enumerate() {
                if rule.protocol == Some(protocol) {
                    set_bit(&mut vector, i);
                }
            }
            protocol_offsets[usize::from(protocol)] = protocol_bits.len() as u32;
            protocol_bits.extend_from_slice(&vector);
        }

        Ok(BitVectorClassifier {
            rules: rules.len(),
            words,
            layout,
            protocol_offsets,
            protocol_bits,
            source: FieldIndex::build(&sources, &bit_of_rule, words, next_address)?,
            destination: FieldIndex::build(&destinations, &bit_of_rule, words, next_address)?,
            source_port: FieldIndex::build(&source_ports, &bit_of_rule, words, next_port)?,
            destination_port: FieldIndex::build(
                &destination_ports,
                &bit_of_rule,
                words,
                next_port,
            )?,
        })
    }

    /// Index of the first (highest-priority) rule matching, if any, for a
    /// classifier of one segment.
    #[inline]
    pub fn classify(
        &self,
        protocol: u8,
        source: A,
        destination: A,
        source_port: u32,
        destination_port: u32,
    ) -> Option<u32> {
        let mut first = [NO_RULE];
        self.first_matches(
            protocol,
            source,
            destination,
            source_port,
            destination_port,
            &mut first,
        );
        (first[0] != NO_RULE).then_some(first[0])
    }

    /// The first matching rule of each segment (its index within the
    /// segment), or [`NO_RULE`]; `out` has one slot per segment.
    #[inline]
    pub fn first_matches(
        &self,
        protocol: u8,
        source: A,
        destination: A,
        source_port: u32,
        destination_port: u32,
        out: &mut [u32],
    ) {
        let words = self.words;
        let offset = self.protocol_offsets[usize::from(protocol)] as usize;
        let p = &self.protocol_bits[offset..offset + words];
        let s = self.source.vector(source, words);
        let d = self.destination.vector(destination, words);
        let sp = self.source_port.vector(source_port, words);
        let dp = self.destination_port.vector(destination_port, words);
        for (slot, &(start, count)) in out.iter_mut().zip(&self.layout) {
            *slot = NO_RULE;
            for w in start..start + count {
                let hit = p[w] & s[w] & d[w] & sp[w] & dp[w];
                if hit != 0 {
                    *slot = ((w - start) * 64) as u32 + hit.trailing_zeros();
                    break;
                }
            }
        }
    }

    pub fn segment_count(&self) -> usize {
        self.layout.len()
    }

    pub fn rule_count(&self) -> usize {
        self.rules
    }

    /// Heap bytes of the tables.
    pub fn table_bytes(&self) -> usize {
        self.protocol_offsets.capacity() * 4
            + self.protocol_bits.capacity() * 8
            + self.source.bytes()
            + self.destination.bytes()
            + self.source_port.bytes()
            + self.destination_port.bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition: first rule whose every set contains the value.
    fn naive(rules: &[SetRule<'_, u32>], key: (u8, u32, u32, u32, u32)) -> Option<u32> {
        let inside = |set: &[(u32, u32)], v: u32| set.iter().any(|&(lo, hi)| lo <= v && v <= hi);
        rules
            .iter()
            .position(|r| {
                r.protocol.is_none_or(|p| p == key.0)
                    && inside(r.source, key.1)
                    && inside(r.destination, key.2)
                    && inside(r.source_port, key.3)
                    && inside(r.destination_port, key.4)
            })
            .map(|i| i as u32)
    }

    proptest::proptest! {
        #[test]
        fn agrees_with_a_linear_scan(
            shapes in proptest::collection::vec(
                (proptest::option::of(0u8..4),
                 proptest::collection::vec((0u32..40, 0u32..8), 0..4),
                 proptest::collection::vec((0u32..40, 0u32..8), 1..3),
                 proptest::collection::vec((0u32..20, 0u32..6), 1..3),
                 proptest::collection::vec((0u32..20, 0u32..6), 1..3)),
                0..150),
            keys in proptest::collection::vec((0u8..5, 0u32..50, 0u32..50, 0u32..30, 0u32..30), 1..60),
            spread in proptest::bool::ANY,
        ) {
            // Spread addresses over the whole axis so every top-bits bucket
            // is exercised, not only the first.
            let scale = if spread { 1u32 << 25 } else { 1 };
            // Turn (start, length) pairs into sorted, disjoint, non-adjacent sets.
            fn normalise(pairs: &[(u32, u32)]) -> Vec<(u32, u32)> {
                let mut ranges: Vec<(u32, u32)> = pairs.iter().map(|&(a, l)| (a, a + l)).collect();
                ranges.sort_unstable();
                let mut out: Vec<(u32, u32)> = Vec::new();
                for (lo, hi) in ranges {
                    match out.last_mut() {
                        Some(last) if lo <= last.1 + 1 => last.1 = last.1.max(hi),
                        _ => out.push((lo, hi)),
                    }
                }
                out
            }
            let scaled = |set: Vec<(u32, u32)>| -> Vec<(u32, u32)> {
                set.into_iter().map(|(lo, hi)| (lo * scale, hi * scale)).collect()
            };
            let sets: Vec<_> = shapes
                .iter()
                .map(|(p, s, d, sp, dp)| (*p, scaled(normalise(s)), scaled(normalise(d)), normalise(sp), normalise(dp)))
                .collect();
            let rules: Vec<SetRule<'_, u32>> = sets
                .iter()
                .map(|(p, s, d, sp, dp)| SetRule { protocol: *p, source: s, destination: d, source_port: sp, destination_port: dp })
                .collect();
            let classifier = BitVectorClassifier::build(&rules).unwrap();
            for key in keys {
                let key = (key.0, key.1 * scale, key.2 * scale + u32::from(spread), key.3, key.4);
                proptest::prop_assert_eq!(
                    classifier.classify(key.0, key.1, key.2, key.3, key.4),
                    naive(&rules, key)
                );
            }
        }
    }

    #[test]
    fn edges_of_the_axes_and_the_no_port_value() {
        let everything = [(0u32, u32::MAX)];
        let all_ports = [(0u32, NO_PORT)];
        let web = [(80u32, 80u32)];
        let rules = [
            SetRule {
                protocol: Some(6),
                source: &everything,
                destination: &everything,
                source_port: &all_ports,
                destination_port: &web,
            },
            SetRule {
                protocol: None,
                source: &everything,
                destination: &everything,
                source_port: &all_ports,
                destination_port: &all_ports,
            },
        ];
        let c = BitVectorClassifier::build(&rules).unwrap();
        assert_eq!(c.classify(6, u32::MAX, 0, 0, 80), Some(0));
        assert_eq!(c.classify(6, 0, u32::MAX, 65535, 81), Some(1));
        assert_eq!(c.classify(1, 5, 5, NO_PORT, NO_PORT), Some(1));
        assert_eq!(
            BitVectorClassifier::<u32>::build(&[])
                .unwrap()
                .classify(6, 1, 1, 1, 1),
            None
        );
    }
}
