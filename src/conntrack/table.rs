//! The connection table: a preallocated slab of [`FlowEntry`] slots, an
//! open-addressing index (`index::FlowIndex`: tag + slot number per bucket,
//! hashed by the canonical 5-tuple with `ahash`), and one intrusive
//! doubly-linked list per [`Lane`](super::state) — entries that share an idle
//! timeout and an eviction class, kept in last-seen order.
//!
//! Because a lane's entries share one timeout and are ordered by last
//! activity, its head is the next to expire and the oldest to evict:
//! expiry and eviction only ever look at the ten lane heads, so their cost
//! is proportional to the work done, never to the table size. Every packet
//! moves its entry to the tail of its (possibly new) lane: O(1), no
//! allocation. Slab and index are sized for `max_flows` up front.

use super::config::ConntrackConfig;
use super::fragment::{FragmentKey, FragmentTable, FragmentVerdict};
use super::index::FlowIndex;
use super::state::{EvictionClass, FlowState, Lane, Side, ALL_LANES, LANES};
use super::stats::ConntrackStats;
use crate::packet::FlowKey;

const NIL: u32 = u32::MAX;

/// How many keys [`ConnectionTable::lookup_batch`] works on at a time.
pub const LOOKUP_BATCH: usize = 32;
const FREE: u8 = u8::MAX;

/// The policy decision cached in an entry; filled by the dataplane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StoredDecision {
    /// The program generation that made the decision; a live entry from an
    /// older generation may be re-evaluated (`--reevaluate-on-reload`).
    pub generation: u64,
    /// The deciding NSG, rule and table/chain, as the dataplane numbers them.
    pub nsg: u32,
    pub rule: u32,
    pub table: u32,
    pub allowed: bool,
}

/// A slot number in the table. Valid until the entry ends (expires, is
/// evicted or replaced); the dataplane uses it right after `lookup` or
/// `insert`, never across calls that may end entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntryId(pub u32);

/// No slot could be freed for a new entry (capacity 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the connection table is full and nothing can be evicted")]
pub struct TableFull;

/// Why an entry left the table (for flow-log end records).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// Its idle timeout passed.
    Expired,
    /// Evicted from a full table to make room.
    Evicted(EvictionClass),
    /// A new connection was inserted on its 5-tuple while it was still live.
    Replaced,
}

/// One tracked connection (or deny entry): 128 bytes, aligned to a cache
/// line so that an entry always spans exactly two lines.
///
/// Packet counters are `u32` and wrap; take deltas with `wrapping_sub`.
#[derive(Debug, Clone)]
#[repr(align(64))]
pub struct FlowEntry {
    /// The 5-tuple in the original direction (the packet that created it).
    pub key: FlowKey,
    pub decision: StoredDecision,
    pub first_seen: u64,
    pub last_seen: u64,
    /// Bytes per direction, indexed by [`Side::index`].
    pub bytes: [u64; 2],
    /// Packets per direction, indexed by [`Side::index`] (wrapping).
    pub packets: [u32; 2],
    prev: u32,
    next: u32,
    pub state: FlowState,
    lane: u8,
}

impl FlowEntry {
    /// Both sides have spoken on an open connection.
    #[inline]
    pub fn established(&self) -> bool {
        self.state.is_established()
    }
}

/// What one packet did to its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketOutcome {
    pub previous: FlowState,
    pub state: FlowState,
}

impl PacketOutcome {
    /// This packet completed the connection (handshake, or first reply).
    pub fn established_now(&self) -> bool {
        self.state.is_established() && !self.previous.is_established()
    }

    /// This packet tore the connection down (second FIN, or RST).
    pub fn closed_now(&self) -> bool {
        self.state.is_closed() && !self.previous.is_closed()
    }
}

#[derive(Debug, Clone, Copy)]
struct LaneList {
    head: u32,
    tail: u32,
    len: u32,
}

const EMPTY_LANE: LaneList = LaneList {
    head: NIL,
    tail: NIL,
    len: 0,
};

