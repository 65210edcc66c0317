//! ClassBench end to end: every set (1k, 10k and 100k rules × acl1, fw1,
//! ipc1) classifies exactly as the independently computed expected files say
//! (a few seconds in the test profile, which has `opt-level = 1`).

use std::path::PathBuf;

use nsgd::classbench::{run_with, RunOptions};

fn data_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/classbench");
    assert!(
        dir.join("acl1_1k.rules.gz").exists(),
        "ClassBench data not found in {} (expected the shared classbench folder next to the repository)",
        dir.display()
    );
    dir
}

fn check(name: &str) {
    let dir = data_dir();
    let f = |ext: &str| dir.join(format!("{name}.{ext}.gz"));
    let opts = RunOptions {
        min_seconds: 0.0,
        min_repetitions: 1,
    };
    let r = run_with(&f("rules"), &f("trace"), &f("expected"), &opts)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    assert!(r.rules > 0 && r.lookups > 0, "{name}: {r:?}");
    assert_eq!(
        r.mismatches, 0,
        "{name}: {} mismatches, first: {:?}",
        r.mismatches, r.first_mismatches
    );
    let json = serde_json::to_value(&r).unwrap();
    for field in [
        "rules",
        "lookups",
        "mismatches",
        "build_ms",
        "lookups_per_sec",
        "table_bytes",
    ] {
        assert!(json.get(field).is_some(), "missing {field}");
    }
}

#[test]
fn acl1_1k() {
    check("acl1_1k");
}
#[test]
fn fw1_1k() {
    check("fw1_1k");
}
#[test]
fn ipc1_1k() {
    check("ipc1_1k");
}
#[test]
fn acl1_10k() {
    check("acl1_10k");
}
#[test]
fn fw1_10k() {
    check("fw1_10k");
}
#[test]
fn ipc1_10k() {
    check("ipc1_10k");
}

#[test]
fn acl1_100k() {
    check("acl1_100k");
}
#[test]
fn fw1_100k() {
    check("fw1_100k");
}
#[test]
fn ipc1_100k() {
    check("ipc1_100k");
}
