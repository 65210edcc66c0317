//! Live inline mode: nsgd as a transparent bridge between two interfaces.
//! Each worker owns one receive ring per port (PACKET_FANOUT spreads flows
//! over workers by a symmetric hash, so a worker sees both directions of its
//! flows), one transmit ring per port and its own dataplane: no locks and no
//! hand-offs on the packet path. A frame is judged where it is received and,
//! if allowed, copied once, into the other port's transmit ring; frames the
//! worker cannot take are dropped by the kernel and counted, never forwarded
//! unjudged.
//!
//! The control side ([`Bridge`]) swaps in new programs, reads counters and
//! stops the workers; workers look at it between blocks, not per packet.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::compile::Program;
use crate::conntrack::ConntrackStats;
use crate::dataplane::{shard_of, Counters, Dataplane, DataplaneConfig};
use crate::io::live::{
    interface_index, wait_readable, PortError, Readiness, Receiver, RingConfig, RxRing, Sender,
    TxMode, XdpMode, XdpRx,
};
use crate::packet::{parse, LinkType};
use crate::telemetry::flow_log::FlowEvent;

use super::{add_rule_hits, report_from, FlowSummary, ReplayReport, RuleHits};

/// How to attach and what to enforce.
#[derive(Debug, Clone)]
pub struct LiveOptions {
    /// The two interfaces bridged: frames in on one go out of the other.
    pub ports: [String; 2],
    /// Workers, each with its own rings on both ports (PACKET_FANOUT).
    pub workers: usize,
    pub dataplane: DataplaneConfig,
    pub ring: RingConfig,
    /// Put the ports in promiscuous mode (a bridge must see every frame).
    pub promiscuous: bool,
    /// How frames are received.
    pub rx_io: RxIo,
    /// How allowed frames are sent.
    pub tx_mode: TxMode,
    /// Merge runs of a stream's frames for the kernel to cut back into the
    /// same frames (GSO) on the way out: one trip through the device per
    /// burst instead of one per frame.
    pub coalesce: bool,
    /// How long an idle worker keeps polling its rings before it sleeps in
    /// `poll` (zero: sleep at once). Spinning trades CPU for latency.
    pub spin: Duration,
}

impl LiveOptions {
    pub fn new(port_a: &str, port_b: &str) -> Self {
        LiveOptions {
            ports: [port_a.to_string(), port_b.to_string()],
            workers: 1,
            dataplane: DataplaneConfig {
                pass_neighbour_discovery: true,
                ..DataplaneConfig::default()
            },
            ring: RingConfig::default(),
            promiscuous: true,
            rx_io: RxIo::Packet,
            tx_mode: TxMode::Ring,
            coalesce: true,
            spin: Duration::ZERO,
        }
    }
}

/// How a bridge receives frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RxIo {
    /// AF_PACKET receive rings (any interface, any number of workers).
    Packet,
    /// AF_XDP sockets fed by an XDP program on each port: one worker, and
    /// ports with a single receive queue.
    Xdp,
}

/// Frame counts of one port (both directions of the wire).
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct PortCounters {
    /// Frames the workers took from this port's receive rings, counted as on
    /// the wire: a GRO/LRO aggregate counts as the frames it merged.
    pub received: u64,
    pub received_bytes: u64,
    /// Frames queued for sending out of this port.
    pub sent: u64,
    pub sent_bytes: u64,
    /// Frames the kernel dropped because a receive ring was full (the
    /// workers did not keep up); never seen, never forwarded.
    pub kernel_drops: u64,
    /// Allowed frames dropped because this port's transmit side stayed full
    /// (transmit ring, or socket buffer).
    pub transmit_busy: u64,
    /// Allowed frames too long for a transmit slot, or cut short by the
    /// receive ring (e.g. GRO aggregates): dropped, never sent truncated.
    pub oversize: u64,
    /// Frames received with their L4 checksum left to offload, which nsgd
    /// filled in before forwarding.
    pub checksum_completed: u64,
    /// Frames received with their L4 checksum left to offload that nsgd
    /// could not complete (V3 rings carry no offsets): forwarded with an
    /// unfinished checksum (turn transmit checksum offload off on the
    /// sender, see the README).
    pub checksum_unfinished: u64,
    /// Receive-offload (GRO/LRO) aggregates taken whole: each is judged
    /// once, counted in `received` as the wire frames it merged, and sent
    /// on to be cut back into those frames.
    pub merged: u64,
    /// Frames sent merged with others of their stream into one aggregate,
    /// which the kernel cut back into these very frames (also in `sent`).
    pub coalesced: u64,
}