/// One worker's connection-table shard. See the module docs.
pub struct ConnectionTable {
    config: ConntrackConfig,
    lane_timeout: [u64; LANES],
    entries: Vec<FlowEntry>,
    /// Head of the free-slot list, linked through `FlowEntry::next`.
    free_head: u32,
    index: FlowIndex,
    lanes: [LaneList; LANES],
    hasher: ahash::RandomState,
    /// The latest `now` seen: time never runs backwards inside the table.
    clock: u64,
    live: usize,
    stats: ConntrackStats,
    fragments: FragmentTable,
}

impl ConnectionTable {
    /// A table with room for `config.max_flows` entries, allocated now.
    pub fn new(config: ConntrackConfig) -> ConnectionTable {
        let t = &config.timeouts;
        let mut lane_timeout = [0; LANES];
        for lane in ALL_LANES {
            lane_timeout[lane as usize] = match lane {
                Lane::TcpOpening => t.tcp_half_open,
                Lane::TcpEstablished => t.tcp_established,
                Lane::TcpClosing => t.tcp_closing,
                Lane::UdpUnreplied => t.udp_unreplied,
                Lane::UdpReplied => t.udp,
                Lane::IcmpUnreplied | Lane::IcmpReplied => t.icmp,
                Lane::OtherUnreplied | Lane::OtherReplied => t.other,
                Lane::Denied => t.denied,
            };
        }
        let max_flows = config.max_flows.min(NIL as usize);
        ConnectionTable {
            config: ConntrackConfig {
                max_flows,
                ..config
            },
            lane_timeout,
            entries: Vec::with_capacity(max_flows),
            free_head: NIL,
            index: FlowIndex::with_capacity(max_flows),
            lanes: [EMPTY_LANE; LANES],
            hasher: ahash::RandomState::new(),
            clock: 0,
            live: 0,
            stats: ConntrackStats::default(),
            fragments: FragmentTable::new(config.max_fragments, config.timeouts.fragment),
        }
    }

    pub fn config(&self) -> &ConntrackConfig {
        &self.config
    }

    /// Resident entries (live, or timed out but not yet reaped).
    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    pub fn capacity(&self) -> usize {
        self.config.max_flows
    }

    /// Counters, fragments included.
    pub fn stats(&self) -> ConntrackStats {
        let mut s = self.stats;
        s.fragments_tracked = self.fragments.tracked;
        s.fragments_followed = self.fragments.followed;
        s.fragments_orphaned = self.fragments.orphaned;
        s.fragments_evicted = self.fragments.evicted;
        s
    }

    /// Bytes allocated by the table (slab, index, fragment table).
    pub fn allocation_size(&self) -> usize {
        self.entries.capacity() * std::mem::size_of::<FlowEntry>()
            + self.index.allocation_size()
            + self.fragments.allocation_size()
    }

    #[inline]
    fn tick(&mut self, now: u64) -> u64 {
        if now > self.clock {
            self.clock = now;
        }
        self.clock
    }

    #[inline]
    fn hash(&self, key: &FlowKey) -> u64 {
        self.hasher.hash_one(key.canonical())
    }

    #[inline]
    fn find(&self, hash: u64, key: &FlowKey) -> Option<u32> {
        let reversed = key.reversed();
        let entries = &self.entries;
        self.index.find(hash, |s| {
            let stored = &entries[s as usize].key;
            *stored == *key || *stored == reversed
        })
    }

    /// When the entry will expire if nothing more is seen on it (0 for a
    /// slot that holds no entry any more).
    #[inline]
    pub fn expires_at(&self, id: EntryId) -> u64 {
        let e = &self.entries[id.0 as usize];
        match self.lane_timeout.get(e.lane as usize) {
            Some(&timeout) => e.last_seen.saturating_add(timeout),
            None => 0,
        }
    }

    #[inline]
    fn expired(&self, slot: u32, now: u64) -> bool {
        self.expires_at(EntryId(slot)) <= now
    }

