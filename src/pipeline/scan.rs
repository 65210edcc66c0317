//! The parallel scan: a replay with no reader thread, no channels and no
//! sink, for when nothing needs per-packet capture order.
//!
//! The capture files are mapped once, read-only, and shared by the workers.
//! Walking them is a sequential task (each record header says where the
//! next one starts), done in chunks (of 2048 records) by whichever worker
//! needs the next chunk or is free to walk ahead: it reads the records in
//! place ([`SliceReader`]: no read() copy, no batch copy), computes each
//! frame's shard and files the frame (a borrowed [`Record`], no bytes
//! copied) under the worker that owns the shard (`shard % workers`, as in
//! the ordered pipeline). Every worker then takes every chunk in turn and
//! decides its own frames; the pages of chunks every worker is done with
//! are released from the mapping as they add up. So each worker sees exactly the packets,
//! in exactly the order, that the ordered pipeline gives it, and the report
//! is the same. A single worker walks and decides in one pass.
//!
//! Why a shared walk rather than each worker walking every record: the walk
//! is memory-bound (the records stream through the cache, and the first
//! touch of each page of the mapping takes a page fault); walked by every
//! worker it is paid once per worker, and two workers then reached only
//! 1.4–1.6x one worker on established traffic of 700-byte frames. Shared,
//! it is paid once, split between the workers as they come free, which also
//! evens out the shards' imbalance (one worker may own 60% of the packets).

use std::collections::{HashMap, VecDeque};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, TryLockError};
use std::time::Instant;

use super::{
    complete, dispatch, parse_record, summarise, CaptureProblem, Progress, ReplayError,
    ReplayOptions, ReplayReport, WorkerFinal,
};
use crate::compile::Program;
use crate::dataplane::{Dataplane, SHARDS};
use crate::io::{prefetch, CaptureError, MappedCapture, Record, SliceReader};

/// How the walk is shared out.
#[derive(Debug, Clone, Copy)]
struct Tuning {
    /// Records per chunk: enough that handing chunks over costs little
    /// (smaller chunks measured slower), few enough that a chunk's frames
    /// are still in the cache when they are decided.
    chunk_records: usize,
    /// A worker walks ahead (when the walk is free) until this many chunks
    /// wait past the one it takes.
    lead: u64,
    /// Chunks walked and not yet taken by every worker, at most: bounds
    /// memory when one worker falls behind.
    max_pending: usize,
    /// Bytes the workers are done with that are released at once.
    release_bytes: usize,
}

const TUNING: Tuning = Tuning {
    chunk_records: 2048,
    lead: 2,
    max_pending: 32,
    release_bytes: 16 << 20,
};

/// How many frames ahead a worker prefetches the frames it decides.
const PREFETCH_FRAMES: usize = 4;
/// How often (in records) the walk looks at the clock for the progress line.
const PROGRESS_RECORDS: u64 = 1 << 16;

/// The captures, mapped: each distinct file once, in the order given.
pub(super) struct Plan {
    maps: Vec<MappedCapture>,
    /// Per capture given: its name and the index of its mapping.
    captures: Vec<(String, usize)>,
}

/// Maps the captures when the scan can replay them with `options`; `Ok(Err)`
/// says why not. Fails as the ordered pipeline does (same error, same
/// capture) when a capture cannot be opened or its header is bad.
pub(super) fn plan(
    captures: &[PathBuf],
    options: &ReplayOptions,
) -> Result<Result<Plan, String>, ReplayError> {
    for (output, what) in [
        (&options.allowed_output, "allowed"),
        (&options.denied_output, "denied"),
        (&options.verdicts_output, "verdicts"),
    ] {
        if output.is_some() {
            return Ok(Err(format!(
                "the {what} output keeps capture order, which only the ordered pipeline gives"
            )));
        }
    }
    let open_error = |path: &Path, error: CaptureError| ReplayError::Open {
        path: path.display().to_string(),
        error,
    };
    let mut plan = Plan {
        maps: Vec::new(),
        captures: Vec::new(),
    };
    let mut mapped: HashMap<&Path, usize> = HashMap::new();
    for path in captures {
        let index = match mapped.get(path.as_path()) {
            Some(&index) => index,
            None => {
                let Some(map) = MappedCapture::open(path).map_err(|e| open_error(path, e))? else {
                    return Ok(Err(format!(
                        "{} is not a plain capture file (compressed, or not a regular file)",
                        path.display()
                    )));
                };
                // The header is checked here, as the ordered pipeline checks
                // every capture's before it replays any.
                SliceReader::new(map.bytes()).map_err(|e| open_error(path, e))?;
                plan.maps.push(map);
                mapped.insert(path, plan.maps.len() - 1);
                plan.maps.len() - 1
            }
        };
        plan.captures.push((path.display().to_string(), index));
    }
    Ok(Ok(plan))
}

