//! Connection-table tests on a virtual clock, and a proptest against a naive
//! model (a `HashMap` with explicit deadlines).

use std::collections::HashMap;

use proptest::prelude::*;

use super::config::SECOND;
use super::state::{PROTOCOL_ICMP, PROTOCOL_TCP, PROTOCOL_UDP};
use super::tcp_flags::{ACK, FIN, PSH, RST, SYN};
use super::*;
use crate::packet::FlowKey;

const S: u64 = SECOND;
const T0: u64 = 1_000 * S;

fn key(protocol: u8, a: u32, a_port: u16, b: u32, b_port: u16) -> FlowKey {
    FlowKey {
        source: a as u128,
        destination: b as u128,
        source_port: a_port,
        destination_port: b_port,
        protocol,
        ipv6: false,
    }
}

fn tcp(n: u32) -> FlowKey {
    key(
        PROTOCOL_TCP,
        0x0a00_0001,
        40_000 + n as u16,
        0x0a00_0002,
        443,
    )
}

fn decision(allowed: bool) -> StoredDecision {
    StoredDecision {
        allowed,
        nsg: 1,
        rule: 2,
        table: 3,
        generation: 7,
    }
}

fn table(max_flows: usize) -> ConnectionTable {
    ConnectionTable::new(ConntrackConfig {
        max_flows,
        max_fragments: 4,
        ..ConntrackConfig::default()
    })
}

/// Handshake on `k` starting at `t`; returns the entry.
fn establish(t: &mut ConnectionTable, k: &FlowKey, at: u64) -> EntryId {
    let id = t.insert(k, decision(true), SYN, 60, at).unwrap();
    let (rid, side) = t.lookup(&k.reversed(), at).unwrap();
    assert_eq!((rid, side), (id, Side::Reply));
    t.update(id, Side::Reply, SYN | ACK, 60, at);
    let out = t.update(id, Side::Original, ACK, 52, at);
    assert!(out.established_now());
    id
}

fn drain(t: &mut ConnectionTable, now: u64) -> Vec<FlowKey> {
    let mut out = Vec::new();
    t.expire(now, |e| out.push(e.key));
    out
}

#[test]
fn entry_fits_two_cache_lines() {
    assert!(std::mem::size_of::<FlowEntry>() <= 128);
    assert_eq!(std::mem::size_of::<FlowEntry>(), 128);
    assert!(std::mem::size_of::<StoredDecision>() <= 24);
}

#[test]
fn one_million_flows_fit_in_256_mib() {
    let flows = 1_000_000;
    let mut t = table(flows);
    let before = t.allocation_size();
    assert!(before < 256 << 20, "{before} bytes");
    for i in 0..flows as u32 {
        let k = key(PROTOCOL_UDP, i, 53, !i, 53);
        t.insert(&k, decision(true), 0, 100, T0).unwrap();
    }
    assert_eq!(t.len(), flows);
    // Nothing grew: everything was allocated up front.
    assert_eq!(t.allocation_size(), before);
    let k = key(PROTOCOL_UDP, 12345, 53, !12345, 53);
    assert!(t.lookup(&k.reversed(), T0).is_some());
}

#[test]
fn both_directions_find_one_entry() {
    let mut t = table(16);
    let k = tcp(1);
    assert_eq!(t.lookup(&k, T0), None);
    let id = t.insert(&k, decision(true), SYN, 60, T0).unwrap();
    assert_eq!(t.lookup(&k, T0), Some((id, Side::Original)));
    assert_eq!(t.lookup(&k.reversed(), T0), Some((id, Side::Reply)));
    assert_eq!(t.lookup(&tcp(2), T0), None);
    assert_eq!(t.entry(id).key, k);
    assert_eq!(t.entry(id).decision, decision(true));
    let s = t.stats();
    assert_eq!((s.inserts, s.hits, s.misses), (1, 2, 2));
}

