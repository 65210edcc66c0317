//! Counters and logs about what the dataplane decided: NSG flow logs (v2)
//! and Prometheus metrics.
//! Knows nothing of packets' bytes or of the policy's structure: it is handed
//! names and numbers.

pub mod flow_log;
pub mod metrics;
