//! The sample captures in `pcaps/` are regenerated here and compared byte for
//! byte, so they cannot rot: a change to the generator that alters them
//! fails this test until the samples are rebuilt on purpose with
//! `UPDATE_PCAPS=1 cargo test --test pcaps_fixtures` (and `pcaps/README.md`
//! updated). Every file in `pcaps/` must be listed here.

use std::path::{Path, PathBuf};

use nsgd::io::{
    generate, CaptureReader, GenerateOptions, GenerateStats, PcapWriter, TimestampPrecision,
    LINKTYPE_ETHERNET,
};

struct Sample {
    file: &'static str,
    config: &'static str,
    options: GenerateOptions,
}

/// Keep in step with `pcaps/README.md`.
fn samples() -> Vec<Sample> {
    vec![
        Sample {
            file: "hub-spoke-small.pcap",
            config: "hub-spoke.yaml",
            options: GenerateOptions {
                flows: 100,
                seed: 1,
                syn_flood_rate: 0.02,
                ..GenerateOptions::default()
            },
        },
        Sample {
            file: "hub-spoke-dual-stack.pcap",
            config: "dual-stack.yaml",
            options: GenerateOptions {
                flows: 60,
                seed: 1,
                ipv6: true,
                ..GenerateOptions::default()
            },
        },
    ]
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn build(sample: &Sample) -> (Vec<u8>, GenerateStats) {
    let policy = nsgd::policy::load(&root().join("configs").join(sample.config)).unwrap();
    let mut writer = PcapWriter::new(
        Vec::new(),
        LINKTYPE_ETHERNET,
        TimestampPrecision::Microseconds,
    )
    .unwrap();
    let stats = generate(&policy, &sample.options, &mut writer).unwrap();
    (writer.finish().unwrap(), stats)
}

#[test]
fn samples_regenerate_byte_for_byte() {
    let update = std::env::var_os("UPDATE_PCAPS").is_some();
    for sample in samples() {
        let (bytes, stats) = build(&sample);
        let path = root().join("pcaps").join(sample.file);
        if update {
            std::fs::write(&path, &bytes).unwrap();
            eprintln!("wrote {}: {stats:?}", path.display());
            continue;
        }
        let committed = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_PCAPS=1 rebuilds it)", path.display()));
        assert!(
            committed == bytes,
            "{} differs from what the generator makes now ({} vs {} bytes); \
             rebuild with UPDATE_PCAPS=1 if the change is intended",
            sample.file,
            committed.len(),
            bytes.len()
        );
    }
}

#[test]
fn every_sample_is_listed_and_readable() {
    let listed: Vec<&str> = samples().iter().map(|s| s.file).collect();
    let dir = root().join("pcaps");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        if name == "README.md" {
            continue;
        }
        assert!(
            listed.contains(&name.as_str()),
            "{name} is not listed in this test"
        );
        let records = count(&path);
        assert!(records > 500, "{name}: {records} records");
        tshark_agrees(&path, records);
        let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
        assert!(
            readme.contains(&name),
            "pcaps/README.md does not describe {name}"
        );
    }
}

fn count(path: &Path) -> usize {
    let mut reader = CaptureReader::open(path).unwrap();
    let mut records = 0;
    while reader.next_record().unwrap().is_some() {
        records += 1;
    }
    records
}

/// When tshark is installed: it counts the same frames and finds none malformed.
fn tshark_agrees(path: &Path, records: usize) {
    let tshark = |filter: Option<&str>| {
        let mut command = std::process::Command::new("tshark");
        command
            .arg("-r")
            .arg(path)
            .args(["-T", "fields", "-e", "frame.number"]);
        if let Some(filter) = filter {
            command.args(["-Y", filter]);
        }
        let output = command.output().ok()?;
        Some(String::from_utf8_lossy(&output.stdout).lines().count())
    };
    let Some(frames) = tshark(None) else {
        eprintln!("note: tshark is not installed; the tshark cross-check is skipped");
        return;
    };
    assert_eq!(frames, records, "tshark frame count for {}", path.display());
    let malformed = tshark(Some("_ws.malformed || _ws.expert.severity >= \"error\""));
    assert_eq!(
        malformed,
        Some(0),
        "tshark finds malformed frames in {}",
        path.display()
    );
}
