//! The parallel scan and the ordered pipeline give the same report (every
//! field but the timings) and the same flow log, for every capture of the
//! corpus and of pcaps/, damaged ones included, with 1, 2 and 3 workers; and
//! `replay` picks the scan only where it can serve.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use nsgd::compile::Program;
use nsgd::dataplane::DataplaneConfig;
use nsgd::io::{PcapWriter, TimestampPrecision};
use nsgd::pipeline::{replay, ReplayError, ReplayOptions, ReplayPath, ReplayReport};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn program(policy: &str) -> Arc<Program> {
    let policy = nsgd::policy::load(&root().join(policy)).unwrap();
    Arc::new(Program::compile(&policy).unwrap())
}

/// Every capture of ../shared/pcaps and pcaps/, with the policy to judge it.
fn captures() -> Vec<(PathBuf, &'static str)> {
    let mut captures = Vec::new();
    for (dir, policy) in [
        ("../shared/pcaps", "configs/lan-lab.yaml"),
        ("pcaps", "configs/hub-spoke.yaml"),
    ] {
        let dir = root().join(dir);
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let mut files: Vec<PathBuf> = entries
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "pcap" || e == "pcapng"))
            .collect();
        files.sort();
        captures.extend(files.into_iter().map(|file| (file, policy)));
    }
    assert!(captures.len() >= 33, "{captures:?}");
    captures
}

/// The report as JSON, without the fields that measure time.
fn comparable(report: &ReplayReport) -> serde_json::Value {
    let mut value = serde_json::to_value(report).unwrap();
    let object = value.as_object_mut().unwrap();
    for timing in ["elapsed_seconds", "packets_per_second"] {
        assert!(object.remove(timing).is_some(), "{timing}");
    }
    value
}

struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("nsgd-paths-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Replays `captures` down `path` with `workers`, with a flow log; the
/// comparable report and the flow log's text.
fn run(
    program: &Arc<Program>,
    captures: &[PathBuf],
    path: ReplayPath,
    workers: usize,
    flow_log: &Path,
) -> (serde_json::Value, String) {
    let options = ReplayOptions {
        workers,
        path,
        flow_log_output: Some(flow_log.to_path_buf()),
        dataplane: DataplaneConfig {
            flow_log: true,
            ..DataplaneConfig::default()
        },
        ..ReplayOptions::default()
    };
    let report = replay(Arc::clone(program), captures, &options)
        .unwrap_or_else(|e| panic!("{captures:?} {path:?} {workers}: {e}"));
    assert_eq!(report.workers, workers);
    (
        comparable(&report),
        std::fs::read_to_string(flow_log).unwrap(),
    )
}

#[test]
fn scan_and_ordered_pipeline_agree_on_every_capture() {
    let scratch = Scratch::new("each");
    let log = scratch.0.join("flows.json");
    let mut damaged = 0;
    for (capture, policy) in captures() {
        let program = program(policy);
        let captures = [capture.clone()];
        let (expected, expected_log) = run(&program, &captures, ReplayPath::Ordered, 1, &log);
        if !expected["capture_problems"].as_array().unwrap().is_empty() {
            damaged += 1;
        }
        for workers in [1, 2, 3] {
            let (ordered, ordered_log) =
                run(&program, &captures, ReplayPath::Ordered, workers, &log);
            let (scan, scan_log) = run(&program, &captures, ReplayPath::Scan, workers, &log);
            let mut expected = expected.clone();
            expected["workers"] = workers.into();
            assert_eq!(
                ordered,
                expected,
                "{}: {workers} workers",
                capture.display()
            );
            assert_eq!(scan, expected, "{}: {workers} workers", capture.display());
            assert_eq!(ordered_log, expected_log, "{}", capture.display());
            assert_eq!(scan_log, expected_log, "{}", capture.display());
        }
    }
    assert!(damaged >= 2, "the corpus has two damaged captures");
}

#[test]
fn scan_and_ordered_pipeline_agree_on_several_captures_in_one_replay() {
    let scratch = Scratch::new("several");
    let log = scratch.0.join("flows.json");
    let shared = root().join("../shared/pcaps");
    // A damaged capture between good ones, a capture twice (mapped once),
    // several link types and a pcapng with two timestamp resolutions.
    let captures: Vec<PathBuf> = [
        "http-get-dpkt.pcap",
        "damaged-record-header.pcap",
        "sll-mixed.pcap",
        "pcapng-2if-ns-and-us.pcapng",
        "cut-short-dns.pcap",
        "rawip-v4-v6-mixed.pcap",
        "http-get-dpkt.pcap",
        "real-lan-1h.pcap",
        "real-lan-1h.pcap",
    ]
    .iter()
    .map(|name| shared.join(name))
    .collect();
    let program = program("configs/lan-lab.yaml");
    let (expected, expected_log) = run(&program, &captures, ReplayPath::Ordered, 1, &log);
    assert_eq!(
        expected["capture_problems"].as_array().unwrap().len(),
        2,
        "{expected}"
    );
    for workers in [1, 2, 3] {
        let (scan, scan_log) = run(&program, &captures, ReplayPath::Scan, workers, &log);
        let mut expected = expected.clone();
        expected["workers"] = workers.into();
        assert_eq!(scan, expected, "{workers} workers");
        assert_eq!(scan_log, expected_log, "{workers} workers");
    }
}

#[test]
fn the_scan_runs_only_where_it_can_serve() {
    let scratch = Scratch::new("choice");
    let program = program("configs/lan-lab.yaml");
    let plain = root().join("../shared/pcaps/dns-icmp-ping.pcap");
    let gzip = scratch.0.join("dns-icmp-ping.pcap.gz");
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut encoder, &std::fs::read(&plain).unwrap()).unwrap();
    std::fs::write(&gzip, encoder.finish().unwrap()).unwrap();

    let forced = |captures: &[PathBuf], options: ReplayOptions| {
        replay(
            Arc::clone(&program),
            captures,
            &ReplayOptions {
                path: ReplayPath::Scan,
                ..options
            },
        )
    };
    // Compressed input, or an output that keeps capture order: the scan
    // cannot serve; the default path replays all the same, alike.
    let with_verdicts = ReplayOptions {
        verdicts_output: Some(scratch.0.join("verdicts.jsonl")),
        ..ReplayOptions::default()
    };
    for (captures, options) in [
        (vec![plain.clone(), gzip.clone()], ReplayOptions::default()),
        (vec![plain.clone()], with_verdicts),
    ] {
        let refused = forced(&captures, options.clone()).unwrap_err();
        assert!(
            matches!(refused, ReplayError::ScanUnavailable { .. }),
            "{refused}"
        );
        let auto = replay(Arc::clone(&program), &captures, &options).unwrap();
        let ordered = replay(
            Arc::clone(&program),
            &captures,
            &ReplayOptions {
                path: ReplayPath::Ordered,
                ..options.clone()
            },
        )
        .unwrap();
        assert_eq!(comparable(&auto), comparable(&ordered));
    }

    // Captures that cannot be opened fail alike, naming the same capture.
    let empty = scratch.0.join("empty.pcap");
    std::fs::write(&empty, b"").unwrap();
    let not_a_capture = scratch.0.join("notes.txt");
    std::fs::write(&not_a_capture, b"GIF89a, not a capture").unwrap();
    let missing = scratch.0.join("missing.pcap");
    for bad in [&empty, &not_a_capture, &missing] {
        let captures = [plain.clone(), bad.clone(), gzip.clone()];
        let scan = forced(&captures, ReplayOptions::default()).unwrap_err();
        let ordered = replay(
            Arc::clone(&program),
            &captures,
            &ReplayOptions {
                path: ReplayPath::Ordered,
                ..ReplayOptions::default()
            },
        )
        .unwrap_err();
        assert!(matches!(scan, ReplayError::Open { .. }), "{scan}");
        assert_eq!(scan.to_string(), ordered.to_string());
    }
}

#[test]
fn the_scan_replays_a_large_generated_capture_alike() {
    // Enough packets for many chunks and for the workers to overtake each
    // other; written with the nanosecond magic.
    let scratch = Scratch::new("large");
    let capture = scratch.0.join("generated.pcap");
    let policy = nsgd::policy::load(&root().join("configs/hub-spoke.yaml")).unwrap();
    let mut writer = PcapWriter::new(
        std::io::BufWriter::new(std::fs::File::create(&capture).unwrap()),
        nsgd::io::LINKTYPE_ETHERNET,
        TimestampPrecision::Nanoseconds,
    )
    .unwrap();
    nsgd::io::generate(
        &policy,
        &nsgd::io::GenerateOptions {
            flows: 2_000,
            packets: Some(60_000),
            syn_flood_rate: 0.05,
            ..nsgd::io::GenerateOptions::default()
        },
        &mut writer,
    )
    .unwrap();
    writer.finish().unwrap();
    let program = Arc::new(Program::compile(&policy).unwrap());
    let log = scratch.0.join("flows.json");
    let captures = [capture];
    let (expected, expected_log) = run(&program, &captures, ReplayPath::Ordered, 1, &log);
    assert!(
        expected["packets_in"].as_u64().unwrap() > 40_000,
        "{expected}"
    );
    for workers in [1, 2, 3, 4] {
        let (scan, scan_log) = run(&program, &captures, ReplayPath::Scan, workers, &log);
        let mut expected = expected.clone();
        expected["workers"] = workers.into();
        assert_eq!(scan, expected, "{workers} workers");
        assert_eq!(scan_log, expected_log, "{workers} workers");
    }
}
