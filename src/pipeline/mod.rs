//! The replay pipelines. Results do not depend on the number of workers or
//! the pipeline: shards, not workers, own the flow state, and each worker
//! decides the packets of the shards it owns in capture order.
//!
//! - The ordered pipeline: a reader thread fills batches of frames and
//!   parses them, N workers decide the packets of the shards they own, and a
//!   sink puts the verdicts back in capture order and writes the outputs.
//!   Batches travel over bounded crossbeam channels and come back to the
//!   reader for reuse, so steady state allocates nothing per packet.
//! - The parallel scan (`scan`), used when nothing needs per-packet capture
//!   order (no allowed, denied or verdicts output; a flow log is sorted
//!   anyway) and every capture is a plain pcap or pcapng file: the workers
//!   walk the mapped files in place, taking turns, and each decides the
//!   frames of its own shards; no reader thread, no copies, no sink.

pub mod bench;
pub mod live;
mod scan;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender};
use serde::Serialize;

use crate::compile::Program;
use crate::dataplane::{
    shard_hint, shard_of, Counters, Dataplane, DataplaneConfig, PacketVerdict, Reason, SHARDS,
};
use crate::io::{CaptureError, CaptureReader, PcapWriter, Record, RecordBatch, TimestampPrecision};
use crate::packet::{parse, LinkType, Parsed};
use crate::telemetry::flow_log::{self, FlowEvent};

/// Frames per batch: large enough to amortise channel hand-offs, small
/// enough to keep a batch in cache.
pub const BATCH_RECORDS: usize = 1024;
const BATCH_BYTES: usize = 1024 * 1024;

/// What to replay and where to write.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    pub workers: usize,
    pub dataplane: DataplaneConfig,
    pub allowed_output: Option<PathBuf>,
    pub denied_output: Option<PathBuf>,
    pub verdicts_output: Option<PathBuf>,
    pub flow_log_output: Option<PathBuf>,
    /// Draw a progress line on standard error (when it is a terminal).
    pub progress: bool,
    /// Which pipeline replays (the results are the same).
    pub path: ReplayPath,
}

/// Which pipeline [`replay`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReplayPath {
    /// The parallel scan when it can serve the options and captures, else
    /// the ordered pipeline.
    #[default]
    Auto,
    /// The ordered pipeline (reader, workers, sink), whatever the options.
    Ordered,
    /// The parallel scan, or [`ReplayError::ScanUnavailable`] when it cannot
    /// serve the options or captures.
    Scan,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        ReplayOptions {
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            dataplane: DataplaneConfig::default(),
            allowed_output: None,
            denied_output: None,
            verdicts_output: None,
            flow_log_output: None,
            progress: false,
            path: ReplayPath::Auto,
        }
    }
}

/// A capture that ended early, and where.
#[derive(Debug, Clone, Serialize)]
pub struct CaptureProblem {
    pub capture: String,
    pub packets_read: u64,
    pub error: String,
    pub offset: Option<u64>,
}

/// Flow-table figures of a replay.
#[derive(Debug, Clone, Serialize, Default)]
pub struct FlowSummary {
    pub created: u64,
    pub evicted: u64,
    pub evicted_established: u64,
    pub expired: u64,
    pub live_at_end: u64,
    pub reevaluated: u64,
}

/// The result of a replay: every packet in is accounted for by reason.
#[derive(Debug, Clone, Serialize)]
pub struct ReplayReport {
    pub packets_in: u64,
    pub bytes_in: u64,
    pub packets_allowed: u64,
    pub bytes_allowed: u64,
    pub packets_denied: u64,
    pub bytes_denied: u64,
    pub allowed_by_reason: BTreeMap<String, u64>,
    /// Dropped packets by reason: `rule`, `invalid` (frames that could not
    /// be judged; detail in `invalid_by_reason`), `orphan-fragment`,
    /// `flow-table-full`, `strict-tcp`, `unrelated-icmp-error`, `non-ip`.
    /// The values add up to `packets_denied`.
    pub denied_by_reason: BTreeMap<String, u64>,
    /// The `invalid` drops by parser reason (`truncated-ipv4`, …).
    pub invalid_by_reason: BTreeMap<String, u64>,
    /// NSG → rule → flows it decided.
    pub rule_hits: RuleHits,
    pub flows: FlowSummary,
    pub flow_log_records_skipped: u64,
    /// Packets an `--allowed`/`--denied` pcap could not hold: a pcap has one
    /// link type (its first packet's), so in a capture mixing link types
    /// (pcapng) packets of the others are left out of it, and counted here.
    pub packets_not_written: u64,
    pub captures: Vec<String>,
    pub capture_problems: Vec<CaptureProblem>,
    pub workers: usize,
    pub elapsed_seconds: f64,
    pub packets_per_second: f64,
}