#[test]
fn tcp_lifecycle_to_time_wait_and_expiry() {
    let mut t = table(16);
    let k = tcp(1);
    let id = t.insert(&k, decision(true), SYN, 60, T0).unwrap();
    assert_eq!(t.entry(id).state, FlowState::TcpSynSent);
    assert_eq!(t.expires_at(id), T0 + 30 * S);
    t.update(id, Side::Reply, SYN | ACK, 60, T0 + S);
    assert_eq!(t.entry(id).state, FlowState::TcpSynReceived);
    let out = t.update(id, Side::Original, ACK, 52, T0 + 2 * S);
    assert!(out.established_now());
    assert!(t.entry(id).established());
    assert_eq!(t.expires_at(id), T0 + 242 * S);
    // Idle for 3 minutes: still there.
    assert!(t.lookup(&k, T0 + 200 * S).is_some());
    t.update(id, Side::Original, FIN | ACK, 52, T0 + 200 * S);
    assert_eq!(t.entry(id).state, FlowState::TcpFinOriginal);
    assert_eq!(t.expires_at(id), T0 + 210 * S);
    let out = t.update(id, Side::Reply, FIN | ACK, 52, T0 + 201 * S);
    assert!(out.closed_now());
    assert_eq!(t.entry(id).state, FlowState::TcpTimeWait);
    let e = t.entry(id);
    assert_eq!(e.packets, [3, 2]);
    assert_eq!(e.bytes, [60 + 52 + 52, 60 + 52]);
    assert_eq!((e.first_seen, e.last_seen), (T0, T0 + 201 * S));
    assert!(drain(&mut t, T0 + 211 * S - 1).is_empty());
    assert!(t.lookup(&k, T0 + 211 * S - 1).is_some());
    assert!(t.lookup(&k, T0 + 211 * S).is_none());
    assert_eq!(drain(&mut t, T0 + 211 * S), vec![k]);
    assert!(t.is_empty());
    assert_eq!(t.stats().expirations, 1);
}

#[test]
fn rst_closes_with_short_timeout() {
    let mut t = table(16);
    let k = tcp(1);
    let id = establish(&mut t, &k, T0);
    let out = t.update(id, Side::Reply, RST, 40, T0 + 5 * S);
    assert!(out.closed_now());
    assert_eq!(t.entry(id).state, FlowState::TcpClosed);
    assert!(t.lookup(&k, T0 + 15 * S - 1).is_some());
    assert!(t.lookup(&k, T0 + 15 * S).is_none());
    // A new SYN on the same 5-tuple replaces the dead entry.
    let mut ended = Vec::new();
    let id2 = t
        .insert_with(&k, decision(true), SYN, 60, T0 + 16 * S, |e, r| {
            ended.push((e.state, r))
        })
        .unwrap();
    assert_eq!(ended, vec![(FlowState::TcpClosed, EndReason::Expired)]);
    assert_eq!(t.entry(id2).state, FlowState::TcpSynSent);
    assert_eq!(t.entry(id2).packets, [1, 0]);
    assert_eq!(t.len(), 1);
}

#[test]
fn batched_lookup_matches_single_lookups() {
    let mut a = table(256);
    let mut b = table(256);
    for n in 0..100 {
        let at = T0 + n as u64 * S;
        a.insert(&tcp(n), decision(true), SYN, 60, at).unwrap();
        b.insert(&tcp(n), decision(true), SYN, 60, at).unwrap();
    }
    // Hits both ways, misses, and expired entries, across several chunks.
    let keys: Vec<FlowKey> = (0..150)
        .map(|n| {
            if n % 2 == 0 {
                tcp(n)
            } else {
                tcp(n).reversed()
            }
        })
        .collect();
    let now = T0 + 110 * S;
    let single: Vec<_> = keys.iter().map(|k| a.lookup(k, now)).collect();
    let mut batched = vec![None; keys.len()];
    b.lookup_batch(&keys, now, &mut batched);
    assert_eq!(single, batched);
    let hits = batched.iter().filter(|x| x.is_some()).count();
    assert_eq!(hits, 19);
    assert_eq!(a.stats(), b.stats());
}

#[test]
fn half_open_expires_after_30_s() {
    let mut t = table(16);
    let k = tcp(1);
    t.insert(&k, decision(true), SYN, 60, T0).unwrap();
    // Retransmitted SYNs keep it alive.
    let (id, side) = t.lookup(&k, T0 + 20 * S).unwrap();
    t.update(id, side, SYN, 60, T0 + 20 * S);
    assert!(t.lookup(&k, T0 + 50 * S - 1).is_some());
    assert!(t.lookup(&k, T0 + 50 * S).is_none());
    assert_eq!(t.next_expiry(), Some(T0 + 50 * S));
    assert_eq!(drain(&mut t, T0 + 50 * S), vec![k]);
}