/// Replays the planned captures with `workers` threads.
pub(super) fn run(
    program: Arc<Program>,
    plan: Plan,
    options: &ReplayOptions,
    workers: usize,
    started: Instant,
) -> Result<ReplayReport, ReplayError> {
    run_tuned(program, plan, options, workers, started, TUNING)
}

fn run_tuned(
    program: Arc<Program>,
    plan: Plan,
    options: &ReplayOptions,
    workers: usize,
    started: Instant,
    tuning: Tuning,
) -> Result<ReplayReport, ReplayError> {
    let mut readers = Vec::with_capacity(plan.captures.len());
    for (name, map) in &plan.captures {
        let reader =
            SliceReader::new(plan.maps[*map].bytes()).map_err(|error| ReplayError::Open {
                path: name.clone(),
                error,
            })?;
        readers.push(Capture {
            name,
            map: *map,
            reader,
        });
    }
    let mut owner = [0u8; SHARDS];
    for (shard, owner) in owner.iter_mut().enumerate() {
        *owner = (shard % workers) as u8;
    }
    let shared = Shared {
        workers,
        tuning,
        owner,
        maps: &plan.maps,
        // A file replayed more than once stays mapped: releasing its pages
        // would only fault them in again for the next pass.
        releasable: (0..plan.maps.len())
            .map(|map| plan.captures.iter().filter(|(_, m)| *m == map).count() == 1)
            .collect(),
        walk: Mutex::new(Walk {
            captures: readers,
            current: 0,
            walked: 0,
            problems: Vec::new(),
            progress: Progress::new(options),
        }),
        board: Mutex::new(Board {
            chunks: VecDeque::new(),
            first: 0,
            finished: false,
            spare: Vec::new(),
            done: Done::new(tuning.release_bytes),
        }),
        room: Condvar::new(),
    };
    let finals = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|worker| {
                let program = Arc::clone(&program);
                let shared = &shared;
                scope.spawn(move || scan_worker(worker, program, shared, options))
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().map_err(|_| ReplayError::ThreadPanicked))
            .collect::<Result<Vec<_>, _>>()
    })?;
    let walk = shared.walk.into_inner().unwrap_or_else(|e| e.into_inner());
    walk.progress.finish();
    let problems = walk.problems;
    drop(shared.board);
    drop(walk.captures);
    // Unmapped inside the timing: tearing down what is left of the mappings
    // is part of the replay's cost.
    drop(plan.maps);
    let report = summarise(&program, finals, options)?;
    let names = plan.captures.into_iter().map(|(name, _)| name).collect();
    Ok(complete(report, names, problems, workers, started))
}

/// A capture being walked.
struct Capture<'a> {
    name: &'a str,
    /// Its mapping, in `Shared::maps`.
    map: usize,
    reader: SliceReader<'a>,
}

/// Bytes of a mapping (its index in `Shared::maps`, the byte range).
type Span = (usize, Range<usize>);

/// The walk through the captures, done by one worker at a time.
struct Walk<'a> {
    captures: Vec<Capture<'a>>,
    /// The capture being walked (`captures.len()` at the end).
    current: usize,
    walked: u64,
    problems: Vec<CaptureProblem>,
    progress: Progress,
}