/// Why a replay could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("{}", open_message(path, error))]
    Open { path: String, error: CaptureError },
    #[error("cannot write {path}: {error}")]
    Output { path: String, error: std::io::Error },
    #[error("a pipeline thread stopped unexpectedly")]
    ThreadPanicked,
    #[error("the parallel scan cannot replay this: {reason}")]
    ScanUnavailable { reason: String },
}

/// The reader's open error names the file already; other errors do not.
fn open_message(path: &str, error: &CaptureError) -> String {
    match error {
        CaptureError::Open { .. } => error.to_string(),
        _ => format!("{path}: {error}"),
    }
}

/// One batch in flight: the raw frames, their parse and their shard.
struct Batch {
    sequence: u64,
    first_index: u64,
    records: RecordBatch,
    /// The reader's parse, for frames whose shard needed one; the workers
    /// parse the others themselves (see `shard_hint`).
    parsed: Vec<Option<Parsed>>,
    shards: Vec<u8>,
    /// Per worker, the positions of the frames it decides.
    positions: Vec<Vec<u32>>,
}

impl Batch {
    fn new() -> Batch {
        Batch {
            sequence: 0,
            first_index: 0,
            records: RecordBatch::with_capacity(BATCH_RECORDS, BATCH_BYTES),
            parsed: Vec::with_capacity(BATCH_RECORDS),
            shards: Vec::with_capacity(BATCH_RECORDS),
            positions: Vec::new(),
        }
    }
}

/// A worker's verdicts for one batch: (position in batch, verdict). The
/// sink sends the emptied vector back to the worker for reuse.
struct WorkerResult {
    worker: usize,
    sequence: u64,
    verdicts: Vec<(u32, PacketVerdict)>,
}

enum ToSink {
    Batch(Arc<Batch>),
    Verdicts(WorkerResult),
    /// A worker is done: its counters and flow-log events.
    Done(Box<WorkerFinal>),
}

struct WorkerFinal {
    counters: Counters,
    flow_events: Vec<FlowEvent>,
    stats: crate::conntrack::ConntrackStats,
    live: u64,
}

impl WorkerFinal {
    /// What a worker's dataplane leaves once every packet is decided.
    fn of(mut dataplane: Dataplane) -> WorkerFinal {
        dataplane.finish();
        WorkerFinal {
            stats: dataplane.conntrack_stats(),
            live: dataplane.live_flows() as u64,
            flow_events: std::mem::take(&mut dataplane.flow_events),
            counters: dataplane.counters,
        }
    }
}

/// The progress line on standard error, when asked for and a terminal.
struct Progress {
    enabled: bool,
    started: Instant,
    last: Instant,
}

impl Progress {
    fn new(options: &ReplayOptions) -> Progress {
        Progress {
            enabled: options.progress && std::io::stderr().is_terminal(),
            started: Instant::now(),
            last: Instant::now(),
        }
    }

    /// Redraws the line (at most four times a second) with `done` packets.
    fn update(&mut self, done: u64) {
        if self.enabled && self.last.elapsed() > Duration::from_millis(250) {
            self.last = Instant::now();
            let rate = done as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
            eprint!("\r{done} packets, {:.2} M packets/s", rate / 1e6);
        }
    }

    fn finish(&self) {
        if self.enabled {
            eprintln!();
        }
    }
}

fn open_output(path: &Path) -> Result<BufWriter<File>, ReplayError> {
    File::create(path)
        .map(|f| BufWriter::with_capacity(1 << 20, f))
        .map_err(|error| ReplayError::Output {
            path: path.display().to_string(),
            error,
        })
}

