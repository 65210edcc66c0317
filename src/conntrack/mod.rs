//! Connection tracking: one worker's shard of the flow table.
//!
//! Owns the live connections a worker has seen — their stored policy
//! decision, protocol state, per-direction counters and idle timers — and a
//! small table of first-fragment verdicts. Both directions of a connection
//! find the same entry: it is indexed by the canonical 5-tuple
//! ([`FlowKey::canonical`](crate::packet::FlowKey::canonical)).
//!
//! Invariants and rules of the room:
//! - Never reads the clock: every call takes `now` (nanoseconds; capture
//!   time in replay, a monotonic clock live). Time never runs backwards
//!   inside a table: an earlier `now` than one already seen is treated as
//!   the latest one seen.
//! - Bounded memory: at most `max_flows` entries, all preallocated; a full
//!   table evicts (expired, then unestablished, then established entries,
//!   oldest first) and counts every eviction. No allocation per packet.
//! - Single-threaded, no locks, no I/O, no logging.
//!
//! Files: [`state`] (pure protocol state machines), [`table`] (the flow
//! table), `index` (its open-addressing index), [`fragment`]
//! (first-fragment verdicts), [`config`] (sizes and timeouts), [`stats`]
//! (counters).

pub mod config;
pub mod fragment;
mod index;
pub mod state;
pub mod stats;
pub mod table;

#[cfg(test)]
mod tests;

pub use config::{ConntrackConfig, Timeouts};
pub use fragment::{FragmentKey, FragmentVerdict};
pub use state::{tcp_can_open, tcp_flags, EvictionClass, FlowState, Side};
pub use stats::ConntrackStats;
pub use table::{
    ConnectionTable, EndReason, EntryId, FlowEntry, PacketOutcome, StoredDecision, TableFull,
    LOOKUP_BATCH,
};
