//! Building the trees.
//!
//! 1. Rules are normalised to boxes over five `u128` ranges (source,
//!    destination, source port, destination port, protocol); empty boxes and
//!    exact duplicates (which can never win) are dropped.
//! 2. Rules are partitioned by which address fields are *small* (CutSplit /
//!    EffiCuts idea): a tree over rules that are all specific in the source
//!    address can cut the source without replicating wide rules. Tiny
//!    subsets are merged into the largest one.
//! 3. Each subset becomes a multi-way split tree (HyperSplit with fan-out):
//!    at each node, for every field, candidate cut points are the rule edges
//!    inside the node's region; up to `max_fanout - 1` of them are chosen at
//!    equal quantiles of rule weight, and the field giving the smallest
//!    average child is taken. A rule covering the whole node region shadows
//!    every later rule, so lists are cut after it. Replication is bounded
//!    per cut and globally (falling back to bigger leaves).

use super::tree::key_fields;
use super::tree::{LeafRule, Node, Tree, FANOUT, FIELDS, MAX_NODES};
use super::{AddressKey, ClassifierRule, PacketKey, NO_MATCH, NO_PORT};

/// Tuning knobs of [`super::Classifier::build_with`].
#[derive(Debug, Clone)]
pub struct BuildConfig {
    /// A node with at most this many rules becomes a leaf.
    pub leaf_size: usize,
    /// Most children of one node (at most 16).
    pub max_fanout: usize,
    /// Most rule copies one cut may create, relative to the node's rules.
    pub max_cut_replication: f64,
    /// Total leaf rule copies allowed per input rule (plus a constant).
    pub budget_per_rule: usize,
    /// Cut-evaluation work allowed per rule (rules examined, summed over
    /// nodes) before the remaining nodes become leaves.
    pub work_per_rule: usize,
    /// Deepest tree level.
    pub max_depth: usize,
    /// Whether to split rules into subsets by specific fields.
    pub partition: bool,
    /// Subsets smaller than this fraction of the rules are merged.
    pub min_subset_fraction: f64,
    /// Time after which no further partitioning / leaf-size candidates are
    /// built (the best one so far is kept).
    pub search_seconds: f64,
    /// Rule sets up to this size also try a single unpartitioned tree.
    pub single_tree_max: usize,
    /// An address range is *small* when it is no wider than a prefix of this
    /// length (IPv4 terms; scaled for IPv6).
    pub small_prefix: u32,
}

impl Default for BuildConfig {
    fn default() -> Self {
        BuildConfig {
            leaf_size: 16,
            max_fanout: FANOUT,
            max_cut_replication: 3.0,
            budget_per_rule: 16,
            max_depth: 48,
            work_per_rule: 48,
            partition: true,
            min_subset_fraction: 0.05,
            small_prefix: 16,
            single_tree_max: 20_000,
            search_seconds: 0.6,
        }
    }
}

/// Shape of a built classifier.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClassifierStats {
    pub trees: usize,
    pub nodes: usize,
    pub leaves: usize,
    /// Rule copies stored in leaves (replication included).
    pub leaf_rules: usize,
    pub max_leaf: usize,
    pub max_depth: usize,
}

type Region = [(u128, u128); FIELDS];

#[derive(Debug, Clone, Copy)]
struct BRule {
    r: Region,
    id: u32,
}

fn full_region<A: AddressKey>() -> Region {
    let amax = A::MAX.to_u128();
    let pmax = u128::from(u32::MAX);
    [(0, amax), (0, amax), (0, pmax), (0, pmax), (0, 255)]
}

fn normalise<A: AddressKey>(rules: &[ClassifierRule<A>]) -> Vec<BRule> {
    let mut out: Vec<BRule> = rules
        .iter()
        .map(|r| {
            let proto = match r.protocol {
                None => (0, 255),
                Some(p) => (u128::from(p), u128::from(p)),
            };
            BRule {
                r: [
                    (r.source.0.to_u128(), r.source.1.to_u128()),
                    (r.destination.0.to_u128(), r.destination.1.to_u128()),
                    (u128::from(r.source_port.0), u128::from(r.source_port.1)),
                    (
                        u128::from(r.destination_port.0),
                        u128::from(r.destination_port.1),
                    ),
                    proto,
                ],
                id: r.id,
            }
        })
        .filter(|b| b.r.iter().all(|&(lo, hi)| lo <= hi))
        .collect();
    out.sort_by_key(|b| b.id);
    let mut seen = ahash::AHashSet::with_capacity(out.len());
    out.retain(|b| seen.insert(b.r));
    out
}

