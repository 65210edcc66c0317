//! The verdict for one packet: a connection-table hit decides; a miss runs the
//! compiled chains (outbound chain of the source NIC, inbound chain of the
//! destination NIC) and records the decision. The one room that knows both
//! policy and packets. No threads, no clock (time is the caller's), no I/O,
//! no allocation per packet.
//!
//! State is split into [`SHARDS`] fixed shards keyed by a symmetric hash of
//! the address pair and protocol, so every packet of a connection — its
//! fragments and the ICMP errors quoting it included — meets the same shard,
//! and a replay gives the same result whatever the number of workers (a
//! worker owns a subset of shards; each shard sees the same packets in the
//! same order).

use std::sync::Arc;

use crate::compile::{Flow, Program};
use crate::conntrack::{ConnectionTable, ConntrackConfig, FragmentKey, StoredDecision};
use crate::packet::{DropReason, FlowKey, IcmpInfo, PacketMeta, Parsed};
use crate::policy::{Access, Direction};
use crate::telemetry::flow_log::{nic_mac, FlowEvent, FlowState, CONTINUATION_INTERVAL_NS};

/// Fixed number of connection-table shards (independent of worker count).
pub const SHARDS: usize = 64;

/// How the dataplane treats what the policy does not say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataplaneConfig {
    /// Drop a TCP packet without SYN that matches no connection, instead of
    /// judging it as a new flow (Azure picks such flows up mid-stream).
    pub strict_tcp: bool,
    /// Re-check live flows against a newly loaded program (Azure's
    /// `flushConnection`); by default allowed flows keep their decision.
    pub reevaluate_on_reload: bool,
    /// Let non-IP frames (ARP, LLDP, …) pass, as the platform's own traffic.
    pub pass_non_ip: bool,
    /// Let ICMPv6 neighbour discovery pass without a rule, as the platform's
    /// own traffic (a bridge's two ends resolve each other across it). Off
    /// in replay, where such packets are judged like any other.
    pub pass_neighbour_discovery: bool,
    /// Connection-table capacity across all shards.
    pub max_flows: usize,
    pub conntrack: ConntrackConfig,
    /// Collect NSG flow log events.
    pub flow_log: bool,
}

impl Default for DataplaneConfig {
    fn default() -> Self {
        DataplaneConfig {
            strict_tcp: false,
            reevaluate_on_reload: false,
            pass_non_ip: true,
            pass_neighbour_discovery: false,
            max_flows: 1 << 20,
            conntrack: ConntrackConfig::default(),
            flow_log: false,
        }
    }
}