    /// Whether the entry has timed out at `now` (it may still be resident).
    pub fn is_expired(&self, id: EntryId, now: u64) -> bool {
        self.expired(id.0, now.max(self.clock))
    }

    /// The live entry for this packet's connection, and which side the
    /// packet is on. A timed-out entry is not returned (it stays resident
    /// until `expire` reports it or `insert` replaces it).
    #[inline]
    pub fn lookup(&mut self, key: &FlowKey, now: u64) -> Option<(EntryId, Side)> {
        let now = self.tick(now);
        let hash = self.hash(key);
        self.lookup_hashed(key, hash, now)
    }

    /// [`lookup`](Self::lookup) for a batch of packets, `out[i]` answering
    /// `keys[i]`. Same results and counters as one `lookup` per key, but the
    /// index buckets, entries and lane neighbours of up to [`LOOKUP_BATCH`]
    /// keys are read in independent passes first, so their cache misses
    /// overlap instead of queueing one behind the other (a software prefetch
    /// without `unsafe`).
    pub fn lookup_batch(
        &mut self,
        keys: &[FlowKey],
        now: u64,
        out: &mut [Option<(EntryId, Side)>],
    ) {
        assert_eq!(keys.len(), out.len(), "one answer per key");
        let now = self.tick(now);
        for (keys, out) in keys.chunks(LOOKUP_BATCH).zip(out.chunks_mut(LOOKUP_BATCH)) {
            let mut hashes = [0u64; LOOKUP_BATCH];
            for (hash, key) in hashes.iter_mut().zip(keys) {
                *hash = self.hash(key);
            }
            let hashes = &hashes[..keys.len()];
            // Three passes of independent reads: index buckets, candidate
            // entries, then their lane neighbours (which the `update` that
            // follows a hit relinks).
            let mut warm = 0u64;
            for &hash in hashes {
                warm ^= self.index.home_bucket(hash);
            }
            let mut slots = [NIL; LOOKUP_BATCH];
            for (slot, &hash) in slots.iter_mut().zip(hashes) {
                if let Some(found) = self.index.find(hash, |_| true) {
                    *slot = found;
                    warm ^= self.entries[found as usize].last_seen;
                }
            }
            for &slot in &slots[..keys.len()] {
                if slot != NIL {
                    let e = &self.entries[slot as usize];
                    for neighbour in [e.prev, e.next] {
                        if neighbour != NIL {
                            warm ^= self.entries[neighbour as usize].last_seen;
                        }
                    }
                }
            }
            std::hint::black_box(warm);
            for ((key, &hash), answer) in keys.iter().zip(hashes).zip(out) {
                *answer = self.lookup_hashed(key, hash, now);
            }
        }
    }

    #[inline]
    fn lookup_hashed(&mut self, key: &FlowKey, hash: u64, now: u64) -> Option<(EntryId, Side)> {
        match self.find(hash, key) {
            Some(slot) if !self.expired(slot, now) => {
                self.stats.hits += 1;
                let side = if self.entries[slot as usize].key == *key {
                    Side::Original
                } else {
                    Side::Reply
                };
                Some((EntryId(slot), side))
            }
            _ => {
                self.stats.misses += 1;
                None
            }
        }
    }

    /// Records a new connection from its first packet (`key` is that
    /// packet's direction, which becomes `Side::Original`); the packet is
    /// counted and the state machine started. Entries that end to make room
    /// are counted but not reported: use [`insert_with`](Self::insert_with)
    /// to write flow-log end records for them.
    pub fn insert(
        &mut self,
        key: &FlowKey,
        decision: StoredDecision,
        tcp_flags: u8,
        bytes: u32,
        now: u64,
    ) -> Result<EntryId, TableFull> {
        self.insert_with(key, decision, tcp_flags, bytes, now, |_, _| {})
    }