/// Subsets of rules (indices into `rules`, which is sorted by id, so each
/// subset is too).
///
/// Groups by (source small, destination small). A group too small to be
/// worth its own tree is merged only into a group whose tree never cuts the
/// fields it is wide in: both-small into the larger one-small group, one-small
/// into the neither-small group. Wide rules are never merged into a tree that
/// cuts addresses (they would be replicated into every leaf). With `merge_sd`
/// the both-small group is always merged.
fn partition<A: AddressKey>(
    rules: &[BRule],
    cfg: &BuildConfig,
    min_fraction: f64,
    merge_sd: bool,
) -> Vec<Vec<u32>> {
    let prefix = (cfg.small_prefix * A::BITS / 32).min(A::BITS);
    let small_limit = u128::MAX.checked_shr(128 - (A::BITS - prefix)).unwrap_or(0);
    // 0 = neither small, 1 = destination, 2 = source, 3 = both.
    let mut groups: Vec<Vec<u32>> = vec![Vec::new(); 4];
    for (i, b) in rules.iter().enumerate() {
        let s = usize::from(b.r[0].1 - b.r[0].0 <= small_limit);
        let d = usize::from(b.r[1].1 - b.r[1].0 <= small_limit);
        groups[s * 2 + d].push(i as u32);
    }
    let total = rules.len();
    let min = ((total as f64 * min_fraction) as usize).max(32);
    let merge = |groups: &mut Vec<Vec<u32>>, from: usize, to: usize| {
        let moved = std::mem::take(&mut groups[from]);
        groups[to].extend(moved);
    };
    if groups[3].len() < min || (merge_sd && groups[1].len() + groups[2].len() > 0) {
        let to = if groups[2].len() >= groups[1].len() {
            2
        } else {
            1
        };
        merge(&mut groups, 3, to);
    }
    for g in [1, 2] {
        if groups[g].len() < min && groups[0].len() + groups[g].len() >= min.min(total) {
            merge(&mut groups, g, 0);
        }
    }
    let mut out: Vec<Vec<u32>> = groups.into_iter().filter(|g| !g.is_empty()).collect();
    for g in &mut out {
        g.sort_unstable();
    }
    out.sort();
    out
}

/// Deterministic sample keys shaped like ClassBench traces: a random rule's
/// low or high end in each field.
fn sample_keys<A: AddressKey>(rules: &[BRule], count: usize) -> Vec<PacketKey<A>> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..count)
        .map(|_| {
            let r = &rules[(next() % rules.len() as u64) as usize];
            let bits = next();
            let pick = |f: usize| {
                if bits >> f & 1 == 0 {
                    r.r[f].0
                } else {
                    r.r[f].1
                }
            };
            let port = |f: usize| pick(f).min(u128::from(NO_PORT)) as u32;
            PacketKey {
                source: A::from_u128(pick(0)),
                destination: A::from_u128(pick(1)),
                source_port: port(2),
                destination_port: port(3),
                protocol: pick(4).min(255) as u8,
            }
        })
        .collect()
}

/// Estimated lookup cost of a set of trees (sorted by min id) on `keys`.
fn estimate_cost<A: AddressKey>(trees: &[Tree<A>], keys: &[PacketKey<A>]) -> u64 {
    let mut cost = 0u64;
    for k in keys {
        let fields = key_fields(k);
        let mut best = NO_MATCH;
        for t in trees {
            if t.min_id >= best {
                break;
            }
            let (nodes, rules, b) = t.cost(k, &fields, best);
            best = b;
            cost += 16 + 12 * u64::from(nodes) + 3 * u64::from(rules);
        }
    }
    cost
}