impl PortCounters {
    fn add(&mut self, other: &PortCounters) {
        self.received += other.received;
        self.received_bytes += other.received_bytes;
        self.sent += other.sent;
        self.sent_bytes += other.sent_bytes;
        self.kernel_drops += other.kernel_drops;
        self.transmit_busy += other.transmit_busy;
        self.oversize += other.oversize;
        self.checksum_completed += other.checksum_completed;
        self.checksum_unfinished += other.checksum_unfinished;
        self.merged += other.merged;
        self.coalesced += other.coalesced;
    }
}

/// One port in the report.
#[derive(Debug, Clone, Serialize)]
pub struct PortReport {
    pub interface: String,
    #[serde(flatten)]
    pub counters: PortCounters,
}

/// Counters of a running (or stopped) bridge. The traffic part has the
/// same fields as `replay --json`.
#[derive(Debug, Clone, Serialize)]
pub struct LiveReport {
    #[serde(flatten)]
    pub traffic: ReplayReport,
    pub ports: Vec<PortReport>,
    /// Policy reloads applied, and rejected (the old policy stayed).
    pub reloads: u64,
    pub reloads_rejected: u64,
    pub policy_generation: u64,
    pub live_flows: u64,
}

/// What a worker last published.
struct WorkerSnapshot {
    program: Arc<Program>,
    counters: Counters,
    /// Hits of programs replaced by a reload, by name.
    retired_hits: RuleHits,
    conntrack: ConntrackStats,
    live_flows: u64,
    ports: [PortCounters; 2],
}

struct Shared {
    stop: AtomicBool,
    generation: AtomicU64,
    program: Mutex<Arc<Program>>,
    snapshots: Vec<Mutex<WorkerSnapshot>>,
    flow_events: Mutex<Vec<FlowEvent>>,
    reloads: AtomicU64,
    reloads_rejected: AtomicU64,
    /// Why a worker stopped on its own.
    failure: Mutex<Option<String>>,
}

/// A running bridge. Dropping it stops the workers.
pub struct Bridge {
    shared: Arc<Shared>,
    /// How the ports receive, as attached (e.g. where the XDP program runs).
    receive_path: String,
    workers: Vec<JoinHandle<()>>,
    options: LiveOptions,
    started: Instant,
}

/// How often workers publish counters (and look for a stop request when
/// idle).
const PUBLISH_INTERVAL: Duration = Duration::from_millis(100);
/// Most blocks (V3) or frame batches (V2) taken from one port before
/// serving the other, and the frames in one V2 batch (one `send` each).
const BLOCKS_PER_TURN: usize = 4;
const FRAMES_PER_TURN: usize = 256;

struct WorkerPorts {
    rx: [Receiver; 2],
    tx: [Sender; 2],
}