    /// [`insert`](Self::insert), reporting every entry that ends to make
    /// room: an old entry on the same 5-tuple (expired or replaced) or an
    /// evicted one.
    pub fn insert_with(
        &mut self,
        key: &FlowKey,
        decision: StoredDecision,
        tcp_flags: u8,
        bytes: u32,
        now: u64,
        mut on_ended: impl FnMut(&FlowEntry, EndReason),
    ) -> Result<EntryId, TableFull> {
        let now = self.tick(now);
        let hash = self.hash(key);
        let state = FlowState::initial(key.protocol, tcp_flags);
        let lane = Lane::of(decision.allowed, key.protocol, state);
        let fresh = FlowEntry {
            key: *key,
            decision,
            first_seen: now,
            last_seen: now,
            bytes: [bytes as u64, 0],
            packets: [1, 0],
            prev: NIL,
            next: NIL,
            state,
            lane: lane as u8,
        };

        if let Some(slot) = self.find(hash, key) {
            // Same 5-tuple (either direction): the old entry ends here and
            // the slot, already indexed under the same hash, is reused.
            let reason = if self.expired(slot, now) {
                self.stats.expirations += 1;
                EndReason::Expired
            } else {
                EndReason::Replaced
            };
            on_ended(&self.entries[slot as usize], reason);
            self.unlink(slot);
            self.entries[slot as usize] = fresh;
            self.push_tail(slot, lane);
            self.stats.inserts += 1;
            return Ok(EntryId(slot));
        }

        let slot = if self.free_head != NIL {
            let slot = self.free_head;
            self.free_head = self.entries[slot as usize].next;
            self.entries[slot as usize] = fresh;
            slot
        } else if self.entries.len() < self.config.max_flows {
            self.entries.push(fresh);
            (self.entries.len() - 1) as u32
        } else {
            let Some((victim, class)) = self.pick_victim(now) else {
                self.stats.table_full += 1;
                return Err(TableFull);
            };
            match class {
                EvictionClass::Expired => self.stats.evicted_expired += 1,
                EvictionClass::Unestablished => self.stats.evicted_unestablished += 1,
                EvictionClass::Established => self.stats.evicted_established += 1,
            }
            on_ended(&self.entries[victim as usize], EndReason::Evicted(class));
            self.remove_slot(victim);
            // `remove_slot` put it on the free list; take it back.
            self.free_head = self.entries[victim as usize].next;
            self.entries[victim as usize] = fresh;
            victim
        };
        self.live += 1;
        self.push_tail(slot, lane);
        self.index.insert(hash, slot);
        self.stats.inserts += 1;
        Ok(EntryId(slot))
    }

    /// The entry to evict from a full table: an expired one (earliest
    /// deadline), else the least recently seen unestablished one, else the
    /// least recently seen established one.
    fn pick_victim(&self, now: u64) -> Option<(u32, EvictionClass)> {
        let mut expired: Option<(u64, u32)> = None;
        let mut unestablished: Option<(u64, u32)> = None;
        let mut established: Option<(u64, u32)> = None;
        for lane in ALL_LANES {
            let head = self.lanes[lane as usize].head;
            if head == NIL {
                continue;
            }
            let deadline = self.expires_at(EntryId(head));
            let last_seen = self.entries[head as usize].last_seen;
            let better = |best: Option<(u64, u32)>, at: u64| best.is_none_or(|(b, _)| at < b);
            if deadline <= now {
                if better(expired, deadline) {
                    expired = Some((deadline, head));
                }
            } else if lane.class() == EvictionClass::Unestablished {
                if better(unestablished, last_seen) {
                    unestablished = Some((last_seen, head));
                }
            } else if better(established, last_seen) {
                established = Some((last_seen, head));
            }
        }
        expired
            .map(|(_, s)| (s, EvictionClass::Expired))
            .or(unestablished.map(|(_, s)| (s, EvictionClass::Unestablished)))
            .or(established.map(|(_, s)| (s, EvictionClass::Established)))
    }