#[test]
fn mid_stream_pickup_is_half_open_until_reply() {
    let mut t = table(16);
    let k = tcp(1);
    assert!(!tcp_can_open(ACK | PSH));
    let id = t.insert(&k, decision(true), ACK | PSH, 1000, T0).unwrap();
    assert_eq!(t.entry(id).state, FlowState::TcpMidStream);
    assert!(!t.entry(id).established());
    assert_eq!(t.expires_at(id), T0 + 30 * S);
    let out = t.update(id, Side::Reply, ACK, 52, T0 + S);
    assert!(out.established_now());
    assert_eq!(t.expires_at(id), T0 + 241 * S);
}

#[test]
fn udp_unanswered_30_s_answered_4_min() {
    let mut t = table(16);
    let lonely = key(PROTOCOL_UDP, 1, 5000, 2, 53);
    let chatty = key(PROTOCOL_UDP, 1, 5001, 2, 53);
    t.insert(&lonely, decision(true), 0, 80, T0).unwrap();
    let id = t.insert(&chatty, decision(true), 0, 80, T0).unwrap();
    let (rid, side) = t.lookup(&chatty.reversed(), T0 + S).unwrap();
    assert_eq!((rid, side), (id, Side::Reply));
    let out = t.update(id, side, 0, 120, T0 + S);
    assert!(out.established_now());
    assert_eq!(t.entry(id).state, FlowState::Replied);
    assert_eq!(drain(&mut t, T0 + 30 * S), vec![lonely]);
    assert!(t.lookup(&chatty, T0 + 241 * S - 1).is_some());
    assert_eq!(drain(&mut t, T0 + 241 * S), vec![chatty]);
}

#[test]
fn icmp_echo_by_identifier() {
    let mut t = table(16);
    let request = key(PROTOCOL_ICMP, 1, 77, 2, 77);
    let other_id = key(PROTOCOL_ICMP, 1, 78, 2, 78);
    let id = t.insert(&request, decision(true), 0, 84, T0).unwrap();
    assert_eq!(t.lookup(&other_id.reversed(), T0), None);
    let (rid, side) = t.lookup(&request.reversed(), T0 + S).unwrap();
    assert_eq!((rid, side), (id, Side::Reply));
    t.update(id, side, 0, 84, T0 + S);
    assert!(t.entry(id).established());
    assert!(t.lookup(&request, T0 + 31 * S - 1).is_some());
    assert!(t.lookup(&request, T0 + 31 * S).is_none());
}

#[test]
fn deny_entries_cover_both_directions_and_expire_after_10_s() {
    let mut t = table(16);
    let k = tcp(1);
    let id = t.insert(&k, decision(false), SYN, 60, T0).unwrap();
    assert_eq!(t.expires_at(id), T0 + 10 * S);
    let (rid, side) = t.lookup(&k.reversed(), T0 + S).unwrap();
    assert_eq!((rid, side), (id, Side::Reply));
    assert!(!t.entry(rid).decision.allowed);
    // A retry refreshes the deny entry.
    t.update(id, Side::Original, SYN, 60, T0 + 5 * S);
    assert!(t.lookup(&k, T0 + 15 * S - 1).is_some());
    assert_eq!(drain(&mut t, T0 + 15 * S), vec![k]);
}

#[test]
fn reevaluation_flip_restarts_the_timer_in_the_new_lane() {
    let mut t = table(16);
    let k = tcp(1);
    let id = establish(&mut t, &k, T0);
    let mut d = decision(true);
    d.generation = 8;
    t.set_decision(id, d, T0 + 100 * S);
    assert_eq!(t.expires_at(id), T0 + 240 * S, "same verdict: timer kept");
    d.allowed = false;
    t.set_decision(id, d, T0 + 100 * S);
    assert_eq!(t.entry(id).decision.generation, 8);
    assert_eq!(t.expires_at(id), T0 + 110 * S);
    assert_eq!(drain(&mut t, T0 + 110 * S), vec![k]);
}