/// Why a packet passed or was dropped. `as_str` names are the `reason`
/// values of `replay --verdicts`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Part of a connection already allowed (either direction).
    Established,
    /// First packet of a flow the policy allows.
    NewFlow,
    /// An ICMP error quoting an allowed connection.
    Related,
    /// A non-first fragment following its allowed first fragment.
    Fragment,
    /// Non-IP frame (ARP, …) passed or dropped per configuration.
    NonIp,
    /// Denied by an NSG rule (new, or a cached denied flow).
    Rule,
    /// The frame could not be judged.
    Invalid(DropReason),
    /// A non-first fragment with no first fragment seen (or expired).
    OrphanFragment,
    /// A new flow found the connection table full with nothing evictable.
    FlowTableFull,
    /// `--strict-tcp`: a TCP packet without SYN that opens nothing.
    StrictTcp,
    /// An ICMP error quoting no allowed connection.
    UnrelatedIcmpError,
    /// ICMPv6 neighbour discovery passed as infrastructure traffic.
    NeighbourDiscovery,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Established => "established",
            Reason::NewFlow => "new-flow",
            Reason::Related => "related",
            Reason::Fragment => "fragment",
            Reason::NonIp => "non-ip",
            Reason::Rule => "rule",
            Reason::Invalid(reason) => reason.as_str(),
            Reason::OrphanFragment => "orphan-fragment",
            Reason::FlowTableFull => "flow-table-full",
            Reason::StrictTcp => "strict-tcp",
            Reason::UnrelatedIcmpError => "unrelated-icmp-error",
            Reason::NeighbourDiscovery => "neighbour-discovery",
        }
    }

    /// Dense index for counters: the fixed reasons, then one per drop reason.
    pub fn index(self) -> usize {
        match self {
            Reason::Established => 0,
            Reason::NewFlow => 1,
            Reason::Related => 2,
            Reason::Fragment => 3,
            Reason::NonIp => 4,
            Reason::Rule => 5,
            Reason::OrphanFragment => 6,
            Reason::FlowTableFull => 7,
            Reason::StrictTcp => 8,
            Reason::UnrelatedIcmpError => 9,
            Reason::NeighbourDiscovery => 10,
            Reason::Invalid(reason) => FIXED_REASONS + reason.index(),
        }
    }

    /// Whether packets of this reason pass (`pass_non_ip` decides for
    /// non-IP frames).
    pub fn passes(self, pass_non_ip: bool) -> bool {
        match self {
            Reason::Established
            | Reason::NewFlow
            | Reason::Related
            | Reason::Fragment
            | Reason::NeighbourDiscovery => true,
            Reason::NonIp => pass_non_ip,
            _ => false,
        }
    }

    /// Every reason, in [`index`](Self::index) order.
    pub fn all() -> impl Iterator<Item = Reason> {
        [
            Reason::Established,
            Reason::NewFlow,
            Reason::Related,
            Reason::Fragment,
            Reason::NonIp,
            Reason::Rule,
            Reason::OrphanFragment,
            Reason::FlowTableFull,
            Reason::StrictTcp,
            Reason::UnrelatedIcmpError,
            Reason::NeighbourDiscovery,
        ]
        .into_iter()
        .chain(DropReason::ALL.into_iter().map(Reason::Invalid))
    }
}

const FIXED_REASONS: usize = 11;

/// Number of distinct [`Reason::index`] values.
pub const REASON_COUNT: usize = FIXED_REASONS + DropReason::ALL.len();

/// The deciding rule of a packet's flow, as (table, rule) of the program.
pub type RuleRef = (u32, u32);

/// The decision on one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketVerdict {
    pub allowed: bool,
    pub reason: Reason,
    /// The rule that decided the packet's flow, where one did.
    pub rule: Option<RuleRef>,
}

impl PacketVerdict {
    fn pass(reason: Reason, rule: Option<RuleRef>) -> Self {
        PacketVerdict {
            allowed: true,
            reason,
            rule,
        }
    }
    fn drop(reason: Reason, rule: Option<RuleRef>) -> Self {
        PacketVerdict {
            allowed: false,
            reason,
            rule,
        }
    }
}

/// Counters of one worker; summed across workers by the pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counters {
    pub packets: [u64; REASON_COUNT],
    pub bytes: [u64; REASON_COUNT],
    /// Flows (first packets) each rule slot decided, see `Program::rule_slot`.
    pub rule_hits: Vec<u64>,
    pub flows_created: u64,
    pub reevaluated: u64,
}

impl Counters {
    pub fn new(rule_slots: usize) -> Self {
        Counters {
            packets: [0; REASON_COUNT],
            bytes: [0; REASON_COUNT],
            rule_hits: vec![0; rule_slots],
            flows_created: 0,
            reevaluated: 0,
        }
    }

    pub fn add(&mut self, other: &Counters) {
        for i in 0..REASON_COUNT {
            self.packets[i] += other.packets[i];
            self.bytes[i] += other.bytes[i];
        }
        if self.rule_hits.len() < other.rule_hits.len() {
            self.rule_hits.resize(other.rule_hits.len(), 0);
        }
        for (mine, theirs) in self.rule_hits.iter_mut().zip(&other.rule_hits) {
            *mine += theirs;
        }
        self.flows_created += other.flows_created;
        self.reevaluated += other.reevaluated;
    }
}

/// The shard a parsed packet belongs to: a symmetric hash of the address
/// pair and protocol (ports left out so that later fragments, which carry
/// none, meet their first fragment). ICMP errors go where the flow they
/// quote lives. Deterministic across runs and machines.
pub fn shard_of(parsed: &Parsed) -> usize {
    let Parsed::Ip(meta) = parsed else {
        return 0;
    };
    let key = match meta.icmp {
        IcmpInfo::Error { quoted } => quoted,
        _ => meta.key,
    };
    shard_of_pair(key.source, key.destination, key.protocol)
}