/// Replays captures through the program. Every packet of every capture is
/// decided; outputs keep capture order. Runs the pipeline `options.path`
/// names (by default the parallel scan where it applies).
pub fn replay(
    program: Arc<Program>,
    captures: &[PathBuf],
    options: &ReplayOptions,
) -> Result<ReplayReport, ReplayError> {
    let started = Instant::now();
    let workers = options.workers.clamp(1, SHARDS);
    if options.path != ReplayPath::Ordered {
        match scan::plan(captures, options)? {
            Ok(plan) => return scan::run(program, plan, options, workers, started),
            Err(reason) if options.path == ReplayPath::Scan => {
                return Err(ReplayError::ScanUnavailable { reason })
            }
            Err(_) => {}
        }
    }
    replay_ordered(program, captures, options, workers, started)
}

/// The ordered pipeline: reader, workers, sink.
fn replay_ordered(
    program: Arc<Program>,
    captures: &[PathBuf],
    options: &ReplayOptions,
    workers: usize,
    started: Instant,
) -> Result<ReplayReport, ReplayError> {
    // Open every capture first so a typo fails before any work.
    let mut readers = Vec::new();
    for path in captures {
        let reader = CaptureReader::open(path).map_err(|error| ReplayError::Open {
            path: path.display().to_string(),
            error,
        })?;
        readers.push((path.display().to_string(), reader));
    }

    let (recycle_tx, recycle_rx) = bounded::<Batch>(workers * 4 + 8);
    let (sink_tx, sink_rx) = bounded::<ToSink>(workers * 8 + 16);
    let mut worker_txs: Vec<Sender<Arc<Batch>>> = Vec::new();
    let mut spare_vec_txs: Vec<Sender<Vec<(u32, PacketVerdict)>>> = Vec::new();
    let mut worker_handles = Vec::new();
    for worker in 0..workers {
        let (tx, rx) = bounded::<Arc<Batch>>(8);
        let (spare_tx, spare_rx) = bounded::<Vec<(u32, PacketVerdict)>>(32);
        worker_txs.push(tx);
        spare_vec_txs.push(spare_tx);
        let program = Arc::clone(&program);
        let config = options.dataplane;
        let sink = sink_tx.clone();
        worker_handles.push(std::thread::spawn(move || {
            run_worker(worker, workers, program, config, rx, spare_rx, sink);
        }));
    }

    let sink_options = options.clone();
    let sink_program = Arc::clone(&program);
    let sink = std::thread::spawn(move || {
        run_sink(
            sink_program,
            workers,
            sink_rx,
            recycle_tx,
            spare_vec_txs,
            &sink_options,
        )
    });

    // The reader: this thread.
    let mut problems = Vec::new();
    let mut names = Vec::new();
    let mut sequence = 0u64;
    let mut next_index = 0u64;
    let mut spare: Vec<Batch> = Vec::new();
    'captures: for (name, mut reader) in readers {
        names.push(name.clone());
        loop {
            let mut batch = spare
                .pop()
                .or_else(|| recycle_rx.try_recv().ok())
                .unwrap_or_else(Batch::new);
            let count = match reader.read_batch(&mut batch.records) {
                Ok(count) => count,
                Err(error) => {
                    problems.push(CaptureProblem {
                        capture: name.clone(),
                        packets_read: reader.records_read(),
                        offset: error.offset(),
                        error: error.to_string(),
                    });
                    spare.push(batch);
                    continue 'captures;
                }
            };
            if count == 0 {
                spare.push(batch);
                continue 'captures;
            }
            batch.parsed.clear();
            batch.shards.clear();
            batch.positions.resize_with(workers, Vec::new);
            for positions in &mut batch.positions {
                positions.clear();
            }
            for (position, record) in batch.records.iter().enumerate() {
                let (shard, parsed) = dispatch(&record);
                batch.positions[shard % workers].push(position as u32);
                batch.shards.push(shard as u8);
                batch.parsed.push(parsed);
            }
            batch.sequence = sequence;
            batch.first_index = next_index;
            sequence += 1;
            next_index += count as u64;
            let shared = Arc::new(batch);
            if sink_tx.send(ToSink::Batch(Arc::clone(&shared))).is_err() {
                break 'captures;
            }
            for tx in &worker_txs {
                if tx.send(Arc::clone(&shared)).is_err() {
                    break 'captures;
                }
            }
        }
    }
    drop(worker_txs);
    drop(sink_tx);
    for handle in worker_handles {
        handle.join().map_err(|_| ReplayError::ThreadPanicked)?;
    }
    let report = sink.join().map_err(|_| ReplayError::ThreadPanicked)??;
    Ok(complete(report, names, problems, workers, started))
}

