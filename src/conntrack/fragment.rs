//! First-fragment verdicts: later fragments of an IP datagram carry no L4
//! header, so they follow the verdict recorded for their first fragment,
//! found by the reassembly key (source, destination, protocol, IP id).
//!
//! A small fixed-capacity table: records live a fixed time from their first
//! fragment (not refreshed), so insertion order is expiry order and a FIFO
//! queue finds the expired ones; a full table drops its oldest record. A
//! non-first fragment without a live record is an orphan (the dataplane
//! drops and counts it). Never allocates after construction.

use std::collections::VecDeque;

use super::index::FlowIndex;

use crate::packet::FlowKey;

/// The reassembly identity of a fragmented datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct FragmentKey {
    pub source: u128,
    pub destination: u128,
    /// IPv4 identification (16 bits) or IPv6 fragment-header identification.
    pub identification: u32,
    pub protocol: u8,
    pub ipv6: bool,
}

impl FragmentKey {
    /// The reassembly key of a fragment of the flow `flow` with IP id `id`.
    pub fn of(flow: &FlowKey, identification: u32) -> FragmentKey {
        FragmentKey {
            source: flow.source,
            destination: flow.destination,
            identification,
            protocol: flow.protocol,
            ipv6: flow.ipv6,
        }
    }
}

/// What a non-first fragment should follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragmentVerdict {
    /// The first fragment's verdict.
    pub allowed: bool,
    /// The connection the first fragment belonged to, if it is still live
    /// (for counters), with the side the fragment travels in.
    pub entry: Option<(super::EntryId, super::Side)>,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct FragmentRecord {
    pub(crate) key: FragmentKey,
    /// The first fragment's 5-tuple, to check that `entry` still holds the
    /// same connection when a later fragment arrives.
    pub(crate) flow: FlowKey,
    pub(crate) created: u64,
    pub(crate) entry: u32,
    pub(crate) allowed: bool,
}

/// Fixed-capacity first-fragment verdict table (see the module docs).
pub(crate) struct FragmentTable {
    capacity: usize,
    lifetime: u64,
    records: Vec<FragmentRecord>,
    free: Vec<u32>,
    /// Slots in creation order (= expiry order).
    order: VecDeque<u32>,
    index: FlowIndex,
    hasher: ahash::RandomState,
    clock: u64,
    pub(crate) tracked: u64,
    pub(crate) followed: u64,
    pub(crate) orphaned: u64,
    pub(crate) evicted: u64,
}

impl FragmentTable {
    pub fn new(capacity: usize, lifetime: u64) -> FragmentTable {
        FragmentTable {
            capacity,
            lifetime,
            records: Vec::with_capacity(capacity),
            free: Vec::with_capacity(capacity),
            order: VecDeque::with_capacity(capacity),
            index: FlowIndex::with_capacity(capacity),
            hasher: ahash::RandomState::new(),
            clock: 0,
            tracked: 0,
            followed: 0,
            orphaned: 0,
            evicted: 0,
        }
    }

    /// Live records.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Drops records whose lifetime has passed at `now`.
    pub fn expire(&mut self, now: u64) {
        self.clock = self.clock.max(now);
        while let Some(&slot) = self.order.front() {
            if self.records[slot as usize]
                .created
                .saturating_add(self.lifetime)
                > self.clock
            {
                break;
            }
            self.remove_front();
        }
    }

    fn remove_front(&mut self) {
        let slot = self.order.pop_front().expect("non-empty");
        let key = self.records[slot as usize].key;
        let hash = self.hasher.hash_one(key);
        self.index.remove(hash, slot);
        self.free.push(slot);
    }

    /// Records the verdict of a first fragment (offset 0, more-fragments
    /// set). `entry` is the connection-table slot it belongs to, if any.
    /// A repeated first fragment overwrites the verdict but keeps the
    /// original lifetime. Returns false only with capacity 0.
    pub(crate) fn note(
        &mut self,
        key: FragmentKey,
        flow: FlowKey,
        allowed: bool,
        entry: u32,
        now: u64,
    ) -> bool {
        self.expire(now);
        let hash = self.hasher.hash_one(key);
        let records = &mut self.records;
        if let Some(slot) = self.index.find(hash, |s| records[s as usize].key == key) {
            let record = &mut records[slot as usize];
            record.flow = flow;
            record.allowed = allowed;
            record.entry = entry;
            return true;
        }
        if self.capacity == 0 {
            return false;
        }
        if self.order.len() >= self.capacity {
            self.remove_front();
            self.evicted += 1;
        }
        let record = FragmentRecord {
            key,
            flow,
            created: self.clock,
            entry,
            allowed,
        };
        let slot = match self.free.pop() {
            Some(slot) => {
                self.records[slot as usize] = record;
                slot
            }
            None => {
                self.records.push(record);
                (self.records.len() - 1) as u32
            }
        };
        self.order.push_back(slot);
        self.index.insert(hash, slot);
        self.tracked += 1;
        true
    }

    /// The record for a non-first fragment, or `None` for an orphan.
    pub(crate) fn find(&mut self, key: &FragmentKey, now: u64) -> Option<FragmentRecord> {
        self.expire(now);
        let hash = self.hasher.hash_one(key);
        let records = &self.records;
        match self.index.find(hash, |s| records[s as usize].key == *key) {
            Some(slot) => {
                self.followed += 1;
                Some(self.records[slot as usize])
            }
            None => {
                self.orphaned += 1;
                None
            }
        }
    }

    /// Bytes allocated (records, free list, queue and index).
    pub fn allocation_size(&self) -> usize {
        self.records.capacity() * std::mem::size_of::<FragmentRecord>()
            + self.free.capacity() * 4
            + self.order.capacity() * 4
            + self.index.allocation_size()
    }
}