/// The shard of an address pair and protocol, in either order.
#[inline]
pub fn shard_of_pair(a: u128, b: u128, protocol: u8) -> usize {
    let (low, high) = if a <= b { (a, b) } else { (b, a) };
    let mut hash = 0xcbf2_9ce4_8422_2325u64 ^ u64::from(protocol);
    for word in [
        low as u64,
        (low >> 64) as u64,
        high as u64,
        (high >> 64) as u64,
    ] {
        hash = (hash ^ word).wrapping_mul(0x0000_0100_0000_01B3);
        hash ^= hash >> 29;
    }
    (hash % SHARDS as u64) as usize
}

/// The shard of a raw frame when it can be told without a full parse
/// (Ethernet, untagged, plain IPv4 other than ICMP, or IPv6 carrying TCP or
/// UDP directly); `None` means: parse it. For frames that parse to an IP
/// packet the answer equals [`shard_of`] of the parse; frames that do not
/// (drops) carry no state, so their shard does not matter.
#[inline]
pub fn shard_hint(link: crate::packet::LinkType, frame: &[u8]) -> Option<usize> {
    if link != crate::packet::LinkType::Ethernet || frame.len() < 14 {
        return None;
    }
    let ip = &frame[14..];
    match u16::from_be_bytes([frame[12], frame[13]]) {
        0x0800 if ip.len() >= 20 && ip[0] >> 4 == 4 => {
            let protocol = ip[9];
            if protocol == 1 {
                return None;
            }
            let source = u32::from_be_bytes([ip[12], ip[13], ip[14], ip[15]]);
            let destination = u32::from_be_bytes([ip[16], ip[17], ip[18], ip[19]]);
            Some(shard_of_pair(
                u128::from(source),
                u128::from(destination),
                protocol,
            ))
        }
        0x86dd if ip.len() >= 40 && ip[0] >> 4 == 6 && matches!(ip[6], 6 | 17) => {
            let address = |at: usize| {
                let mut bytes = [0u8; 16];
                bytes.copy_from_slice(&ip[at..at + 16]);
                u128::from_be_bytes(bytes)
            };
            Some(shard_of_pair(address(8), address(24), ip[6]))
        }
        _ => None,
    }
}

/// One shard's state.
pub struct Shard {
    table: ConnectionTable,
    /// Capture time of the shard's next expiry sweep. Sweeping on the
    /// shard's own packet times keeps results independent of workers.
    next_sweep: u64,
}

/// Capture time between expiry sweeps of a shard. Lookups already treat a
/// timed-out entry as gone; sweeps free slots and write flow-log end tuples.
const SWEEP_INTERVAL_NS: u64 = 100_000_000;

/// Most entries one sweep removes (the rest wait for the next sweep).
const SWEEP_BUDGET: usize = 256;

/// The per-worker dataplane: the shards it owns and the program in force.
pub struct Dataplane {
    program: Arc<Program>,
    generation: u64,
    config: DataplaneConfig,
    /// Each shard's share of the configured capacity.
    shard_config: ConntrackConfig,
    shards: Vec<Option<Shard>>,
    pub counters: Counters,
    /// Flow-log events (when enabled), drained by the caller.
    pub flow_events: Vec<FlowEvent>,
    /// Per flow that has had a `C` tuple: its counters at that tuple, so the
    /// next tuple reports only what came since (flow log v2 semantics).
    log_marks: ahash::AHashMap<FlowKey, [u64; 4]>,
}

fn to_flow(key: &FlowKey) -> Option<Flow> {
    Flow::new(
        key.protocol,
        key.source_ip(),
        key.source_port,
        key.destination_ip(),
        key.destination_port,
    )
    .ok()
}