/// Fills in what the workers' counters do not say.
fn complete(
    mut report: ReplayReport,
    captures: Vec<String>,
    problems: Vec<CaptureProblem>,
    workers: usize,
    started: Instant,
) -> ReplayReport {
    report.captures = captures;
    report.capture_problems = problems;
    report.workers = workers;
    report.elapsed_seconds = started.elapsed().as_secs_f64();
    report.packets_per_second = report.packets_in as f64 / report.elapsed_seconds.max(1e-9);
    report
}

/// A frame's shard, and its parse when the shard needed one: frames that
/// `shard_hint` dispatches are left for their worker to parse.
#[inline]
fn dispatch(record: &Record<'_>) -> (usize, Option<Parsed>) {
    match LinkType::from_linktype(record.link_type) {
        Ok(link) => match shard_hint(link, record.data) {
            Some(shard) => (shard, None),
            None => {
                let parsed = parse(link, record.data);
                (shard_of(&parsed), Some(parsed))
            }
        },
        Err(reason) => (0, Some(Parsed::Drop(reason))),
    }
}

/// A frame's parse: `parsed` if dispatching it took one, else a fresh one.
#[inline]
fn parse_record(record: &Record<'_>, parsed: Option<Parsed>) -> Parsed {
    match parsed {
        Some(parsed) => parsed,
        // The dispatch found the shard without parsing: the link type is one
        // `shard_hint` accepts.
        None => match LinkType::from_linktype(record.link_type) {
            Ok(link) => parse(link, record.data),
            Err(reason) => Parsed::Drop(reason),
        },
    }
}

fn run_worker(
    worker: usize,
    workers: usize,
    program: Arc<Program>,
    config: DataplaneConfig,
    batches: Receiver<Arc<Batch>>,
    spare_vectors: Receiver<Vec<(u32, PacketVerdict)>>,
    sink: Sender<ToSink>,
) {
    let mut dataplane = Dataplane::new(program, 0, config, |shard| shard % workers == worker);
    for batch in batches {
        let mut verdicts = spare_vectors
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(BATCH_RECORDS));
        verdicts.clear();
        for &position in &batch.positions[worker] {
            let index = position as usize;
            let Some(record) = batch.records.get(index) else {
                continue;
            };
            let parsed = parse_record(&record, batch.parsed[index]);
            let verdict = dataplane.decide(
                usize::from(batch.shards[index]),
                &parsed,
                record.orig_len,
                record.timestamp_ns,
            );
            verdicts.push((position, verdict));
        }
        let sequence = batch.sequence;
        drop(batch);
        if sink
            .send(ToSink::Verdicts(WorkerResult {
                worker,
                sequence,
                verdicts,
            }))
            .is_err()
        {
            return;
        }
    }
    let _ = sink.send(ToSink::Done(Box::new(WorkerFinal::of(dataplane))));
}

struct Outputs {
    allowed: Option<PcapWriter<BufWriter<File>>>,
    denied: Option<PcapWriter<BufWriter<File>>>,
    verdicts: Option<BufWriter<File>>,
    /// Packets of another link type than their output pcap's.
    not_written: u64,
}