impl Bridge {
    /// Opens every ring (so a bad interface or missing privilege fails here,
    /// before anything forwards) and starts the workers.
    pub fn start(program: Arc<Program>, options: LiveOptions) -> Result<Bridge, PortError> {
        let workers = options.workers.max(1);
        if options.ports[0] == options.ports[1] {
            return Err(PortError {
                interface: options.ports[0].clone(),
                step: "bridge",
                error: std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "the two ports must be different interfaces",
                ),
            });
        }
        if options.rx_io == RxIo::Xdp && workers > 1 {
            return Err(PortError {
                interface: options.ports.join("+"),
                step: "bridge",
                error: std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "AF_XDP receive takes one worker: a port's queues are not \
                     split by a symmetric flow hash, so a flow's two directions \
                     could reach different workers",
                ),
            });
        }
        // Fanout group ids are per network namespace; the process id keeps
        // two instances apart.
        let group_base = (std::process::id() as u16).wrapping_mul(2);
        let mut all_ports = Vec::with_capacity(workers);
        for _ in 0..workers {
            let fanout = |side: u16| (workers > 1).then_some(group_base.wrapping_add(side));
            let rx = [
                open_receiver(&options, 0, fanout(0))?,
                open_receiver(&options, 1, fanout(1))?,
            ];
            let tx = [
                Sender::open(
                    &options.ports[0],
                    &options.ring,
                    options.tx_mode,
                    options.coalesce,
                )?,
                Sender::open(
                    &options.ports[1],
                    &options.ring,
                    options.tx_mode,
                    options.coalesce,
                )?,
            ];
            all_ports.push(WorkerPorts { rx, tx });
        }
        let config = DataplaneConfig {
            max_flows: options.dataplane.max_flows.div_ceil(workers),
            ..options.dataplane
        };
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            program: Mutex::new(Arc::clone(&program)),
            snapshots: (0..workers)
                .map(|_| {
                    Mutex::new(WorkerSnapshot {
                        program: Arc::clone(&program),
                        counters: Counters::new(program.total_rule_slots()),
                        retired_hits: RuleHits::new(),
                        conntrack: ConntrackStats::default(),
                        live_flows: 0,
                        ports: [PortCounters::default(); 2],
                    })
                })
                .collect(),
            flow_events: Mutex::new(Vec::new()),
            reloads: AtomicU64::new(0),
            reloads_rejected: AtomicU64::new(0),
            failure: Mutex::new(None),
        });
        let spin = options.spin;
        let receive_path = receive_path(&all_ports[0].rx);
        let mut bridge = Bridge {
            shared: Arc::clone(&shared),
            receive_path,
            workers: Vec::with_capacity(workers),
            options,
            started: Instant::now(),
        };
        for (index, ports) in all_ports.into_iter().enumerate() {
            let shared = Arc::clone(&shared);
            let program = Arc::clone(&program);
            let worker = std::thread::Builder::new()
                .name(format!("nsgd-worker-{index}"))
                .spawn(move || run_worker(index, &shared, program, config, spin, ports))
                .map_err(|source| PortError {
                    interface: bridge.options.ports.join("+"),
                    step: "start a worker thread",
                    error: source,
                })?;
            // On an error above, dropping `bridge` stops the workers started.
            bridge.workers.push(worker);
        }
        Ok(bridge)
    }

    /// Puts `program` in force for new flows. Live flows keep their
    /// decision unless the options asked to re-evaluate them.
    pub fn reload(&self, program: Arc<Program>) {
        *self
            .shared
            .program
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = program;
        self.shared.generation.fetch_add(1, Ordering::AcqRel);
        self.shared.reloads.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a reload that was refused (bad policy): the old one stays.
    pub fn note_rejected_reload(&self) {
        self.shared.reloads_rejected.fetch_add(1, Ordering::Relaxed);
    }

    /// How the ports receive: "AF_PACKET rings", or AF_XDP and where the
    /// XDP program runs on each port.
    pub fn receive_path(&self) -> &str {
        &self.receive_path
    }

    /// Whether every worker is still running.
    pub fn is_running(&self) -> bool {
        self.workers.iter().all(|w| !w.is_finished())
    }

    /// Why a worker stopped on its own, if one did.
    pub fn failure(&self) -> Option<String> {
        self.shared
            .failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Flow-log events produced since the previous call.
    pub fn take_flow_events(&self) -> Vec<FlowEvent> {
        std::mem::take(
            &mut *self
                .shared
                .flow_events
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        )
    }

    /// The counters as the workers last published them (at most
    /// [`PUBLISH_INTERVAL`] old).
    pub fn report(&self) -> LiveReport {
        let program = Arc::clone(
            &self
                .shared
                .program
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        let mut counters = Counters::new(0);
        let mut rule_hits = RuleHits::new();
        let mut conntrack = ConntrackStats::default();
        let mut ports = [PortCounters::default(); 2];
        let mut live_flows = 0;
        for snapshot in &self.shared.snapshots {
            let snapshot = snapshot.lock().unwrap_or_else(|e| e.into_inner());
            // Slots differ between programs: sum by name.
            add_rule_hits(
                &snapshot.program,
                &snapshot.counters.rule_hits,
                &mut rule_hits,
            );
            for (nsg, rules) in &snapshot.retired_hits {
                for (rule, hits) in rules {
                    *rule_hits
                        .entry(nsg.clone())
                        .or_default()
                        .entry(rule.clone())
                        .or_default() += hits;
                }
            }
            let mut without_hits = snapshot.counters.clone();
            without_hits.rule_hits.clear();
            counters.add(&without_hits);
            conntrack += snapshot.conntrack;
            live_flows += snapshot.live_flows;
            for (total, port) in ports.iter_mut().zip(&snapshot.ports) {
                total.add(port);
            }
        }
        let flows = FlowSummary {
            created: counters.flows_created,
            evicted: conntrack.evictions(),
            evicted_established: conntrack.evicted_established,
            expired: conntrack.expirations,
            live_at_end: live_flows,
            reevaluated: counters.reevaluated,
        };
        let mut traffic = report_from(
            &program,
            &counters,
            flows,
            0,
            self.options.dataplane.pass_non_ip,
        );
        traffic.rule_hits = rule_hits;
        traffic.workers = self.shared.snapshots.len();
        traffic.elapsed_seconds = self.started.elapsed().as_secs_f64();
        traffic.packets_per_second = traffic.packets_in as f64 / traffic.elapsed_seconds.max(1e-9);
        LiveReport {
            traffic,
            ports: self
                .options
                .ports
                .iter()
                .zip(ports)
                .map(|(interface, counters)| PortReport {
                    interface: interface.clone(),
                    counters,
                })
                .collect(),
            reloads: self.shared.reloads.load(Ordering::Relaxed),
            reloads_rejected: self.shared.reloads_rejected.load(Ordering::Relaxed),
            policy_generation: self.shared.generation.load(Ordering::Relaxed),
            live_flows,
        }
    }

    /// Stops the workers and returns the final counters and the flow-log
    /// events not yet taken (live flows' last `C` tuples included).
    pub fn stop(mut self) -> (LiveReport, Vec<FlowEvent>) {
        self.join();
        (self.report(), self.take_flow_events())
    }

    fn join(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.join();
    }
}

fn receive_path(receivers: &[Receiver; 2]) -> String {
    let xdp: Vec<String> = receivers
        .iter()
        .filter_map(|receiver| match receiver {
            Receiver::Xdp(socket) => Some(format!(
                "{}: {}",
                socket.interface(),
                match socket.mode() {
                    XdpMode::Native => "in the driver",
                    XdpMode::Generic => "generic",
                }
            )),
            Receiver::Packet(_) => None,
        })
        .collect();
    if xdp.is_empty() {
        "AF_PACKET rings".to_string()
    } else {
        format!("AF_XDP (XDP program {})", xdp.join(", "))
    }
}

fn open_receiver(
    options: &LiveOptions,
    side: usize,
    fanout: Option<u16>,
) -> Result<Receiver, PortError> {
    let interface = &options.ports[side];
    Ok(match options.rx_io {
        RxIo::Packet => Receiver::Packet(RxRing::open(
            interface,
            &options.ring,
            fanout,
            options.promiscuous,
        )?),
        RxIo::Xdp => Receiver::Xdp(XdpRx::open(interface, options.promiscuous)?),
    })
}

/// Wall-clock nanoseconds that advance with the monotonic clock: flow logs
/// need real times, timeouts need a clock that does not jump.
struct LiveClock {
    origin: Instant,
    wall_origin_ns: u64,
}

impl LiveClock {
    fn new() -> Self {
        LiveClock {
            origin: Instant::now(),
            wall_origin_ns: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64),
        }
    }

    fn at(&self, instant: Instant) -> u64 {
        self.wall_origin_ns + instant.duration_since(self.origin).as_nanos() as u64
    }
}

fn run_worker(
    index: usize,
    shared: &Shared,
    program: Arc<Program>,
    config: DataplaneConfig,
    config_spin: Duration,
    mut ports: WorkerPorts,
) {
    let mut generation = 0;
    let mut dataplane = Dataplane::new(program, generation, config, |_| true);
    let mut retired_hits = RuleHits::new();
    let mut counters = [PortCounters::default(); 2];
    let clock = LiveClock::new();
    let mut last_publish = Instant::now();
    let fds = [ports.rx[0].raw_fd(), ports.rx[1].raw_fd()];
    let spin = config_spin;
    let mut last_work = Instant::now();
    let mut port_check_due = false;
    while !shared.stop.load(Ordering::Acquire) {
        // One clock read per round: in a VM a read can cost as much as
        // judging a frame.
        let round = Instant::now();
        let now = clock.at(round);
        let current = shared.generation.load(Ordering::Acquire);
        if current != generation {
            generation = current;
            let program = Arc::clone(&shared.program.lock().unwrap_or_else(|e| e.into_inner()));
            add_rule_hits(
                dataplane.program(),
                &dataplane.counters.rule_hits,
                &mut retired_hits,
            );
            dataplane.counters.rule_hits.iter_mut().for_each(|h| *h = 0);
            dataplane.reload(program, generation);
        }
        let mut busy = false;
        for side in 0..2 {
            let (rx, tx) = {
                let WorkerPorts { rx, tx } = &mut ports;
                (&mut rx[side], &mut tx[1 - side])
            };
            let [a, b] = &mut counters;
            let (inbound, outbound) = if side == 0 { (a, b) } else { (b, a) };
            for _ in 0..BLOCKS_PER_TURN {
                let forwarded = rx.forward(tx, FRAMES_PER_TURN, |frame| {
                    inbound.received_bytes += u64::from(frame.wire_bytes());
                    inbound.merged += u64::from(frame.merged.is_some());
                    inbound.checksum_completed += u64::from(frame.checksum_completed);
                    inbound.checksum_unfinished += u64::from(frame.checksum_pending);
                    if frame.data.len() < frame.wire_len as usize {
                        // Cut short by the ring (a GRO aggregate, a jumbo
                        // frame): never sent truncated.
                        outbound.oversize += 1;
                        return false;
                    }
                    let parsed = parse(LinkType::Ethernet, frame.data);
                    dataplane
                        .decide_frames(
                            shard_of(&parsed),
                            &parsed,
                            frame.frames(),
                            frame.wire_bytes(),
                            now,
                        )
                        .allowed
                });
                let Some(forwarded) = forwarded else { break };
                busy = true;
                inbound.received += forwarded.frames;
                outbound.sent += forwarded.sent;
                outbound.sent_bytes += forwarded.sent_bytes;
                outbound.oversize += forwarded.oversize;
                outbound.transmit_busy += forwarded.busy;
                outbound.coalesced += forwarded.coalesced;
            }
        }
        let mut unsent = false;
        for tx in &mut ports.tx {
            if tx.has_unsent() {
                tx.retry_unsent();
                unsent |= tx.has_unsent();
            }
        }
        if round.duration_since(last_publish) >= PUBLISH_INTERVAL {
            last_publish = round;
            port_check_due = true;
            // Quiet shards end their expired flows too.
            dataplane.sweep_idle(now);
            publish(
                index,
                shared,
                &mut dataplane,
                &retired_hits,
                &mut counters,
                &ports,
            );
        }
        if busy {
            last_work = round;
        } else if round.duration_since(last_work) < spin {
            // Traffic just stopped: the next frame is likely microseconds
            // away, and a sleep and wake-up would cost more than it saves.
            std::hint::spin_loop();
        } else if wait_readable(
            &fds,
            if unsent {
                1
            } else {
                PUBLISH_INTERVAL.as_millis() as i32
            },
        ) == Readiness::Error
        {
            // A port went down (it may come back: keep going, but do not
            // spin on the error) or away (checked below).
            std::thread::sleep(Duration::from_millis(10));
            port_check_due = true;
        }
        // A port that went away leaves nothing to bridge: stop. Checked on
        // a socket error and every publish interval (a removal's error can
        // be taken by the down event just before it).
        if std::mem::take(&mut port_check_due) {
            if let Some(gone) = ports
                .rx
                .iter()
                .find(|rx| interface_index(rx.interface()).is_err())
            {
                *shared.failure.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some(format!("{}: the interface went away", gone.interface()));
                break;
            }
        }
    }
    dataplane.finish();
    publish(
        index,
        shared,
        &mut dataplane,
        &retired_hits,
        &mut counters,
        &ports,
    );
}

fn publish(
    index: usize,
    shared: &Shared,
    dataplane: &mut Dataplane,
    retired_hits: &RuleHits,
    counters: &mut [PortCounters; 2],
    ports: &WorkerPorts,
) {
    if !dataplane.flow_events.is_empty() {
        shared
            .flow_events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .append(&mut dataplane.flow_events);
    }
    for (counter, rx) in counters.iter_mut().zip(&ports.rx) {
        counter.kernel_drops += rx.kernel_stats().drops;
    }
    let mut snapshot = shared.snapshots[index]
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if !Arc::ptr_eq(&snapshot.program, dataplane.program()) {
        snapshot.program = Arc::clone(dataplane.program());
    }
    snapshot.counters.clone_from(&dataplane.counters);
    if snapshot.retired_hits != *retired_hits {
        snapshot.retired_hits.clone_from(retired_hits);
    }
    snapshot.conntrack = dataplane.conntrack_stats();
    snapshot.live_flows = dataplane.live_flows() as u64;
    snapshot.ports = *counters;
}

/// Per-port, per-reason figures for a one-line periodic status.
pub fn status_line(report: &LiveReport, previous: Option<&LiveReport>, seconds: f64) -> String {
    let rate = |now: u64, before: Option<u64>| {
        before.map_or(String::new(), |b| {
            format!(
                " ({:.0}/s)",
                now.saturating_sub(b) as f64 / seconds.max(1e-9)
            )
        })
    };
    let traffic = &report.traffic;
    let kernel_drops: u64 = report.ports.iter().map(|p| p.counters.kernel_drops).sum();
    let mut line = format!(
        "packets {}{} allowed {} denied {} flows live {} created {}{} kernel-drops {}",
        traffic.packets_in,
        rate(traffic.packets_in, previous.map(|p| p.traffic.packets_in)),
        traffic.packets_allowed,
        traffic.packets_denied,
        report.live_flows,
        traffic.flows.created,
        rate(
            traffic.flows.created,
            previous.map(|p| p.traffic.flows.created)
        ),
        kernel_drops,
    );
    let denied: BTreeMap<&str, u64> = traffic
        .denied_by_reason
        .iter()
        .map(|(k, v)| (k.as_str(), *v))
        .collect();
    if !denied.is_empty() {
        line.push_str(" denied-by");
        for (reason, count) in denied {
            line.push_str(&format!(" {reason}={count}"));
        }
    }
    line
}

/// The report in Prometheus text format.
pub fn prometheus(report: &LiveReport) -> String {
    use crate::telemetry::metrics::{Exposition, Kind};
    let traffic = &report.traffic;
    let mut out = Exposition::new();
    let packets = "nsgd_packets_total";
    out.family(
        packets,
        Kind::Counter,
        "Frames judged, by verdict and reason (drop reasons of unparseable frames in detail).",
    );
    for (reason, count) in &traffic.allowed_by_reason {
        out.sample(
            packets,
            &[("verdict", "allow"), ("reason", reason)],
            *count as f64,
        );
    }
    for (reason, count) in &traffic.denied_by_reason {
        if reason != "invalid" {
            out.sample(
                packets,
                &[("verdict", "deny"), ("reason", reason)],
                *count as f64,
            );
        }
    }
    for (reason, count) in &traffic.invalid_by_reason {
        out.sample(
            packets,
            &[("verdict", "deny"), ("reason", reason)],
            *count as f64,
        );
    }
    let bytes = "nsgd_bytes_total";
    out.family(bytes, Kind::Counter, "Bytes judged, by verdict.")
        .sample(bytes, &[("verdict", "allow")], traffic.bytes_allowed as f64)
        .sample(bytes, &[("verdict", "deny")], traffic.bytes_denied as f64);
    type PortSamples = fn(&PortCounters) -> Vec<(&'static str, u64)>;
    let port_families: [(&str, &str, &str, PortSamples); 6] = [
        (
            "nsgd_port_frames_total",
            "Frames received and sent per port.",
            "direction",
            |c| vec![("rx", c.received), ("tx", c.sent)],
        ),
        (
            "nsgd_port_bytes_total",
            "Bytes received and sent per port.",
            "direction",
            |c| vec![("rx", c.received_bytes), ("tx", c.sent_bytes)],
        ),
        (
            "nsgd_port_drops_total",
            "Frames lost at a port: receive ring full (kernel), transmit side full, too long to send.",
            "reason",
            |c| {
                vec![
                    ("kernel-ring-full", c.kernel_drops),
                    ("transmit-busy", c.transmit_busy),
                    ("oversize", c.oversize),
                ]
            },
        ),
        (
            "nsgd_port_merged_aggregates_total",
            "Receive-offload (GRO/LRO) aggregates taken whole; their wire frames are counted in nsgd_port_frames_total.",
            "direction",
            |c| vec![("rx", c.merged)],
        ),
        (
            "nsgd_port_coalesced_frames_total",
            "Frames sent merged with others of their stream into one aggregate, which the kernel cut back into them; also in nsgd_port_frames_total.",
            "direction",
            |c| vec![("tx", c.coalesced)],
        ),
        (
            "nsgd_port_offloaded_checksums_total",
            "Frames received with their checksum left to offload: completed by nsgd, or forwarded unfinished.",
            "state",
            |c| vec![("completed", c.checksum_completed), ("unfinished", c.checksum_unfinished)],
        ),
    ];
    for (name, help, label, samples) in port_families {
        out.family(name, Kind::Counter, help);
        for port in &report.ports {
            for (value, count) in samples(&port.counters) {
                out.sample(
                    name,
                    &[("port", &port.interface), (label, value)],
                    count as f64,
                );
            }
        }
    }
    let flows = &traffic.flows;
    out.family(
        "nsgd_flows_live",
        Kind::Gauge,
        "Entries in the connection table.",
    )
    .sample("nsgd_flows_live", &[], report.live_flows as f64);
    let flow_events = "nsgd_flows_total";
    out.family(flow_events, Kind::Counter, "Connection-table events.")
        .sample(flow_events, &[("event", "created")], flows.created as f64)
        .sample(flow_events, &[("event", "expired")], flows.expired as f64)
        .sample(flow_events, &[("event", "evicted")], flows.evicted as f64)
        .sample(
            flow_events,
            &[("event", "evicted-established")],
            flows.evicted_established as f64,
        )
        .sample(
            flow_events,
            &[("event", "reevaluated")],
            flows.reevaluated as f64,
        );
    let hits = "nsgd_rule_hits_total";
    out.family(hits, Kind::Counter, "Flows each NSG rule decided.");
    for (nsg, rules) in &traffic.rule_hits {
        for (rule, count) in rules {
            out.sample(hits, &[("nsg", nsg), ("rule", rule)], *count as f64);
        }
    }
    let reloads = "nsgd_reloads_total";
    out.family(
        reloads,
        Kind::Counter,
        "Policy reloads, applied or rejected (old policy kept).",
    )
    .sample(reloads, &[("result", "applied")], report.reloads as f64)
    .sample(
        reloads,
        &[("result", "rejected")],
        report.reloads_rejected as f64,
    );
    out.family(
        "nsgd_policy_generation",
        Kind::Gauge,
        "Policy generation in force (0 = as started).",
    )
    .sample(
        "nsgd_policy_generation",
        &[],
        report.policy_generation as f64,
    );
    out.family(
        "nsgd_uptime_seconds",
        Kind::Gauge,
        "Seconds since the bridge started.",
    )
    .sample("nsgd_uptime_seconds", &[], traffic.elapsed_seconds);
    out.finish()
}