#[test]
fn eviction_prefers_unestablished_then_oldest_established() {
    let mut t = table(4);
    let a = establish(&mut t, &tcp(1), T0);
    let b = establish(&mut t, &tcp(2), T0 + S);
    // A SYN flood into the two free slots and beyond.
    let mut ended = Vec::new();
    for n in 0..100 {
        t.insert_with(
            &tcp(100 + n),
            decision(true),
            SYN,
            60,
            T0 + 2 * S,
            |e, r| ended.push((e.key, r)),
        )
        .unwrap();
    }
    assert_eq!(ended.len(), 98);
    assert!(ended
        .iter()
        .all(|&(_, r)| r == EndReason::Evicted(EvictionClass::Unestablished)));
    // Oldest first: the first SYNs went first.
    assert_eq!(ended[0].0, tcp(100));
    assert_eq!(ended[1].0, tcp(101));
    assert_eq!(t.lookup(&tcp(1), T0 + 2 * S), Some((a, Side::Original)));
    assert_eq!(t.lookup(&tcp(2), T0 + 2 * S), Some((b, Side::Original)));
    assert!(t.lookup(&tcp(199), T0 + 2 * S).is_some());
    assert_eq!(t.stats().evicted_unestablished, 98);

    // Denied and unanswered UDP entries are unestablished too.
    t.insert(&tcp(300), decision(false), SYN, 60, T0 + 3 * S)
        .unwrap();
    t.insert(
        &key(PROTOCOL_UDP, 1, 1, 2, 2),
        decision(true),
        0,
        60,
        T0 + 4 * S,
    )
    .unwrap();
    assert_eq!(t.stats().evicted_unestablished, 100);
    assert_eq!(t.len(), 4);

    // Once the half-open ones have expired they go first, as expired.
    let late = T0 + 40 * S;
    t.insert(&tcp(400), decision(true), SYN, 60, late).unwrap();
    t.insert(&tcp(401), decision(true), SYN, 60, late).unwrap();
    assert_eq!(t.stats().evicted_expired, 2);

    // Only established entries left (plus the two new SYNs): establish them,
    // then the oldest established goes.
    let c = establish(&mut t, &tcp(400), late).0;
    let _ = c;
    let mut ended = Vec::new();
    t.insert_with(&tcp(500), decision(true), SYN, 60, late, |e, r| {
        ended.push((e.key, r))
    })
    .unwrap();
    assert_eq!(
        ended,
        vec![(tcp(401), EndReason::Evicted(EvictionClass::Unestablished))]
    );
    establish(&mut t, &tcp(500), late);
    let mut ended = Vec::new();
    t.insert_with(&tcp(600), decision(true), SYN, 60, late, |e, r| {
        ended.push((e.key, r))
    })
    .unwrap();
    assert_eq!(
        ended,
        vec![(tcp(1), EndReason::Evicted(EvictionClass::Established))]
    );
    let s = t.stats();
    assert_eq!(s.evicted_established, 1);
    assert_eq!(s.evictions(), 104);
}

#[test]
fn capacity_zero_is_table_full() {
    let mut t = table(0);
    assert_eq!(
        t.insert(&tcp(1), decision(true), SYN, 60, T0),
        Err(TableFull)
    );
    assert_eq!(t.stats().table_full, 1);
}

#[test]
fn live_duplicate_insert_replaces() {
    let mut t = table(4);
    let k = tcp(1);
    let id = t.insert(&k, decision(true), SYN, 60, T0).unwrap();
    let mut reasons = Vec::new();
    let id2 = t
        .insert_with(&k.reversed(), decision(false), SYN, 60, T0, |_, r| {
            reasons.push(r)
        })
        .unwrap();
    assert_eq!(id, id2);
    assert_eq!(reasons, vec![EndReason::Replaced]);
    assert_eq!(t.lookup(&k, T0), Some((id, Side::Reply)));
    assert_eq!(t.len(), 1);
}

#[test]
fn time_never_runs_backwards() {
    let mut t = table(4);
    let k = tcp(1);
    let id = t.insert(&k, decision(true), SYN, 60, T0).unwrap();
    t.update(id, Side::Original, SYN, 60, T0 - 5 * S);
    assert_eq!(t.entry(id).last_seen, T0);
}