impl<'a> Walk<'a> {
    /// Walks up to `limit` records, handing each with its shard to `each`,
    /// and notes in `spans` the bytes they came from. Returns `true` when
    /// the captures are done.
    fn walk(
        &mut self,
        limit: usize,
        owner: &[u8; SHARDS],
        spans: &mut Vec<Span>,
        mut each: impl FnMut(u8, usize, Record<'a>),
    ) -> bool {
        let mut count = 0;
        while count < limit {
            let Some(capture) = self.captures.get_mut(self.current) else {
                return true;
            };
            let start = capture.reader.offset() as usize;
            let mut ended = false;
            while count < limit {
                match capture.reader.next_record() {
                    Ok(Some(record)) => {
                        // The parse a dispatch may need is not kept: only
                        // the rare frames the hint cannot place need one,
                        // and their owner parses them again.
                        let (shard, _) = dispatch(&record);
                        each(owner[shard], shard, record);
                        count += 1;
                        self.walked += 1;
                        if self.walked % PROGRESS_RECORDS == 0 {
                            self.progress.update(self.walked);
                        }
                    }
                    Ok(None) => {
                        ended = true;
                        break;
                    }
                    Err(error) => {
                        // The same problem, counted the same way, as the
                        // ordered pipeline's reader reports.
                        self.problems.push(CaptureProblem {
                            capture: capture.name.to_string(),
                            packets_read: capture.reader.records_read(),
                            offset: error.offset(),
                            error: error.to_string(),
                        });
                        ended = true;
                        break;
                    }
                }
            }
            spans.push((capture.map, start..capture.reader.offset() as usize));
            if ended {
                self.current += 1;
            }
        }
        self.current >= self.captures.len()
    }
}

/// One walked chunk: per worker, its frames in capture order, each with its
/// shard; and the bytes they came from.
struct Chunk<'a> {
    frames: Vec<Vec<(u8, Record<'a>)>>,
    spans: Vec<Span>,
}

/// The chunks walked and not yet taken by every worker.
struct Board<'a> {
    /// Each with how many workers have yet to take it; these counts never
    /// increase from front to back, as every worker takes chunks in order.
    chunks: VecDeque<(Arc<Chunk<'a>>, usize)>,
    /// The number of `chunks[0]`.
    first: u64,
    /// No chunk past the board's last will come (the walk ended, or a
    /// worker died and the replay is abandoned).
    finished: bool,
    /// Chunks every worker is done with, for reuse.
    spare: Vec<Chunk<'a>>,
    /// Bytes of chunks every worker is done with, not yet released.
    done: Done,
}

/// Bytes every worker is done with, gathered until there are enough to
/// release at once: each release makes the kernel interrupt the other
/// workers' processors to flush their TLBs.
struct Done {
    spans: Vec<Span>,
    bytes: usize,
    /// Released once this many are gathered.
    threshold: usize,
}

impl Done {
    fn new(threshold: usize) -> Done {
        Done {
            spans: Vec::new(),
            bytes: 0,
            threshold,
        }
    }

    /// Adds `spans`; returns all gathered once they reach the threshold.
    fn add(&mut self, spans: &[Span]) -> Option<Vec<Span>> {
        for (map, range) in spans {
            self.bytes += range.len();
            match self.spans.last_mut() {
                Some((last_map, last)) if last_map == map && last.end == range.start => {
                    last.end = range.end;
                }
                _ => self.spans.push((*map, range.clone())),
            }
        }
        (self.bytes >= self.threshold).then(|| {
            self.bytes = 0;
            std::mem::take(&mut self.spans)
        })
    }
}

struct Shared<'a> {
    workers: usize,
    tuning: Tuning,
    /// The worker that owns each shard.
    owner: [u8; SHARDS],
    maps: &'a [MappedCapture],
    /// Per mapping: whether the pages a chunk is done with can go.
    releasable: Vec<bool>,
    walk: Mutex<Walk<'a>>,
    board: Mutex<Board<'a>>,
    /// Signalled when a chunk leaves the board or the replay is abandoned.
    room: Condvar,
}