impl Dataplane {
    /// A dataplane owning the shards for which `owns(shard)` holds.
    pub fn new(
        program: Arc<Program>,
        generation: u64,
        config: DataplaneConfig,
        owns: impl Fn(usize) -> bool,
    ) -> Self {
        let per_shard = ConntrackConfig {
            max_flows: config.max_flows.div_ceil(SHARDS),
            max_fragments: config.conntrack.max_fragments.div_ceil(SHARDS).max(16),
            ..config.conntrack
        };
        let shards = (0..SHARDS)
            .map(|s| {
                owns(s).then(|| Shard {
                    table: ConnectionTable::new(per_shard),
                    next_sweep: 0,
                })
            })
            .collect();
        let counters = Counters::new(program.total_rule_slots());
        Dataplane {
            program,
            generation,
            config,
            shard_config: per_shard,
            shards,
            counters,
            flow_events: Vec::new(),
            log_marks: ahash::AHashMap::new(),
        }
    }

    pub fn program(&self) -> &Arc<Program> {
        &self.program
    }

    /// Swaps in a new program. Live flows keep their decision unless the
    /// configuration asks to re-evaluate them (done lazily, on their next
    /// packet, by comparing generations).
    pub fn reload(&mut self, program: Arc<Program>, generation: u64) {
        self.counters.rule_hits.resize(
            program
                .total_rule_slots()
                .max(self.counters.rule_hits.len()),
            0,
        );
        self.program = program;
        self.generation = generation;
    }

    /// Decides one packet of shard `shard` (see [`shard_of`]) at time `now`
    /// (nanoseconds); `wire_bytes` is what the counters add.
    pub fn decide(
        &mut self,
        shard: usize,
        parsed: &Parsed,
        wire_bytes: u32,
        now: u64,
    ) -> PacketVerdict {
        self.decide_frames(shard, parsed, 1, wire_bytes, now)
    }

    /// As [`decide`](Self::decide), for a packet that stands for `frames`
    /// wire frames of `wire_bytes` in all: a receive-offload (GRO/LRO)
    /// aggregate, judged once and counted as the frames it merged.
    pub fn decide_frames(
        &mut self,
        shard: usize,
        parsed: &Parsed,
        frames: u32,
        wire_bytes: u32,
        now: u64,
    ) -> PacketVerdict {
        let verdict = match parsed {
            Parsed::Drop(reason) => PacketVerdict::drop(Reason::Invalid(*reason), None),
            Parsed::NonIp { .. } => PacketVerdict {
                allowed: self.config.pass_non_ip,
                reason: Reason::NonIp,
                rule: None,
            },
            Parsed::Ip(meta)
                if self.config.pass_neighbour_discovery && meta.is_neighbour_discovery() =>
            {
                PacketVerdict::pass(Reason::NeighbourDiscovery, None)
            }
            Parsed::Ip(meta) => self.decide_ip(shard, meta, frames, wire_bytes, now),
        };
        let index = verdict.reason.index();
        self.counters.packets[index] += u64::from(frames);
        self.counters.bytes[index] += u64::from(wire_bytes);
        verdict
    }

    fn shard(&mut self, shard: usize) -> &mut Shard {
        shard_slot(&mut self.shards, self.shard_config, shard)
    }