#[test]
fn expire_is_budgeted_and_reports_each_entry_once() {
    let mut t = table(64);
    for n in 0..50 {
        t.insert(&tcp(n), decision(true), SYN, 60, T0 + n as u64)
            .unwrap();
    }
    let mut seen = Vec::new();
    assert_eq!(t.expire_at_most(T0 + 60 * S, 20, |e| seen.push(e.key)), 20);
    assert_eq!(t.expire(T0 + 60 * S, |e| seen.push(e.key)), 30);
    assert_eq!(seen, (0..50).map(tcp).collect::<Vec<_>>());
    assert_eq!(t.next_expiry(), None);
    assert_eq!(t.iter().count(), 0);
    assert_eq!(t.lane_lengths(), [0; 10]);
}

#[test]
fn iter_visits_resident_entries() {
    let mut t = table(8);
    for n in 0..5 {
        t.insert(&tcp(n), decision(true), SYN, 60, T0).unwrap();
    }
    drain(&mut t, T0); // nothing
    let mut keys: Vec<_> = t.iter().map(|(_, e)| e.key).collect();
    keys.sort();
    assert_eq!(keys, (0..5).map(tcp).collect::<Vec<_>>());
}

#[test]
fn fragments_follow_their_first_fragment() {
    let mut t = table(8);
    let k = key(PROTOCOL_UDP, 1, 5000, 2, 53);
    let fk = FragmentKey::of(&k, 0x1234);
    // A later fragment before its first: orphan.
    assert_eq!(t.lookup_fragment(&fk, T0), None);
    let id = t.insert(&k, decision(true), 0, 1500, T0).unwrap();
    t.note_first_fragment(fk, &k, true, Some(id), T0);
    let v = t.lookup_fragment(&fk, T0 + S).unwrap();
    assert!(v.allowed);
    assert_eq!(v.entry, Some((id, Side::Original)));
    // Another datagram of the same flow is a different reassembly key.
    assert_eq!(
        t.lookup_fragment(&FragmentKey::of(&k, 0x1235), T0 + S),
        None
    );
    // Denied first fragment: later ones follow the deny.
    let dk = FragmentKey::of(&k, 9);
    t.note_first_fragment(dk, &k, false, None, T0 + S);
    assert_eq!(
        t.lookup_fragment(&dk, T0 + 2 * S),
        Some(FragmentVerdict {
            allowed: false,
            entry: None
        })
    );
    // Records expire 30 s after the first fragment.
    assert!(t.lookup_fragment(&fk, T0 + 30 * S - 1).is_some());
    assert_eq!(t.lookup_fragment(&fk, T0 + 30 * S), None);
    assert_eq!(t.fragment_count(), 1);
    let s = t.stats();
    assert_eq!(
        (
            s.fragments_tracked,
            s.fragments_followed,
            s.fragments_orphaned
        ),
        (2, 3, 3)
    );
}

#[test]
fn fragment_entry_is_revalidated_and_table_bounded() {
    let mut t = table(8);
    let k = key(PROTOCOL_UDP, 1, 5000, 2, 53);
    let id = t.insert(&k, decision(true), 0, 1500, T0).unwrap();
    t.note_first_fragment(FragmentKey::of(&k, 1), &k, true, Some(id), T0);
    // The connection times out (30 s unanswered) before the fragment record
    // does... it is not reported any more.
    t.expire(T0 + 30 * S - 1, |_| {});
    let v = t.lookup_fragment(&FragmentKey::of(&k, 1), T0 + 30 * S - 1);
    assert_eq!(v.map(|v| v.entry), Some(Some((id, Side::Original))));
    // Capacity 4: the fifth first fragment drops the oldest record.
    for n in 2..=5 {
        t.note_first_fragment(FragmentKey::of(&k, n), &k, true, None, T0 + n as u64);
    }
    assert_eq!(t.fragment_count(), 4);
    assert_eq!(t.stats().fragments_evicted, 1);
    assert_eq!(t.lookup_fragment(&FragmentKey::of(&k, 1), T0 + 10), None);
    assert!(t
        .lookup_fragment(&FragmentKey::of(&k, 2), T0 + 10)
        .is_some());
    // Slot reused by another flow: the record no longer names a connection.
    t.expire(T0 + 30 * S, |_| {});
    let other = key(PROTOCOL_UDP, 7, 7, 8, 8);
    let id2 = t
        .insert(&other, decision(true), 0, 100, T0 + 30 * S)
        .unwrap();
    assert_eq!(id2, id);
    t.note_first_fragment(FragmentKey::of(&k, 99), &k, true, Some(id), T0 + 30 * S);
    let v = t
        .lookup_fragment(&FragmentKey::of(&k, 99), T0 + 30 * S)
        .unwrap();
    assert_eq!(v.entry, None);
}

