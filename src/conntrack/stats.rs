//! Counters a table shard keeps; the telemetry room sums them over workers.

use std::ops::AddAssign;

/// Monotonic event counters of one shard.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConntrackStats {
    /// Entries created.
    pub inserts: u64,
    /// Lookups that found a live entry.
    pub hits: u64,
    /// Lookups that found nothing live.
    pub misses: u64,
    /// Entries ended because their idle timeout passed (reaped by `expire`
    /// or replaced by a new connection on the same 5-tuple).
    pub expirations: u64,
    /// Entries evicted from a full table that had already timed out.
    pub evicted_expired: u64,
    /// Live unestablished entries evicted from a full table.
    pub evicted_unestablished: u64,
    /// Live established entries evicted from a full table.
    pub evicted_established: u64,
    /// Inserts refused because nothing could be evicted.
    pub table_full: u64,
    /// First fragments whose verdict was recorded.
    pub fragments_tracked: u64,
    /// Non-first fragments that found their first fragment's verdict.
    pub fragments_followed: u64,
    /// Non-first fragments with no (live) first-fragment verdict.
    pub fragments_orphaned: u64,
    /// First-fragment verdicts evicted from a full fragment table.
    pub fragments_evicted: u64,
}

impl ConntrackStats {
    pub fn evictions(&self) -> u64 {
        self.evicted_expired + self.evicted_unestablished + self.evicted_established
    }
}

impl AddAssign for ConntrackStats {
    fn add_assign(&mut self, o: Self) {
        self.inserts += o.inserts;
        self.hits += o.hits;
        self.misses += o.misses;
        self.expirations += o.expirations;
        self.evicted_expired += o.evicted_expired;
        self.evicted_unestablished += o.evicted_unestablished;
        self.evicted_established += o.evicted_established;
        self.table_full += o.table_full;
        self.fragments_tracked += o.fragments_tracked;
        self.fragments_followed += o.fragments_followed;
        self.fragments_orphaned += o.fragments_orphaned;
        self.fragments_evicted += o.fragments_evicted;
    }
}