pub(crate) fn build_trees<A: AddressKey>(
    rules: &[ClassifierRule<A>],
    cfg: &BuildConfig,
) -> Vec<Tree<A>> {
    let rules = normalise(rules);
    if rules.is_empty() {
        return Vec::new();
    }
    let n = rules.len();
    let mut candidates: Vec<Vec<Vec<u32>>> = Vec::new();
    if cfg.partition && n > 64 {
        for (frac, merge_sd) in [
            (cfg.min_subset_fraction, false),
            (cfg.min_subset_fraction, true),
            (0.25, false),
            (0.25, true),
        ] {
            candidates.push(partition::<A>(&rules, cfg, frac, merge_sd));
        }
    }
    let first = candidates.first().cloned().unwrap_or_default();
    if candidates.is_empty() || n <= cfg.single_tree_max {
        candidates.push(vec![(0..n as u32).collect()]);
    }
    candidates.sort();
    candidates.dedup();
    // The default partitioning first: it is kept if time runs out.
    if let Some(pos) = candidates.iter().position(|c| *c == first) {
        candidates.swap(0, pos);
    }
    // Leaf sizes to try: small sets are cheap to build several times, and
    // the best leaf size depends on how the rules overlap.
    let base_leaf = cfg.leaf_size.max(1);
    let mut leaf_sizes = vec![base_leaf];
    if n <= cfg.single_tree_max {
        leaf_sizes.push((base_leaf / 2).max(1));
    }
    if n <= 256 {
        leaf_sizes.push((base_leaf / 4).max(1));
    }
    leaf_sizes.dedup();
    let mut memo: std::collections::HashMap<(usize, Vec<u32>), Tree<A>> =
        std::collections::HashMap::new();
    let build_start = std::time::Instant::now();
    let mut build_set = |groups: &[Vec<u32>], leaf_size: usize| -> Vec<Tree<A>> {
        // Past the deadline a tree stops cutting (its remaining nodes become
        // leaves): the first candidate gets the whole allowance.
        let deadline = build_start
            + std::time::Duration::from_secs_f64(if memo.is_empty() {
                cfg.search_seconds * 2.5
            } else {
                cfg.search_seconds * 1.5
            });
        let mut trees: Vec<Tree<A>> = groups
            .iter()
            .map(|g| {
                memo.entry((leaf_size, g.clone()))
                    .or_insert_with(|| {
                        let sub: Vec<BRule> = g.iter().map(|&i| rules[i as usize]).collect();
                        let cfg = BuildConfig {
                            leaf_size,
                            ..cfg.clone()
                        };
                        build_tree::<A>(&sub, &cfg, deadline)
                    })
                    .clone()
            })
            .collect();
        trees.sort_by_key(|t| t.min_id);
        trees
    };
    let keys = sample_keys::<A>(&rules, 2048);
    let mut trees = if candidates.len() == 1 && leaf_sizes.len() == 1 {
        build_set(&candidates[0], base_leaf)
    } else {
        let start = std::time::Instant::now();
        let mut best: Option<(u64, Vec<Tree<A>>)> = None;
        'search: for c in &candidates {
            for &leaf in &leaf_sizes {
                // Bound the build time on hard rule sets: keep the best so far.
                if best.is_some() && start.elapsed().as_secs_f64() > cfg.search_seconds {
                    break 'search;
                }
                let trees = build_set(c, leaf);
                let cost = estimate_cost(&trees, &keys);
                if best.as_ref().is_none_or(|(b, _)| cost < *b) {
                    best = Some((cost, trees));
                }
            }
        }
        best.map(|(_, t)| t).unwrap_or_default()
    };
    set_lockstep_steps(&mut trees, &keys);
    trees
}

/// Lock-step walk length of each tree: the depth that the given share of the
/// sampled lookups reaching the tree stop at or above (the deeper rest finish
/// with a per-key loop; the shallower ones idle on their leaf).
fn set_lockstep_steps<A: AddressKey>(trees: &mut [Tree<A>], keys: &[PacketKey<A>]) {
    let mut hist: Vec<Vec<usize>> = vec![Vec::new(); trees.len()];
    for k in keys {
        let fields = key_fields(k);
        let mut best = NO_MATCH;
        for (t, h) in trees.iter().zip(hist.iter_mut()) {
            if t.min_id >= best {
                break;
            }
            let (nodes, _, b) = t.cost(k, &fields, best);
            best = b;
            let d = nodes as usize - 1;
            if h.len() <= d {
                h.resize(d + 1, 0);
            }
            h[d] += 1;
        }
    }
    const PCT: usize = 75;
    for (t, h) in trees.iter_mut().zip(&hist) {
        let total: usize = h.iter().sum();
        if total == 0 {
            continue;
        }
        let mut acc = 0;
        for (d, &c) in h.iter().enumerate() {
            acc += c;
            if acc * 100 >= total * PCT {
                t.steps = d as u32;
                break;
            }
        }
    }
}

/// Nodes with more rules than this evaluate cuts on a sample of this size.
const CUT_SAMPLE: usize = 2048;

struct Cut {
    field: usize,
    points: Vec<u128>,
    /// Rule copies over all children.
    sum: usize,
    max: usize,
}

#[inline]
fn clip(r: (u128, u128), reg: (u128, u128)) -> (u128, u128) {
    (r.0.max(reg.0), r.1.min(reg.1))
}