// ---- reference model ---------------------------------------------------------

/// An independent transcription of the timeout table (nsg-semantics §7).
fn model_timeout(t: &Timeouts, allowed: bool, protocol: u8, state: FlowState) -> u64 {
    use FlowState::*;
    if !allowed {
        return t.denied;
    }
    match protocol {
        6 => match state {
            TcpSynSent | TcpSynReceived | TcpMidStream => t.tcp_half_open,
            TcpEstablished => t.tcp_established,
            _ => t.tcp_closing,
        },
        17 if state == Replied => t.udp,
        17 => t.udp_unreplied,
        1 | 58 => t.icmp,
        _ => t.other,
    }
}

#[derive(Debug, Clone)]
struct ModelEntry {
    key: FlowKey,
    allowed: bool,
    state: FlowState,
    last_seen: u64,
    packets: [u32; 2],
}

struct Model {
    timeouts: Timeouts,
    entries: HashMap<FlowKey, ModelEntry>,
}

impl Model {
    fn deadline(&self, e: &ModelEntry) -> u64 {
        e.last_seen + model_timeout(&self.timeouts, e.allowed, e.key.protocol, e.state)
    }

    fn class(&self, e: &ModelEntry, now: u64) -> EvictionClass {
        if self.deadline(e) <= now {
            EvictionClass::Expired
        } else if e.allowed && e.state.is_established() {
            EvictionClass::Established
        } else {
            EvictionClass::Unestablished
        }
    }

    /// Checks that `victim` is a legal eviction choice and removes it.
    fn evict(&mut self, victim: &FlowKey, reported: EvictionClass, now: u64) {
        let canonical = victim.canonical();
        let v = self.entries[&canonical].clone();
        let class = self.class(&v, now);
        assert_eq!(class, reported);
        let best = |c: EvictionClass| {
            self.entries
                .values()
                .filter(|e| self.class(e, now) == c)
                .map(|e| match c {
                    EvictionClass::Expired => self.deadline(e),
                    _ => e.last_seen,
                })
                .min()
        };
        for better in [EvictionClass::Expired, EvictionClass::Unestablished] {
            if better == class {
                break;
            }
            assert_eq!(
                best(better),
                None,
                "evicted {class:?} while {better:?} exist"
            );
        }
        let mine = match class {
            EvictionClass::Expired => self.deadline(&v),
            _ => v.last_seen,
        };
        assert_eq!(Some(mine), best(class), "not the oldest of its class");
        self.entries.remove(&canonical);
    }
}

#[derive(Debug, Clone)]
enum Op {
    Packet {
        flow: usize,
        reverse: bool,
        flags: u8,
        allowed: bool,
        dt: u64,
    },
    Expire {
        dt: u64,
    },
    Reevaluate {
        flow: usize,
        allowed: bool,
        dt: u64,
    },
}