    /// Counts one packet on a live entry and advances its state machine.
    /// `id` must come from the `lookup` or `insert` just before (panics on
    /// a slot that holds no entry).
    #[inline]
    pub fn update(
        &mut self,
        id: EntryId,
        side: Side,
        tcp_flags: u8,
        bytes: u32,
        now: u64,
    ) -> PacketOutcome {
        self.update_frames(id, side, tcp_flags, 1, bytes, now)
    }

    /// As [`update`](Self::update), for a packet that stands for `frames`
    /// wire frames (a receive-offload aggregate): the counters count frames.
    pub fn update_frames(
        &mut self,
        id: EntryId,
        side: Side,
        tcp_flags: u8,
        frames: u32,
        bytes: u32,
        now: u64,
    ) -> PacketOutcome {
        let now = self.tick(now);
        let slot = id.0;
        let e = &mut self.entries[slot as usize];
        debug_assert_ne!(e.lane, FREE, "update on a free slot");
        let d = side.index();
        e.packets[d] = e.packets[d].wrapping_add(frames);
        e.bytes[d] = e.bytes[d].wrapping_add(bytes as u64);
        e.last_seen = now;
        let previous = e.state;
        let state = previous.next(side, tcp_flags);
        e.state = state;
        let lane = Lane::of(e.decision.allowed, e.key.protocol, state);
        self.touch(slot, lane);
        PacketOutcome { previous, state }
    }

    /// Counts `frames` more wire frames from the side that opened entry
    /// `id`: its first packet was an aggregate of several.
    pub fn add_opening_frames(&mut self, id: EntryId, frames: u32) {
        let e = &mut self.entries[id.0 as usize];
        e.packets[0] = e.packets[0].wrapping_add(frames);
    }

    /// The entry in a slot returned by `lookup` or `insert`.
    #[inline]
    pub fn entry(&self, id: EntryId) -> &FlowEntry {
        &self.entries[id.0 as usize]
    }

    /// Replaces an entry's decision (re-evaluation after a policy reload).
    /// If the verdict flips (allowed ↔ denied) the entry changes lanes and
    /// its idle timer restarts at `now`: a newly denied flow then lives the
    /// deny timeout from the re-evaluation.
    pub fn set_decision(&mut self, id: EntryId, decision: StoredDecision, now: u64) {
        let now = self.tick(now);
        let e = &mut self.entries[id.0 as usize];
        let flipped = e.decision.allowed != decision.allowed;
        e.decision = decision;
        if flipped {
            e.last_seen = now;
            let lane = Lane::of(decision.allowed, e.key.protocol, e.state);
            self.touch(id.0, lane);
        }
    }

    /// Removes every entry timed out at `now`, oldest deadline first within
    /// each lane, calling `on_expired` for each. Costs O(expired entries +
    /// lanes). Returns how many were removed.
    pub fn expire(&mut self, now: u64, on_expired: impl FnMut(&FlowEntry)) -> usize {
        self.expire_at_most(now, usize::MAX, on_expired)
    }

    /// [`expire`](Self::expire) removing at most `budget` entries, for
    /// callers that bound the work per batch.
    pub fn expire_at_most(
        &mut self,
        now: u64,
        budget: usize,
        mut on_expired: impl FnMut(&FlowEntry),
    ) -> usize {
        let now = self.tick(now);
        self.fragments.expire(now);
        let mut removed = 0;
        for lane in ALL_LANES {
            while removed < budget {
                let head = self.lanes[lane as usize].head;
                if head == NIL || !self.expired(head, now) {
                    break;
                }
                on_expired(&self.entries[head as usize]);
                self.remove_slot(head);
                self.stats.expirations += 1;
                removed += 1;
            }
        }
        removed
    }

    /// The earliest time any resident entry expires, for scheduling
    /// `expire` calls.
    pub fn next_expiry(&self) -> Option<u64> {
        ALL_LANES
            .iter()
            .filter_map(|&lane| {
                let head = self.lanes[lane as usize].head;
                (head != NIL).then(|| self.expires_at(EntryId(head)))
            })
            .min()
    }

