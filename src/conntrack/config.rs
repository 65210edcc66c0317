//! Table sizes and idle timeouts (defaults from nsg-semantics.md §7). All
//! durations are nanoseconds, like the timestamps the table is given.

/// One second in the table's time unit (nanoseconds).
pub const SECOND: u64 = 1_000_000_000;

/// Idle timeouts: an entry expires once `now >= last_seen + timeout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP with a completed handshake (or a mid-stream pickup that both
    /// sides spoke on). Default 4 min.
    pub tcp_established: u64,
    /// TCP SYN-only / half-open, and mid-stream pickups whose reply side has
    /// not spoken. Default 30 s.
    pub tcp_half_open: u64,
    /// TCP after a FIN (either side) or a RST. Default 10 s.
    pub tcp_closing: u64,
    /// UDP once the reply side was seen. Default 4 min.
    pub udp: u64,
    /// UDP with no reply yet. Default 30 s.
    pub udp_unreplied: u64,
    /// ICMP/ICMPv6 echo, answered or not. Default 30 s.
    pub icmp: u64,
    /// Every other protocol (ESP, AH, ...). Default 4 min.
    pub other: u64,
    /// Entries recording a denied first packet. Default 10 s.
    pub denied: u64,
    /// First-fragment verdicts, counted from the first fragment (not
    /// refreshed by later fragments). Default 30 s.
    pub fragment: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            tcp_established: 240 * SECOND,
            tcp_half_open: 30 * SECOND,
            tcp_closing: 10 * SECOND,
            udp: 240 * SECOND,
            udp_unreplied: 30 * SECOND,
            icmp: 30 * SECOND,
            other: 240 * SECOND,
            denied: 10 * SECOND,
            fragment: 30 * SECOND,
        }
    }
}

/// Configuration of one table shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConntrackConfig {
    /// Hard cap on entries (connections and deny entries) in this shard.
    pub max_flows: usize,
    /// Hard cap on first-fragment verdicts in this shard.
    pub max_fragments: usize,
    pub timeouts: Timeouts,
}

impl Default for ConntrackConfig {
    fn default() -> Self {
        ConntrackConfig {
            max_flows: 1 << 20,
            max_fragments: 8192,
            timeouts: Timeouts::default(),
        }
    }
}