fn flow_pool() -> Vec<FlowKey> {
    vec![
        tcp(1),
        tcp(2),
        tcp(3),
        key(PROTOCOL_UDP, 5, 1000, 6, 53),
        key(PROTOCOL_UDP, 6, 53, 5, 1000).reversed(), // same as above, other way
        key(PROTOCOL_ICMP, 5, 9, 6, 9),
        key(50, 5, 0, 6, 0),
        key(PROTOCOL_UDP, 7, 1, 7, 1), // its own reverse
        FlowKey {
            source: 0x2001_0db8 << 96 | 1,
            destination: 0x2001_0db8 << 96 | 2,
            ipv6: true,
            ..tcp(1)
        },
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let dt = prop_oneof![
        4 => 0..3 * S,
        2 => Just(10 * S),
        2 => Just(30 * S),
        1 => 0..300 * S,
    ];
    let flags = prop::sample::select(vec![SYN, SYN | ACK, ACK, ACK | PSH, FIN | ACK, RST, 0]);
    prop_oneof![
        6 => (0..9usize, any::<bool>(), flags, prop::bool::weighted(0.8), dt.clone()).prop_map(
            |(flow, reverse, flags, allowed, dt)| Op::Packet { flow, reverse, flags, allowed, dt }
        ),
        1 => dt.clone().prop_map(|dt| Op::Expire { dt }),
        1 => (0..9usize, any::<bool>(), dt).prop_map(|(flow, allowed, dt)| Op::Reevaluate { flow, allowed, dt }),
    ]
}

fn run_against_model(ops: Vec<Op>, max_flows: usize) {
    let config = ConntrackConfig {
        max_flows,
        ..ConntrackConfig::default()
    };
    let mut table = ConnectionTable::new(config);
    let mut model = Model {
        timeouts: config.timeouts,
        entries: HashMap::new(),
    };
    let pool = flow_pool();
    let mut now = T0;
    for op in ops {
        match op {
            Op::Packet {
                flow,
                reverse,
                flags,
                allowed,
                dt,
            } => {
                now += dt;
                let k = if reverse {
                    pool[flow].reversed()
                } else {
                    pool[flow]
                };
                let canonical = k.canonical();
                let live = model
                    .entries
                    .get(&canonical)
                    .filter(|e| model.deadline(e) > now)
                    .cloned();
                let got = table.lookup(&k, now);
                match (live, got) {
                    (Some(m), Some((id, side))) => {
                        let want_side = if m.key == k {
                            Side::Original
                        } else {
                            Side::Reply
                        };
                        assert_eq!(side, want_side);
                        let out = table.update(id, side, flags, 100, now);
                        let m = model.entries.get_mut(&canonical).unwrap();
                        m.state = m.state.next(side, flags);
                        m.last_seen = now;
                        m.packets[side.index()] += 1;
                        assert_eq!(out.state, m.state);
                        let e = table.entry(id);
                        assert_eq!(e.packets, m.packets);
                        assert_eq!(e.key, m.key);
                    }
                    (None, None) => {
                        let mut ended = Vec::new();
                        table
                            .insert_with(&k, decision(allowed), flags, 100, now, |e, r| {
                                ended.push((e.key, r))
                            })
                            .unwrap();
                        for (victim_key, reason) in ended {
                            match reason {
                                EndReason::Expired => {
                                    let m = model.entries.remove(&victim_key.canonical()).unwrap();
                                    assert!(model.deadline(&m) <= now);
                                    assert_eq!(victim_key.canonical(), canonical);
                                }
                                EndReason::Evicted(class) => {
                                    model.evict(&victim_key, class, now);
                                }
                                EndReason::Replaced => panic!("replaced a live entry"),
                            }
                        }
                        model.entries.insert(
                            canonical,
                            ModelEntry {
                                key: k,
                                allowed,
                                state: FlowState::initial(k.protocol, flags),
                                last_seen: now,
                                packets: [1, 0],
                            },
                        );
                        assert!(model.entries.len() <= max_flows);
                    }
                    (m, g) => panic!("model {m:?} vs table {g:?} for {k}"),
                }
            }
            Op::Reevaluate { flow, allowed, dt } => {
                now += dt;
                let k = pool[flow];
                let canonical = k.canonical();
                let live = model
                    .entries
                    .get(&canonical)
                    .is_some_and(|e| model.deadline(e) > now);
                let got = table.lookup(&k, now);
                assert_eq!(got.is_some(), live);
                if let Some((id, _)) = got {
                    let mut d = decision(allowed);
                    d.generation = 9;
                    table.set_decision(id, d, now);
                    let m = model.entries.get_mut(&canonical).unwrap();
                    if m.allowed != allowed {
                        m.allowed = allowed;
                        m.last_seen = now;
                    }
                    assert_eq!(table.entry(id).decision, d);
                }
            }
            Op::Expire { dt } => {
                now += dt;
                let mut got = Vec::new();
                table.expire(now, |e| got.push(e.key.canonical()));
                got.sort();
                let mut want: Vec<_> = model
                    .entries
                    .iter()
                    .filter(|(_, e)| model.deadline(e) <= now)
                    .map(|(k, _)| *k)
                    .collect();
                want.sort();
                assert_eq!(got, want);
                for k in want {
                    model.entries.remove(&k);
                }
            }
        }
        assert_eq!(table.len(), model.entries.len());
        for (id, e) in table.iter() {
            let m = &model.entries[&e.key.canonical()];
            assert_eq!(e.state, m.state);
            assert_eq!(table.expires_at(id), model.deadline(m));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn table_agrees_with_model(ops in prop::collection::vec(op(), 1..120), max_flows in 1usize..6) {
        run_against_model(ops, max_flows);
    }
}