fn run_sink(
    program: Arc<Program>,
    workers: usize,
    inbox: Receiver<ToSink>,
    recycle: Sender<Batch>,
    spare_vectors: Vec<Sender<Vec<(u32, PacketVerdict)>>>,
    options: &ReplayOptions,
) -> Result<ReplayReport, ReplayError> {
    let mut outputs = Outputs {
        allowed: None,
        denied: None,
        verdicts: match &options.verdicts_output {
            Some(path) => Some(open_output(path)?),
            None => None,
        },
        not_written: 0,
    };
    let mut pending_batches: BTreeMap<u64, Arc<Batch>> = BTreeMap::new();
    let mut pending_verdicts: BTreeMap<u64, Vec<WorkerResult>> = BTreeMap::new();
    let mut next_sequence = 0u64;
    let mut finals: Vec<WorkerFinal> = Vec::new();
    let mut ordered: Vec<Option<PacketVerdict>> = Vec::with_capacity(BATCH_RECORDS);
    let mut packets_done = 0u64;
    let mut progress = Progress::new(options);

    for message in inbox {
        match message {
            ToSink::Batch(batch) => {
                pending_batches.insert(batch.sequence, batch);
            }
            ToSink::Verdicts(result) => {
                pending_verdicts
                    .entry(result.sequence)
                    .or_default()
                    .push(result);
            }
            ToSink::Done(done) => finals.push(*done),
        }
        // Emit every batch whose verdicts are all in, in sequence order.
        while pending_verdicts
            .get(&next_sequence)
            .is_some_and(|v| v.len() == workers)
            && pending_batches.contains_key(&next_sequence)
        {
            let results = pending_verdicts.remove(&next_sequence).unwrap_or_default();
            let Some(batch) = pending_batches.remove(&next_sequence) else {
                break;
            };
            ordered.clear();
            ordered.resize(batch.parsed.len(), None);
            for mut result in results {
                for &(position, verdict) in &result.verdicts {
                    ordered[position as usize] = Some(verdict);
                }
                result.verdicts.clear();
                let _ = spare_vectors[result.worker].try_send(result.verdicts);
            }
            write_batch(&program, &batch, &ordered, &mut outputs, options)?;
            packets_done += batch.parsed.len() as u64;
            next_sequence += 1;
            if let Ok(batch) = Arc::try_unwrap(batch) {
                let _ = recycle.try_send(batch);
            }
            progress.update(packets_done);
        }
    }
    progress.finish();

    for (writer, path) in [
        (outputs.allowed.take(), &options.allowed_output),
        (outputs.denied.take(), &options.denied_output),
    ] {
        let Some(path) = path else { continue };
        // An output no packet went to is still written (empty), replacing
        // any older file, so a caller can rely on it.
        let writer = match writer {
            Some(writer) => writer,
            None => PcapWriter::new(open_output(path)?, 1, TimestampPrecision::Nanoseconds)
                .map_err(|error| ReplayError::Output {
                    path: path.display().to_string(),
                    error,
                })?,
        };
        writer
            .finish()
            .and_then(|mut w| w.flush())
            .map_err(|error| ReplayError::Output {
                path: path.display().to_string(),
                error,
            })?;
    }
    if let (Some(mut verdicts), Some(path)) = (outputs.verdicts.take(), &options.verdicts_output) {
        verdicts.flush().map_err(|error| ReplayError::Output {
            path: path.display().to_string(),
            error,
        })?;
    }

    let mut report = summarise(&program, finals, options)?;
    report.packets_not_written = outputs.not_written;
    Ok(report)
}

/// The report of the workers' final figures (in any order), and the flow
/// log written if asked for.
fn summarise(
    program: &Program,
    finals: Vec<WorkerFinal>,
    options: &ReplayOptions,
) -> Result<ReplayReport, ReplayError> {
    let mut counters = Counters::new(program.total_rule_slots());
    let mut events = Vec::new();
    let mut flows = FlowSummary::default();
    for done in finals {
        counters.add(&done.counters);
        events.extend(done.flow_events);
        flows.evicted += done.stats.evictions();
        flows.evicted_established += done.stats.evicted_established;
        flows.expired += done.stats.expirations;
        flows.live_at_end += done.live;
    }
    flows.created = counters.flows_created;
    flows.reevaluated = counters.reevaluated;
    let mut skipped = 0;
    if let Some(path) = &options.flow_log_output {
        let (text, unwritten) = flow_log::render(events);
        skipped = unwritten as u64;
        std::fs::write(path, text).map_err(|error| ReplayError::Output {
            path: path.display().to_string(),
            error,
        })?;
    }
    Ok(report_from(
        program,
        &counters,
        flows,
        skipped,
        options.dataplane.pass_non_ip,
    ))
}

fn write_batch(
    program: &Program,
    batch: &Batch,
    verdicts: &[Option<PacketVerdict>],
    outputs: &mut Outputs,
    options: &ReplayOptions,
) -> Result<(), ReplayError> {
    for (position, (record, verdict)) in batch.records.iter().zip(verdicts).enumerate() {
        // Every position was decided by exactly one worker.
        let Some(verdict) = verdict else { continue };
        let (slot, path) = if verdict.allowed {
            (&mut outputs.allowed, &options.allowed_output)
        } else {
            (&mut outputs.denied, &options.denied_output)
        };
        if let Some(path) = path {
            if slot.is_none() {
                let writer = PcapWriter::new(
                    open_output(path)?,
                    record.link_type,
                    TimestampPrecision::Nanoseconds,
                )
                .map_err(|error| ReplayError::Output {
                    path: path.display().to_string(),
                    error,
                })?;
                *slot = Some(writer);
            }
            if let Some(writer) = slot {
                if writer.link_type() != record.link_type {
                    outputs.not_written += 1;
                } else {
                    writer
                        .write_record(&record)
                        .map_err(|error| ReplayError::Output {
                            path: path.display().to_string(),
                            error,
                        })?;
                }
            }
        }
        if let (Some(out), Some(path)) = (&mut outputs.verdicts, &options.verdicts_output) {
            write_verdict(out, program, batch.first_index + position as u64, verdict).map_err(
                |error| ReplayError::Output {
                    path: path.display().to_string(),
                    error,
                },
            )?;
        }
    }
    Ok(())
}