/// Locks `mutex` even if a worker panicked holding it: the replay then
/// fails with `ThreadPanicked` anyway, and the other workers need only get
/// out.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl<'a> Shared<'a> {
    /// Chunk `number` (each worker asks for 0, 1, 2, … in turn), walking it
    /// if nobody has; `None` after the last.
    fn take(&self, number: u64) -> Option<Arc<Chunk<'a>>> {
        loop {
            {
                let mut board = lock(&self.board);
                // A chunk leaves the board only once every worker took it.
                let index = (number - board.first) as usize;
                if let Some((chunk, left)) = board.chunks.get_mut(index) {
                    let chunk = Arc::clone(chunk);
                    *left -= 1;
                    let mut freed = false;
                    while board.chunks.front().is_some_and(|(_, left)| *left == 0) {
                        board.chunks.pop_front();
                        board.first += 1;
                        freed = true;
                    }
                    if freed {
                        self.room.notify_all();
                    }
                    let walked = board.first + board.chunks.len() as u64;
                    drop(board);
                    if walked < number + 1 + self.tuning.lead {
                        self.build(false);
                    }
                    return Some(chunk);
                }
                if board.finished {
                    return None;
                }
                if board.chunks.len() >= self.tuning.max_pending {
                    // This worker is far ahead of another: wait for it to
                    // take the oldest chunk.
                    drop(self.room.wait(board).unwrap_or_else(|e| e.into_inner()));
                    continue;
                }
            }
            // Not walked yet: walk it, or wait for whoever is walking.
            self.build(true);
        }
    }

    /// Walks the next chunk onto the board, if there is room. With `wait`
    /// false, gives up rather than wait for another worker's walk. Never
    /// waits for room while it holds the walk: the worker that must make
    /// room may be waiting for the walk.
    fn build(&self, wait: bool) {
        let mut walk = match self.walk.try_lock() {
            Ok(walk) => walk,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) if wait => lock(&self.walk),
            Err(TryLockError::WouldBlock) => return,
        };
        let mut chunk = {
            let mut board = lock(&self.board);
            if board.finished || board.chunks.len() >= self.tuning.max_pending {
                return;
            }
            board.spare.pop().unwrap_or_else(|| Chunk {
                frames: (0..self.workers)
                    .map(|_| Vec::with_capacity(self.tuning.chunk_records))
                    .collect(),
                spans: Vec::new(),
            })
        };
        let frames = &mut chunk.frames;
        let limit = self.tuning.chunk_records;
        let ended = walk.walk(
            limit,
            &self.owner,
            &mut chunk.spans,
            |owner, shard, record| {
                frames[usize::from(owner)].push((shard as u8, record));
            },
        );
        // Published before the walk is let go, so chunks reach the board in
        // the order they were walked.
        let mut board = lock(&self.board);
        drop(walk);
        if chunk.frames.iter().any(|frames| !frames.is_empty()) {
            board.chunks.push_back((Arc::new(chunk), self.workers));
        }
        board.finished |= ended;
    }

    /// Gives back a chunk the worker is done with; the last one to give it
    /// back releases its pages and keeps it for reuse.
    fn give_back(&self, chunk: Arc<Chunk<'a>>) {
        let Some(mut chunk) = Arc::into_inner(chunk) else {
            return;
        };
        for frames in &mut chunk.frames {
            frames.clear();
        }
        let ready = {
            let mut board = lock(&self.board);
            let ready = board.done.add(&chunk.spans);
            chunk.spans.clear();
            board.spare.push(chunk);
            ready
        };
        if let Some(spans) = ready {
            self.release(&spans);
        }
    }

    /// Releases the pages of bytes every worker is done with (those of
    /// records of other spans, on the pages at the ends, are kept).
    fn release(&self, spans: &[Span]) {
        for (map, range) in spans {
            if self.releasable[*map] {
                self.maps[*map].release(range.clone());
            }
        }
    }

    /// Ends the replay early (a worker is dying): no more chunks, and no
    /// worker left waiting for room.
    fn abandon(&self) {
        lock(&self.board).finished = true;
        self.room.notify_all();
    }
}

/// Abandons the replay if its worker unwinds, so the others do not wait for
/// it forever.
struct AbandonOnPanic<'s, 'a>(&'s Shared<'a>);

impl Drop for AbandonOnPanic<'_, '_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.abandon();
        }
    }
}