    fn decide_ip(
        &mut self,
        shard: usize,
        meta: &PacketMeta,
        frames: u32,
        wire_bytes: u32,
        now: u64,
    ) -> PacketVerdict {
        let flow_log = self.config.flow_log;
        self.sweep_if_due(shard, now);

        if let Some(fragment) = meta.fragment {
            if !fragment.is_first() {
                let key = FragmentKey::of(&meta.key, fragment.id);
                let table = &mut self.shard(shard).table;
                return match table.lookup_fragment(&key, now) {
                    Some(follow) => {
                        // Count the fragment on its connection, if still live.
                        let rule = follow.entry.map(|(id, side)| {
                            table.update_frames(id, side, 0, frames, wire_bytes, now);
                            let decision = table.entry(id).decision;
                            (decision.table, decision.rule)
                        });
                        let rule = rule.filter(|&(table, _)| table != u32::MAX);
                        if follow.allowed {
                            PacketVerdict::pass(Reason::Fragment, rule)
                        } else {
                            PacketVerdict::drop(Reason::Rule, rule)
                        }
                    }
                    None => PacketVerdict::drop(Reason::OrphanFragment, None),
                };
            }
        }

        if let IcmpInfo::Error { quoted } = meta.icmp {
            let table = &mut self.shard(shard).table;
            return match table.lookup(&quoted, now) {
                Some((id, _)) if table.entry(id).decision.allowed => {
                    PacketVerdict::pass(Reason::Related, None)
                }
                _ => PacketVerdict::drop(Reason::UnrelatedIcmpError, None),
            };
        }

        let generation = self.generation;
        let reevaluate = self.config.reevaluate_on_reload;
        let hit = self.shard(shard).table.lookup(&meta.key, now);
        let mut entry_id = None;
        let verdict = if let Some((id, side)) = hit {
            entry_id = Some(id);
            let stale = {
                let entry = self.shard(shard).table.entry(id);
                reevaluate && entry.decision.generation != generation
            };
            if stale {
                let original = self.shard(shard).table.entry(id).key;
                let decision = self.classify(&original);
                self.counters.reevaluated += 1;
                self.shard(shard).table.set_decision(id, decision, now);
            }
            let table = &mut shard_slot(&mut self.shards, self.shard_config, shard).table;
            let (first_seen, previous_seen) = {
                let entry = table.entry(id);
                (entry.first_seen, entry.last_seen)
            };
            table.update_frames(id, side, meta.tcp_flags, frames, wire_bytes, now);
            // A long-lived flow gets a `C` tuple each time it enters a new
            // five-minute window of its life.
            if flow_log {
                let window = |t: u64| t.saturating_sub(first_seen) / CONTINUATION_INTERVAL_NS;
                if window(now) > window(previous_seen) {
                    let event = entry_event(table.entry(id), &mut self.log_marks, Mark::Update);
                    push_flow_event(
                        &self.program,
                        &mut self.flow_events,
                        event,
                        FlowState::Continuing,
                        now,
                    );
                }
            }
            let table = &mut shard_slot(&mut self.shards, self.shard_config, shard).table;
            let decision = table.entry(id).decision;
            let rule = Some((decision.table, decision.rule)).filter(|_| decision.table != u32::MAX);
            if decision.allowed {
                PacketVerdict::pass(Reason::Established, rule)
            } else {
                PacketVerdict::drop(Reason::Rule, rule)
            }
        } else if meta.key.protocol == 6
            && self.config.strict_tcp
            && !crate::conntrack::tcp_can_open(meta.tcp_flags)
        {
            PacketVerdict::drop(Reason::StrictTcp, None)
        } else {
            let decision = self.classify(&meta.key);
            let rule = Some((decision.table, decision.rule)).filter(|_| decision.table != u32::MAX);
            let inserted = {
                let program: &Program = &self.program;
                let events = &mut self.flow_events;
                let marks = &mut self.log_marks;
                shard_slot(&mut self.shards, self.shard_config, shard)
                    .table
                    .insert_with(
                        &meta.key,
                        decision,
                        meta.tcp_flags,
                        wire_bytes,
                        now,
                        |entry, _| {
                            if flow_log {
                                push_flow_end(program, events, marks, entry, now);
                            }
                        },
                    )
            };
            match inserted {
                Ok(id) => {
                    entry_id = Some(id);
                    if frames > 1 {
                        self.shard(shard).table.add_opening_frames(id, frames - 1);
                    }
                    self.counters.flows_created += 1;
                    if let Some((table, rule)) = rule {
                        let slot = self.program.rule_slot(table, rule);
                        if let Some(hits) = self.counters.rule_hits.get_mut(slot) {
                            *hits += 1;
                        }
                    }
                    if flow_log {
                        let event = EntrySnapshot {
                            key: meta.key,
                            decision,
                            packets: [0, 0],
                            bytes: [0, 0],
                        };
                        push_flow_event(
                            &self.program,
                            &mut self.flow_events,
                            event,
                            FlowState::Begin,
                            now,
                        );
                    }
                    if decision.allowed {
                        PacketVerdict::pass(Reason::NewFlow, rule)
                    } else {
                        PacketVerdict::drop(Reason::Rule, rule)
                    }
                }
                // Fail closed: no room to track it, so nothing passes.
                Err(_) => PacketVerdict::drop(Reason::FlowTableFull, rule),
            }
        };

        if let Some(fragment) = meta.fragment {
            if fragment.is_first() {
                let key = FragmentKey::of(&meta.key, fragment.id);
                self.shard(shard).table.note_first_fragment(
                    key,
                    &meta.key,
                    verdict.allowed,
                    entry_id,
                    now,
                );
            }
        }
        verdict
    }