fn covers(r: &Region, reg: &Region) -> bool {
    r.iter()
        .zip(reg.iter())
        .all(|(a, b)| a.0 <= b.0 && b.1 <= a.1)
}

/// Best cut of `list` (indices into `rules`) on field `f`, or `None` when the
/// field cannot separate anything.
fn eval_field(
    rules: &[BRule],
    list: &[u32],
    reg: (u128, u128),
    f: usize,
    max_k: usize,
    max_rep: f64,
    scratch: &mut Vec<u128>,
) -> Option<Cut> {
    scratch.clear();
    for &i in list {
        let (lo, hi) = clip(rules[i as usize].r[f], reg);
        if lo > reg.0 {
            scratch.push(lo);
        }
        if hi < reg.1 {
            scratch.push(hi + 1);
        }
    }
    if scratch.is_empty() {
        return None;
    }
    scratch.sort_unstable();
    scratch.dedup();
    let pts = &scratch[..];
    let m = pts.len();
    // Rules overlapping each elementary segment (segment s starts at pts[s-1]).
    let mut w = vec![0i64; m + 2];
    for &i in list {
        let (lo, hi) = clip(rules[i as usize].r[f], reg);
        let a = pts.partition_point(|&p| p <= lo);
        let b = pts.partition_point(|&p| p <= hi);
        w[a] += 1;
        w[b + 1] -= 1;
    }
    let mut acc = 0i64;
    for x in w.iter_mut() {
        acc += *x;
        *x = acc;
    }
    let total: i64 = w[..=m].iter().sum();
    let n = list.len();
    let mut k = max_k.min(m + 1);
    loop {
        let mut points = Vec::with_capacity(k - 1);
        let mut acc = 0i64;
        for s in 0..m {
            acc += w[s];
            if points.len() + 1 < k && acc * (k as i64) >= (points.len() as i64 + 1) * total {
                points.push(pts[s]);
            }
        }
        if points.is_empty() {
            // All weight in one segment before the last: cut at the middle point.
            points.push(pts[m / 2]);
        }
        let kk = points.len() + 1;
        let mut cnt = vec![0i64; kk + 1];
        for &i in list {
            let (lo, hi) = clip(rules[i as usize].r[f], reg);
            let a = points.partition_point(|&p| p <= lo);
            let b = points.partition_point(|&p| p <= hi);
            cnt[a] += 1;
            cnt[b + 1] -= 1;
        }
        let mut acc = 0i64;
        let mut sum = 0usize;
        let mut max = 0usize;
        for c in cnt.iter().take(kk) {
            acc += c;
            sum += acc as usize;
            max = max.max(acc as usize);
        }
        if k <= 2 || (sum as f64) <= max_rep * n as f64 {
            return Some(Cut {
                field: f,
                points,
                sum,
                max,
            });
        }
        k = (k / 2).max(2);
    }
}

