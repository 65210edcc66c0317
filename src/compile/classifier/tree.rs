//! The lookup side: one flat decision tree over a subset of the rules.
//!
//! Nodes live in one `Vec<Node>` indexed by `u32`. An inner node cuts one
//! field at up to `MAX_FANOUT - 1` thresholds; its children are contiguous, so
//! the child to descend to is `first_child + #(thresholds <= value)`. A leaf
//! points at a run of [`LeafRule`]s sorted by id: the first that matches wins.

use super::{AddressKey, ClassifierStats, PacketKey, NO_MATCH};

/// `Node::field` value marking a leaf.
pub(crate) const LEAF: u8 = 0xFF;

/// Keys walked in lock-step by [`Tree::lookup_batch`].
const LANES: usize = 16;

/// Field order of the tree: source, destination, source port, destination
/// port, protocol.
pub(crate) const FIELDS: usize = 5;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Node {
    /// Field cut at this node (`0..FIELDS`), or [`LEAF`].
    pub field: u8,
    /// Number of thresholds of an inner node.
    pub count: u8,
    /// Inner node: index of the first threshold; leaf: index of the first rule.
    pub a: u32,
    /// Inner node: index of the first child; leaf: number of rules.
    pub b: u32,
}

/// A rule as stored in a leaf: compact, matched branch-free.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LeafRule<A> {
    pub src: (A, A),
    pub dst: (A, A),
    pub sport: (u32, u32),
    pub dport: (u32, u32),
    pub id: u32,
    pub proto: (u8, u8),
}

impl<A: AddressKey> LeafRule<A> {
    #[inline(always)]
    pub fn matches(&self, k: &PacketKey<A>) -> bool {
        (self.src.0 <= k.source)
            & (k.source <= self.src.1)
            & (self.dst.0 <= k.destination)
            & (k.destination <= self.dst.1)
            & (self.sport.0 <= k.source_port)
            & (k.source_port <= self.sport.1)
            & (self.dport.0 <= k.destination_port)
            & (k.destination_port <= self.dport.1)
            & (self.proto.0 <= k.protocol)
            & (k.protocol <= self.proto.1)
    }
}

/// The key as the tree sees it: every field widened to `A`.
#[inline(always)]
pub(crate) fn key_fields<A: AddressKey>(k: &PacketKey<A>) -> [A; FIELDS] {
    [
        k.source,
        k.destination,
        A::from_u128(u128::from(k.source_port)),
        A::from_u128(u128::from(k.destination_port)),
        A::from_u128(u128::from(k.protocol)),
    ]
}

#[derive(Debug, Clone)]
pub(crate) struct Tree<A> {
    pub nodes: Vec<Node>,
    pub thresholds: Vec<A>,
    pub rules: Vec<LeafRule<A>>,
    /// Smallest rule id in the tree: a lookup whose best is already at or
    /// below it can skip the tree.
    pub min_id: u32,
}

impl<A: AddressKey> Tree<A> {
    /// Index of the child of inner node `n` that `fields` falls into.
    #[inline(always)]
    fn child(&self, n: &Node, fields: &[A; FIELDS]) -> usize {
        let v = fields[usize::from(n.field) % FIELDS];
        let start = n.a as usize;
        let end = start + usize::from(n.count);
        let c = self.thresholds[start..end]
            .iter()
            .map(|&t| usize::from(t <= v))
            .sum::<usize>();
        n.b as usize + c
    }

    /// The leaf `fields` lands in.
    #[inline(always)]
    fn find_leaf(&self, fields: &[A; FIELDS]) -> Node {
        let mut n = self.nodes[0];
        while n.field != LEAF {
            n = self.nodes[self.child(&n, fields)];
        }
        n
    }

    /// Scans a leaf for the first rule matching `key` with an id below `best`.
    #[inline(always)]
    fn scan_leaf(&self, leaf: Node, key: &PacketKey<A>, best: u32) -> u32 {
        let start = leaf.a as usize;
        let end = start + leaf.b as usize;
        for r in &self.rules[start..end] {
            if r.id >= best {
                break;
            }
            if r.matches(key) {
                return r.id;
            }
        }
        best
    }

    /// `best` improved by this tree's rules.
    #[inline]
    pub fn lookup(&self, key: &PacketKey<A>, fields: &[A; FIELDS], best: u32) -> u32 {
        let leaf = self.find_leaf(fields);
        self.scan_leaf(leaf, key, best)
    }

    /// Improves `out[i]` for every key, walking `LANES` keys in lock-step so
    /// that their independent cache misses overlap.
    pub fn lookup_batch(&self, keys: &[PacketKey<A>], out: &mut [u32]) {
        for (kc, oc) in keys.chunks(LANES).zip(out.chunks_mut(LANES)) {
            let m = kc.len().min(oc.len());
            let mut fields = [[A::default(); FIELDS]; LANES];
            let mut cur = [self.nodes[0]; LANES];
            for i in 0..m {
                fields[i] = key_fields(&kc[i]);
            }
            loop {
                let mut moved = false;
                for i in 0..m {
                    let n = cur[i];
                    if n.field != LEAF {
                        cur[i] = self.nodes[self.child(&n, &fields[i])];
                        moved = true;
                    }
                }
                if !moved {
                    break;
                }
            }
            for i in 0..m {
                if oc[i] > self.min_id {
                    oc[i] = self.scan_leaf(cur[i], &kc[i], oc[i]);
                }
            }
        }
    }

    pub fn table_bytes(&self) -> usize {
        self.nodes.capacity() * std::mem::size_of::<Node>()
            + self.thresholds.capacity() * std::mem::size_of::<A>()
            + self.rules.capacity() * std::mem::size_of::<LeafRule<A>>()
    }

    pub fn add_stats(&self, s: &mut ClassifierStats) {
        s.nodes += self.nodes.len();
        s.leaf_rules += self.rules.len();
        // Depth by walking: children always have larger indices than parents.
        let mut depth = vec![0usize; self.nodes.len()];
        for (i, n) in self.nodes.iter().enumerate() {
            if n.field == LEAF {
                s.leaves += 1;
                s.max_leaf = s.max_leaf.max(n.b as usize);
                s.max_depth = s.max_depth.max(depth[i]);
            } else {
                let di = depth[i];
                for c in 0..=usize::from(n.count) {
                    if let Some(d) = depth.get_mut(n.b as usize + c) {
                        *d = di + 1;
                    }
                }
            }
        }
    }
}

impl<A> Tree<A> {
    pub fn empty() -> Self {
        Tree {
            nodes: vec![Node {
                field: LEAF,
                count: 0,
                a: 0,
                b: 0,
            }],
            thresholds: Vec::new(),
            rules: Vec::new(),
            min_id: NO_MATCH,
        }
    }
}