    /// Runs the compiled chains for a flow's first packet.
    fn classify(&self, key: &FlowKey) -> StoredDecision {
        let Some(flow) = to_flow(key) else {
            return StoredDecision {
                generation: self.generation,
                nsg: u32::MAX,
                rule: u32::MAX,
                table: u32::MAX,
                allowed: false,
            };
        };
        let verdict = self.program.evaluate(&flow);
        let (nsg, table, rule) = verdict
            .deciding()
            .map_or((u32::MAX, u32::MAX, u32::MAX), |e| (e.nsg, e.table, e.rule));
        StoredDecision {
            generation: self.generation,
            nsg,
            rule,
            table,
            allowed: verdict.decision == Access::Allow,
        }
    }

    /// Sweeps expired entries out of every owned shard whose sweep is due at
    /// `now`. Packets sweep their own shard as they come; a live bridge
    /// calls this when idle, so quiet shards still end their flows (flow-log
    /// `E` tuples, the live-flow count). Replay never calls it: its results
    /// must not depend on when a worker was idle.
    pub fn sweep_idle(&mut self, now: u64) {
        for shard in 0..SHARDS {
            if self.shards[shard].is_some() {
                self.sweep_if_due(shard, now);
            }
        }
    }

    /// Sweeps expired entries of `shard` every SWEEP_INTERVAL_NS of the
    /// shard's time.
    fn sweep_if_due(&mut self, shard: usize, now: u64) {
        let flow_log = self.config.flow_log;
        let slot = shard_slot(&mut self.shards, self.shard_config, shard);
        if now < slot.next_sweep {
            return;
        }
        slot.next_sweep = now.saturating_add(SWEEP_INTERVAL_NS);
        // Borrow fields apart (no Arc clone per packet: its atomic count
        // would bounce between workers' caches).
        let program: &Program = &self.program;
        let events = &mut self.flow_events;
        let marks = &mut self.log_marks;
        let table = &mut shard_slot(&mut self.shards, self.shard_config, shard).table;
        table.expire_at_most(now, SWEEP_BUDGET, |entry| {
            if flow_log {
                push_flow_end(program, events, marks, entry, entry_deadline(entry));
            }
        });
    }

    /// Ends the replay: every live flow gets a final flow-log tuple (`C`,
    /// since it has not ended), stamped with its last packet's time so the
    /// log does not depend on which worker saw the capture's last packet.
    pub fn finish(&mut self) {
        if !self.config.flow_log {
            return;
        }
        let program: &Program = &self.program;
        let marks = &mut self.log_marks;
        for shard in self.shards.iter().flatten() {
            for (_, entry) in shard.table.iter() {
                push_flow_event(
                    program,
                    &mut self.flow_events,
                    entry_event(entry, marks, Mark::Update),
                    FlowState::Continuing,
                    entry.last_seen,
                );
            }
        }
    }

    /// Connection-table statistics summed over this worker's shards.
    pub fn conntrack_stats(&self) -> crate::conntrack::ConntrackStats {
        let mut total = crate::conntrack::ConntrackStats::default();
        for shard in self.shards.iter().flatten() {
            let s = shard.table.stats();
            total.inserts += s.inserts;
            total.hits += s.hits;
            total.misses += s.misses;
            total.expirations += s.expirations;
            total.evicted_expired += s.evicted_expired;
            total.evicted_unestablished += s.evicted_unestablished;
            total.evicted_established += s.evicted_established;
            total.table_full += s.table_full;
            total.fragments_tracked += s.fragments_tracked;
            total.fragments_followed += s.fragments_followed;
            total.fragments_orphaned += s.fragments_orphaned;
            total.fragments_evicted += s.fragments_evicted;
        }
        total
    }