fn build_tree<A: AddressKey>(
    rules: &[BRule],
    cfg: &BuildConfig,
    deadline: std::time::Instant,
) -> Tree<A> {
    let mut tree = Tree::<A>::empty();
    let Some(first) = rules.first() else {
        return tree;
    };
    tree.min_id = first.id;
    let n = rules.len();
    let budget = cfg.budget_per_rule.saturating_mul(n).saturating_add(4096);
    let max_k = cfg.max_fanout.clamp(2, FANOUT);
    let leaf_size = cfg.leaf_size.max(1);
    let mut committed = n;
    let mut scratch = Vec::new();
    let mut sample: Vec<u32> = Vec::new();
    // Rules examined by cut evaluations so far, and the cap after which the
    // remaining nodes become leaves (bounds the build on adversarial sets;
    // ClassBench trees use well under a tenth of it).
    let mut work = 0usize;
    let max_work = cfg.work_per_rule.saturating_mul(n).saturating_add(1 << 17);
    // (node slot, rule indices sorted by id, region, depth)
    let mut stack: Vec<(usize, Vec<u32>, Region, usize)> =
        vec![(0, (0..n as u32).collect(), full_region::<A>(), 0)];
    while let Some((slot, mut list, reg, depth)) = stack.pop() {
        let before = list.len();
        if let Some(pos) = list
            .iter()
            .position(|&i| covers(&rules[i as usize].r, &reg))
        {
            list.truncate(pos + 1);
        }
        committed -= before - list.len();
        let mut cut: Option<Cut> = None;
        // Large nodes choose their cut on an evenly spread sample of their
        // rules: the choice barely changes and the build stays near-linear.
        sample.clear();
        if list.len() > CUT_SAMPLE {
            let step = list.len().div_ceil(CUT_SAMPLE);
            sample.extend(list.iter().step_by(step));
        }
        let ev: &[u32] = if sample.is_empty() { &list } else { &sample };
        work += ev.len();
        // The clock is read once per 64k rules examined.
        if work >> 16 != (work - ev.len()) >> 16 && std::time::Instant::now() > deadline {
            work = max_work.saturating_add(1);
        }
        if list.len() > leaf_size && depth < cfg.max_depth && work <= max_work {
            for (f, &freg) in reg.iter().enumerate() {
                if let Some(c) = eval_field(
                    rules,
                    ev,
                    freg,
                    f,
                    max_k,
                    cfg.max_cut_replication,
                    &mut scratch,
                ) {
                    let kk = c.points.len() + 1;
                    // No progress: every child keeps every rule.
                    if c.sum >= kk * ev.len() {
                        continue;
                    }
                    let n = ev.len() as f64;
                    let ok = |c: &Cut| c.sum as f64 <= cfg.max_cut_replication * n;
                    let better = match &cut {
                        None => true,
                        Some(b) => {
                            let (bk, ck) = (b.points.len() + 1, kk);
                            // Cuts within the replication limit first, then
                            // the smaller average child (sum / k).
                            (!ok(&c), c.sum * bk, c.max) < (!ok(b), b.sum * ck, b.max)
                        }
                    };
                    if better {
                        cut = Some(c);
                    }
                }
            }
        }
        let cut = cut.filter(|c| {
            let est = c.sum * list.len() / ev.len().max(1);
            committed - list.len() + est <= budget && tree.nodes.len() + FANOUT < MAX_NODES
        });
        let Some(cut) = cut else {
            tree.nodes[slot] = Node::leaf(slot, tree.rules.len(), list.len());
            tree.rules
                .extend(list.iter().map(|&i| leaf_rule::<A>(&rules[i as usize])));
            continue;
        };
        let f = cut.field;
        let kk = cut.points.len() + 1;
        let mut children: Vec<Vec<u32>> = vec![Vec::new(); kk];
        for &i in &list {
            let (lo, hi) = clip(rules[i as usize].r[f], reg[f]);
            let a = cut.points.partition_point(|&p| p <= lo);
            let b = cut.points.partition_point(|&p| p <= hi);
            for c in &mut children[a..=b] {
                c.push(i);
            }
        }
        committed = committed - list.len() + children.iter().map(Vec::len).sum::<usize>();
        let first_child = tree.nodes.len();
        tree.nodes.resize(first_child + kk, Node::leaf(0, 0, 0));
        tree.nodes[slot] = Node::inner(f, first_child, &cut.points);
        for (j, child) in children.into_iter().enumerate().rev() {
            let mut creg = reg;
            if j > 0 {
                creg[f].0 = cut.points[j - 1];
            }
            if j < kk - 1 {
                creg[f].1 = cut.points[j] - 1;
            }
            stack.push((first_child + j, child, creg, depth + 1));
        }
    }
    tree.nodes.shrink_to_fit();
    tree.steps = lockstep_steps(&tree);
    tree.rules.shrink_to_fit();
    tree
}

/// Lock-step walk length: the depth three quarters of the leaves are at or
/// above (the rest finish with a per-key loop).
fn lockstep_steps<A: AddressKey>(tree: &Tree<A>) -> u32 {
    let mut s = ClassifierStats::default();
    let hist = tree.add_stats(&mut s);
    let total: usize = hist.iter().sum();
    let mut acc = 0;
    for (d, &c) in hist.iter().enumerate() {
        acc += c;
        if acc * 4 >= total * 3 {
            return d as u32;
        }
    }
    s.max_depth as u32
}

fn leaf_rule<A: AddressKey>(b: &BRule) -> LeafRule<A> {
    // Ranges are clamped to the key domains so narrowing never wraps.
    let port = |(lo, hi): (u128, u128)| {
        let m = u128::from(u32::MAX);
        (lo.min(m) as u32, hi.min(m) as u32)
    };
    LeafRule {
        src: (A::from_u128(b.r[0].0), A::from_u128(b.r[0].1)),
        dst: (A::from_u128(b.r[1].0), A::from_u128(b.r[1].1)),
        sport: port(b.r[2]),
        dport: port(b.r[3]),
        id: b.id,
        proto: (b.r[4].0.min(255) as u8, b.r[4].1.min(255) as u8),
    }
}