/// One worker: every chunk taken in turn (and walked when it is its turn),
/// its own frames decided.
fn scan_worker(
    worker: usize,
    program: Arc<Program>,
    shared: &Shared<'_>,
    options: &ReplayOptions,
) -> WorkerFinal {
    let _guard = AbandonOnPanic(shared);
    let workers = shared.workers;
    let mut dataplane = Dataplane::new(program, 0, options.dataplane, |shard| {
        shard % workers == worker
    });
    let mut decide = |shard: usize, record: &Record<'_>| {
        let parsed = parse_record(record, None);
        dataplane.decide(shard, &parsed, record.orig_len, record.timestamp_ns);
    };
    if workers == 1 {
        // Nothing to share: walk and decide in one pass, each frame still
        // in the cache from its dispatch.
        let mut walk = lock(&shared.walk);
        let mut spans = Vec::new();
        let mut done = Done::new(shared.tuning.release_bytes);
        loop {
            let limit = shared.tuning.chunk_records;
            let ended = walk.walk(limit, &shared.owner, &mut spans, |_, shard, record| {
                decide(shard, &record);
            });
            if let Some(ready) = done.add(&spans) {
                shared.release(&ready);
            }
            spans.clear();
            if ended {
                break;
            }
        }
    } else {
        let mut number = 0u64;
        while let Some(chunk) = shared.take(number) {
            let frames = &chunk.frames[worker];
            for (index, (shard, record)) in frames.iter().enumerate() {
                // The chunk may have been walked a while ago: ask for the
                // next frames early rather than wait for each in turn.
                if let Some((_, ahead)) = frames.get(index + PREFETCH_FRAMES) {
                    prefetch(ahead.data, 0);
                }
                decide(usize::from(*shard), record);
            }
            shared.give_back(chunk);
            number += 1;
        }
    }
    WorkerFinal::of(dataplane)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The default options (those of `nsgd bench`, and of `nsgd replay`
    /// without outputs) take the scan; a flow log does not need order.
    #[test]
    fn the_scan_serves_replays_without_ordered_outputs() {
        let capture = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("pcaps/hub-spoke-small.pcap");
        let captures = [capture.clone(), capture];
        let takes_scan = |options: &ReplayOptions| plan(&captures, options).unwrap().is_ok();
        assert!(takes_scan(&ReplayOptions::default()));
        assert!(takes_scan(&ReplayOptions {
            flow_log_output: Some(PathBuf::from("flows.json")),
            ..ReplayOptions::default()
        }));
        for options in [
            ReplayOptions {
                allowed_output: Some(PathBuf::from("allowed.pcap")),
                ..ReplayOptions::default()
            },
            ReplayOptions {
                denied_output: Some(PathBuf::from("denied.pcap")),
                ..ReplayOptions::default()
            },
            ReplayOptions {
                verdicts_output: Some(PathBuf::from("verdicts.jsonl")),
                ..ReplayOptions::default()
            },
        ] {
            assert!(!takes_scan(&options));
        }
        // The same file twice is mapped once.
        let plan = plan(&captures, &ReplayOptions::default()).unwrap().unwrap();
        assert_eq!(plan.maps.len(), 1);
        assert_eq!(plan.captures.len(), 2);
    }

    /// Tiny chunks and a short board make the workers hand the walk over,
    /// overtake each other and wait for room all the time; the report must
    /// not notice.
    #[test]
    fn any_sharing_of_the_walk_gives_the_same_report() {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let policy = crate::policy::load(&root.join("configs/hub-spoke.yaml")).unwrap();
        let program = Arc::new(Program::compile(&policy).unwrap());
        // One file twice (kept mapped), the others released as they go.
        let captures = [
            root.join("pcaps/hub-spoke-small.pcap"),
            root.join("../shared/pcaps/damaged-record-header.pcap"),
            root.join("pcaps/hub-spoke-dual-stack.pcap"),
            root.join("pcaps/hub-spoke-small.pcap"),
        ];
        let options = ReplayOptions {
            path: super::super::ReplayPath::Ordered,
            dataplane: crate::dataplane::DataplaneConfig {
                flow_log: true,
                ..Default::default()
            },
            ..ReplayOptions::default()
        };
        let comparable = |mut report: ReplayReport| {
            report.elapsed_seconds = 0.0;
            report.packets_per_second = 0.0;
            serde_json::to_value(report).unwrap()
        };
        let expected =
            comparable(super::super::replay(Arc::clone(&program), &captures, &options).unwrap());
        assert_eq!(expected["capture_problems"].as_array().unwrap().len(), 1);
        let tunings = [
            (1, 0, 1, 1),
            (3, 1, 2, 5000),
            (7, 4, 3, 1 << 20),
            (64, 2, 32, 0),
        ];
        // Each thrice: the interleavings differ from run to run.
        for (chunk_records, lead, max_pending, release_bytes) in tunings.repeat(3) {
            for workers in 1..=4 {
                let tuning = Tuning {
                    chunk_records,
                    lead,
                    max_pending,
                    release_bytes,
                };
                let plan = plan(&captures, &options).unwrap().unwrap();
                let report = run_tuned(
                    Arc::clone(&program),
                    plan,
                    &options,
                    workers,
                    Instant::now(),
                    tuning,
                )
                .unwrap();
                let mut expected = expected.clone();
                expected["workers"] = workers.into();
                assert_eq!(
                    comparable(report),
                    expected,
                    "{tuning:?}, {workers} workers"
                );
            }
        }
    }
}
