//! The lookup side: one flat decision tree over a subset of the rules.
//!
//! Nodes live in one `Vec<Node>` indexed by `u32`. An inner node cuts one
//! field at up to `MAX_FANOUT - 1` thresholds; its children are contiguous, so
//! the child to descend to is `first_child + #(thresholds <= value)`. A leaf
//! points at a run of [`LeafRule`]s sorted by id: the first that matches wins.

use super::{AddressKey, ClassifierStats, PacketKey, NO_MATCH};

/// Node kind (low 3 bits of `Node::meta`) marking a leaf.
pub(crate) const LEAF: u32 = 7;

/// Most children of one node; an inner node holds `FANOUT - 1` thresholds.
pub(crate) const FANOUT: usize = 16;

/// Largest first-child index `Node::meta` can hold.
pub(crate) const MAX_NODES: usize = 1 << 29;

/// Keys walked in lock-step by [`Tree::lookup_batch`].
const LANES: usize = 16;

/// Field order of the tree: source, destination, source port, destination
/// port, protocol.
pub(crate) const FIELDS: usize = 5;

/// One tree node, a cache line for IPv4.
///
/// Inner node: `meta & 7` is the field cut, `meta >> 3` the first child; the
/// children are contiguous and the one to take is `first + #(thr[j] < v)`.
/// `thr[j]` is the j-th cut point minus one; unused slots hold `A::MAX`, which
/// no value exceeds, so every node is compared branch-free at full width.
/// Leaf: `meta & 7 == LEAF`, `meta >> 3` its own index and `thr[0] == MAX`,
/// so stepping from a leaf stays on it (batches walk a fixed number of steps
/// without branches); `thr[1]` is the first rule, `thr[2]` the count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C, align(64))]
pub(crate) struct Node<A> {
    pub thr: [A; FANOUT - 1],
    pub meta: u32,
}

impl<A: AddressKey> Node<A> {
    pub fn leaf(index: usize, first: usize, len: usize) -> Self {
        let mut thr = [A::MAX; FANOUT - 1];
        thr[1] = A::from_u128(first as u128);
        thr[2] = A::from_u128(len as u128);
        Node {
            thr,
            meta: ((index as u32) << 3) | LEAF,
        }
    }

    pub fn inner(field: usize, first_child: usize, points: &[u128]) -> Self {
        let mut thr = [A::MAX; FANOUT - 1];
        for (t, &p) in thr.iter_mut().zip(points) {
            *t = A::from_u128(p - 1);
        }
        Node {
            thr,
            meta: ((first_child as u32) << 3) | field as u32,
        }
    }

    #[inline(always)]
    fn is_leaf(&self) -> bool {
        self.meta & 7 == LEAF
    }

    /// Rule range of a leaf.
    #[inline(always)]
    fn rule_range(&self) -> (usize, usize) {
        let first = self.thr[1].to_u128() as usize;
        (first, first + self.thr[2].to_u128() as usize)
    }

    /// Child index of an inner node for the key.
    #[inline(always)]
    fn child(&self, fields: &Fields<A>) -> usize {
        let v = fields[(self.meta & 7) as usize];
        // Thresholds ascend, so the ones below `v` are a prefix: the child
        // is the number of trailing ones of the comparison mask.
        let mut mask = 0u32;
        for (j, &t) in self.thr.iter().enumerate() {
            mask |= u32::from(t < v) << j;
        }
        (self.meta >> 3) as usize + (mask + 1).trailing_zeros() as usize
    }
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
pub(crate) fn key_fields<A: AddressKey>(k: &PacketKey<A>) -> Fields<A> {
    [
        k.source,
        k.destination,
        A::from_u128(u128::from(k.source_port)),
        A::from_u128(u128::from(k.destination_port)),
        A::from_u128(u128::from(k.protocol)),
        A::default(),
        A::default(),
        A::default(),
    ]
}

/// The key's fields indexed by node kind (`meta & 7`); slots past
/// [`FIELDS`] are padding so that indexing needs no bounds check.
pub(crate) type Fields<A> = [A; 8];

#[derive(Debug, Clone)]
pub(crate) struct Tree<A> {
    pub nodes: Vec<Node<A>>,
    pub rules: Vec<LeafRule<A>>,
    /// Smallest rule id in the tree: a lookup whose best is already at or
    /// below it can skip the tree.
    pub min_id: u32,
    /// Lock-step steps a batch takes before finishing stragglers one by one.
    pub steps: u32,
}

impl<A: AddressKey> Tree<A> {
    /// The leaf `fields` lands in.
    #[inline(always)]
    fn find_leaf(&self, fields: &Fields<A>) -> &Node<A> {
        let mut n = &self.nodes[0];
        while !n.is_leaf() {
            n = &self.nodes[n.child(fields)];
        }
        n
    }

