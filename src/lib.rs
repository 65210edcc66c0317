//! nsgd: a stateful, Azure-NSG-style layer 3/4 packet filter.
//!
//! The library is the product; the `nsgd` binary is a thin layer over it.
//! Rooms, in dependency order (each may use only the ones above it):
//!
//! - [`policy`]: the estate as written — load, validate, import from Azure.
//! - [`compile`]: the estate as a machine — tag and ASG resolution, per-NIC
//!   evaluation chains, the multi-field classifier, the naive reference
//!   evaluator and the ruleset lints.
//! - [`packet`]: zero-copy frame parsing into flow keys (no state).
//! - [`conntrack`]: one worker's connection-table shard: protocol state
//!   machines, idle timeouts, bounded memory, fragment verdicts.
//! - [`classbench`]: ClassBench rule sets and traces driven through the same
//!   classifier.
//! - [`cli`]: argument parsing and printing for the `nsgd` binary.

pub mod classbench;
pub mod cli;
pub mod compile;
pub mod conntrack;
pub mod dataplane;
pub mod io;
pub mod packet;
pub mod pipeline;
pub mod policy;
pub mod telemetry;