fn write_verdict(
    out: &mut impl Write,
    program: &Program,
    index: u64,
    verdict: &PacketVerdict,
) -> std::io::Result<()> {
    write!(
        out,
        "{{\"index\":{index},\"verdict\":\"{}\",\"reason\":\"{}\"",
        if verdict.allowed { "allow" } else { "deny" },
        verdict.reason.as_str()
    )?;
    if let Some((table, rule)) = verdict.rule {
        if let Some(table) = program.tables().get(table as usize) {
            if let Some(rule) = table.rules.get(rule as usize) {
                out.write_all(b",\"nsg\":")?;
                serde_json::to_writer(&mut *out, program.nsg_name(table.nsg as u32))?;
                out.write_all(b",\"rule\":")?;
                serde_json::to_writer(&mut *out, &rule.name)?;
            }
        }
    }
    out.write_all(b"}\n")
}

/// NSG → rule → flows it decided.
pub type RuleHits = BTreeMap<String, BTreeMap<String, u64>>;

/// Adds per-slot hit counts of `program` (see `Program::rule_slot`) to
/// name-keyed totals, which survive a reload that renumbers the slots.
pub(crate) fn add_rule_hits(program: &Program, hits: &[u64], into: &mut RuleHits) {
    for (table_index, table) in program.tables().iter().enumerate() {
        for (rule_index, rule) in table.rules.iter().enumerate() {
            let slot = program.rule_slot(table_index as u32, rule_index as u32);
            let count = hits.get(slot).copied().unwrap_or(0);
            if count > 0 {
                *into
                    .entry(program.nsg_name(table.nsg as u32).to_string())
                    .or_default()
                    .entry(rule.name.clone())
                    .or_default() += count;
            }
        }
    }
}

pub(crate) fn report_from(
    program: &Program,
    counters: &Counters,
    flows: FlowSummary,
    skipped: u64,
    pass_non_ip: bool,
) -> ReplayReport {
    let mut allowed_by_reason = BTreeMap::new();
    let mut denied_by_reason: BTreeMap<String, u64> = BTreeMap::new();
    let mut invalid_by_reason = BTreeMap::new();
    let (mut packets_allowed, mut bytes_allowed, mut packets_denied, mut bytes_denied) =
        (0, 0, 0, 0);
    for reason in Reason::all() {
        let index = reason.index();
        let (packets, bytes) = (counters.packets[index], counters.bytes[index]);
        if packets == 0 {
            continue;
        }
        if reason.passes(pass_non_ip) {
            packets_allowed += packets;
            bytes_allowed += bytes;
            allowed_by_reason.insert(reason.as_str().to_string(), packets);
        } else {
            packets_denied += packets;
            bytes_denied += bytes;
            if let Reason::Invalid(_) = reason {
                *denied_by_reason.entry("invalid".to_string()).or_default() += packets;
                invalid_by_reason.insert(reason.as_str().to_string(), packets);
            } else {
                denied_by_reason.insert(reason.as_str().to_string(), packets);
            }
        }
    }
    let mut rule_hits = RuleHits::new();
    add_rule_hits(program, &counters.rule_hits, &mut rule_hits);
    ReplayReport {
        packets_in: packets_allowed + packets_denied,
        bytes_in: bytes_allowed + bytes_denied,
        packets_allowed,
        bytes_allowed,
        packets_denied,
        bytes_denied,
        allowed_by_reason,
        denied_by_reason,
        invalid_by_reason,
        rule_hits,
        flows,
        flow_log_records_skipped: skipped,
        packets_not_written: 0,
        captures: Vec::new(),
        capture_problems: Vec::new(),
        workers: 0,
        elapsed_seconds: 0.0,
        packets_per_second: 0.0,
    }
}