    /// Scans a leaf for the first rule matching `key` with an id below `best`.
    #[inline(always)]
    fn scan_leaf(&self, leaf: &Node<A>, key: &PacketKey<A>, best: u32) -> u32 {
        let (start, end) = leaf.rule_range();
        for r in self.rules.get(start..end).unwrap_or(&[]) {
            if r.id >= best {
                break;
            }
            if r.matches(key) {
                return r.id;
            }
        }
        best
    }

    /// (nodes visited, leaf rules compared) by a lookup: for tuning.
    pub fn cost(&self, key: &PacketKey<A>, fields: &Fields<A>, best: u32) -> (u32, u32, u32) {
        let mut n = &self.nodes[0];
        let mut visited = 1;
        while !n.is_leaf() {
            n = &self.nodes[n.child(fields)];
            visited += 1;
        }
        let (start, end) = n.rule_range();
        let mut scanned = 0;
        for r in self.rules.get(start..end).unwrap_or(&[]) {
            if r.id >= best {
                break;
            }
            scanned += 1;
            if r.matches(key) {
                return (visited, scanned, r.id);
            }
        }
        (visited, scanned, best)
    }

    /// `best` improved by this tree's rules.
    #[inline]
    pub fn lookup(&self, key: &PacketKey<A>, fields: &Fields<A>, best: u32) -> u32 {
        let leaf = self.find_leaf(fields);
        self.scan_leaf(leaf, key, best)
    }

    /// Improves `out[i]` for every key. Up to `LANES` keys walk in lock-step
    /// for `steps` levels without branches (leaves step onto themselves), so
    /// their independent cache misses and compare chains overlap; the few
    /// deeper keys then finish one by one, and the leaves are scanned.
    pub fn lookup_batch(&self, keys: &[PacketKey<A>], out: &mut [u32]) {
        for (kc, oc) in keys.chunks(LANES).zip(out.chunks_mut(LANES)) {
            // Lanes whose best so far this tree could still improve.
            let mut lane = [0usize; LANES];
            let mut m = 0;
            for (i, &o) in oc.iter().enumerate().take(kc.len()) {
                lane[m] = i;
                m += usize::from(o > self.min_id);
            }
            if m == 0 {
                continue;
            }
            let mut fields = [[A::default(); 8]; LANES];
            let mut cur = [0usize; LANES];
            for j in 0..m {
                fields[j] = key_fields(&kc[lane[j]]);
            }
            for _ in 0..self.steps {
                for j in 0..m {
                    cur[j] = self.nodes[cur[j]].child(&fields[j]);
                }
            }
            for j in 0..m {
                let mut n = &self.nodes[cur[j]];
                while !n.is_leaf() {
                    cur[j] = n.child(&fields[j]);
                    n = &self.nodes[cur[j]];
                }
            }
            for j in 0..m {
                let i = lane[j];
                oc[i] = self.scan_leaf(&self.nodes[cur[j]], &kc[i], oc[i]);
            }
        }
    }

    pub fn table_bytes(&self) -> usize {
        self.nodes.capacity() * std::mem::size_of::<Node<A>>()
            + self.rules.capacity() * std::mem::size_of::<LeafRule<A>>()
    }

    /// Adds this tree's shape to `s`; returns the number of leaves at each
    /// depth.
    pub fn add_stats(&self, s: &mut ClassifierStats) -> Vec<usize> {
        let mut hist = Vec::new();
        s.nodes += self.nodes.len();
        s.leaf_rules += self.rules.len();
        // Children always have larger indices than their parent.
        let mut depth = vec![0usize; self.nodes.len()];
        for (i, n) in self.nodes.iter().enumerate() {
            if n.is_leaf() {
                let (a, b) = n.rule_range();
                s.leaves += 1;
                s.max_leaf = s.max_leaf.max(b - a);
                s.max_depth = s.max_depth.max(depth[i]);
                if hist.len() <= depth[i] {
                    hist.resize(depth[i] + 1, 0);
                }
                hist[depth[i]] += 1;
            } else {
                let di = depth[i];
                let first = (n.meta >> 3) as usize;
                let count = n.thr.iter().filter(|&&t| t != A::MAX).count();
                for c in 0..=count {
                    if let Some(d) = depth.get_mut(first + c) {
                        *d = di + 1;
                    }
                }
            }
        }
        hist
    }

    pub fn empty() -> Self {
        Tree {
            nodes: vec![Node::leaf(0, 0, 0)],
            steps: 0,
            rules: Vec::new(),
            min_id: NO_MATCH,
        }
    }
}