    /// Live entries across this worker's shards.
    pub fn live_flows(&self) -> usize {
        self.shards.iter().flatten().map(|s| s.table.len()).sum()
    }
}

/// A shard's state, created on first use if this worker was not given it
/// (which the pipeline never does, but a caller of `decide` might).
fn shard_slot(shards: &mut [Option<Shard>], config: ConntrackConfig, shard: usize) -> &mut Shard {
    shards[shard % SHARDS].get_or_insert_with(|| Shard {
        table: ConnectionTable::new(config),
        next_sweep: 0,
    })
}

/// The parts of an entry a flow-log event needs.
#[derive(Debug, Clone, Copy)]
struct EntrySnapshot {
    key: FlowKey,
    decision: StoredDecision,
    packets: [u64; 2],
    bytes: [u64; 2],
}

/// What to do with a flow's last-tuple mark when taking a snapshot.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mark {
    /// A `C` tuple: remember the counters for the next tuple.
    Update,
    /// An `E` tuple: the flow is gone.
    Remove,
}

/// The entry's counters since its previous tuple (its `C` mark, if any).
fn entry_event(
    entry: &crate::conntrack::FlowEntry,
    marks: &mut ahash::AHashMap<FlowKey, [u64; 4]>,
    mark: Mark,
) -> EntrySnapshot {
    let now = [
        u64::from(entry.packets[0]),
        entry.bytes[0],
        u64::from(entry.packets[1]),
        entry.bytes[1],
    ];
    let before = match mark {
        Mark::Update => marks.insert(entry.key, now),
        Mark::Remove => marks.remove(&entry.key),
    }
    .unwrap_or([0; 4]);
    let since = |i: usize| now[i].wrapping_sub(before[i]);
    EntrySnapshot {
        key: entry.key,
        decision: entry.decision,
        packets: [since(0), since(2)],
        bytes: [since(1), since(3)],
    }
}

fn entry_deadline(entry: &crate::conntrack::FlowEntry) -> u64 {
    entry.last_seen
}

/// The `E` tuple of a flow that leaves the table at `at` (evicted or
/// expired).
fn push_flow_end(
    program: &Program,
    events: &mut Vec<FlowEvent>,
    marks: &mut ahash::AHashMap<FlowKey, [u64; 4]>,
    entry: &crate::conntrack::FlowEntry,
    at: u64,
) {
    let snapshot = entry_event(entry, marks, Mark::Remove);
    push_flow_event(program, events, snapshot, FlowState::End, at);
}

fn push_flow_event(
    program: &Program,
    events: &mut Vec<FlowEvent>,
    entry: EntrySnapshot,
    state: FlowState,
    now: u64,
) {
    let decision = entry.decision;
    if decision.table == u32::MAX {
        return;
    }
    let table = &program.tables()[decision.table as usize];
    let rule = &table.rules[decision.rule as usize];
    let prefix = if rule.is_default {
        "DefaultRule_"
    } else {
        "UserRule_"
    };
    let inbound = table.direction == Direction::Inbound;
    // The NIC whose NSG logs: the destination's for inbound, else the source's.
    let address = if inbound {
        entry.key.destination_ip()
    } else {
        entry.key.source_ip()
    };
    let nic = program
        .endpoint_of(address)
        .map(|e| program.endpoint_name(e, address))
        .unwrap_or_default();
    events.push(FlowEvent {
        time_ns: now,
        nsg: program.nsg_name(table.nsg as u32).to_string(),
        rule: format!("{prefix}{}", rule.name),
        mac: nic_mac(&nic),
        source: entry.key.source_ip(),
        destination: entry.key.destination_ip(),
        source_port: entry.key.source_port,
        destination_port: entry.key.destination_port,
        protocol: entry.key.protocol,
        inbound,
        allowed: decision.allowed,
        state,
        packets_forward: entry.packets[0],
        bytes_forward: entry.bytes[0],
        packets_reverse: entry.packets[1],
        bytes_reverse: entry.bytes[1],
    });
}