    /// Resident entries in slot order (call `expire` first to leave out the
    /// timed-out ones).
    pub fn iter(&self) -> impl Iterator<Item = (EntryId, &FlowEntry)> + '_ {
        self.entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.lane != FREE)
            .map(|(i, e)| (EntryId(i as u32), e))
    }

    /// Records the verdict of a first fragment (offset 0, more fragments
    /// follow) and the connection it belongs to, for its later fragments.
    pub fn note_first_fragment(
        &mut self,
        key: FragmentKey,
        flow: &FlowKey,
        allowed: bool,
        entry: Option<EntryId>,
        now: u64,
    ) {
        let now = self.tick(now);
        let slot = entry.map_or(NIL, |id| id.0);
        self.fragments.note(key, *flow, allowed, slot, now);
    }

    /// The verdict a non-first fragment follows, or `None` for an orphan
    /// (no first fragment seen, or its record expired). The connection is
    /// reported only if it is still live and still the same 5-tuple.
    pub fn lookup_fragment(&mut self, key: &FragmentKey, now: u64) -> Option<FragmentVerdict> {
        let now = self.tick(now);
        let record = self.fragments.find(key, now)?;
        let entry = (record.entry != NIL)
            .then(|| {
                let slot = record.entry;
                let e = &self.entries[slot as usize];
                if e.lane == FREE || self.expired(slot, now) {
                    None
                } else if e.key == record.flow {
                    Some((EntryId(slot), Side::Original))
                } else if e.key == record.flow.reversed() {
                    Some((EntryId(slot), Side::Reply))
                } else {
                    None
                }
            })
            .flatten();
        Some(FragmentVerdict {
            allowed: record.allowed,
            entry,
        })
    }

    /// Live first-fragment records.
    pub fn fragment_count(&self) -> usize {
        self.fragments.len()
    }

    // ---- intrusive lists -------------------------------------------------

    /// Moves an entry to the tail of `lane` (its new or current lane).
    #[inline]
    fn touch(&mut self, slot: u32, lane: Lane) {
        let e = &self.entries[slot as usize];
        if e.lane == lane as u8 && e.next == NIL {
            return; // already the newest in its lane
        }
        self.unlink(slot);
        self.push_tail(slot, lane);
    }

    fn unlink(&mut self, slot: u32) {
        let (prev, next, lane) = {
            let e = &self.entries[slot as usize];
            (e.prev, e.next, e.lane as usize)
        };
        if prev == NIL {
            self.lanes[lane].head = next;
        } else {
            self.entries[prev as usize].next = next;
        }
        if next == NIL {
            self.lanes[lane].tail = prev;
        } else {
            self.entries[next as usize].prev = prev;
        }
        self.lanes[lane].len -= 1;
    }

    fn push_tail(&mut self, slot: u32, lane: Lane) {
        let list = &mut self.lanes[lane as usize];
        let old_tail = list.tail;
        list.tail = slot;
        if old_tail == NIL {
            list.head = slot;
        }
        list.len += 1;
        if old_tail != NIL {
            self.entries[old_tail as usize].next = slot;
        }
        let e = &mut self.entries[slot as usize];
        e.prev = old_tail;
        e.next = NIL;
        e.lane = lane as u8;
    }

    /// Takes a resident entry out of its lane and the index and frees its
    /// slot.
    fn remove_slot(&mut self, slot: u32) {
        self.unlink(slot);
        let hash = self.hash(&self.entries[slot as usize].key);
        let removed = self.index.remove(hash, slot);
        debug_assert!(removed, "resident entry missing from the index");
        let e = &mut self.entries[slot as usize];
        e.lane = FREE;
        e.prev = NIL;
        e.next = self.free_head;
        self.free_head = slot;
        self.live -= 1;
    }

    /// Entries per lane (tests and diagnostics).
    #[cfg(test)]
    pub(crate) fn lane_lengths(&self) -> [u32; LANES] {
        self.lanes.map(|l| l.len)
    }
}
