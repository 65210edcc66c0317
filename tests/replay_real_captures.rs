//! Every real capture in ../shared/pcaps replays through the pipeline with
//! counts that add up, one verdict per packet, and outputs that read back
//! (with nsgd's reader, and with tshark where it is installed — CI installs
//! it) with exactly the allowed and denied packet counts.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use nsgd::compile::Program;
use nsgd::io::CaptureReader;
use nsgd::pipeline::{replay, ReplayOptions};

fn shared_pcaps() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/pcaps");
    assert!(
        dir.is_dir(),
        "../shared/pcaps must sit beside the repository"
    );
    dir
}

fn program() -> Arc<Program> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("configs/lan-lab.yaml");
    Arc::new(Program::compile(&nsgd::policy::load(&path).unwrap()).unwrap())
}

fn count_records(path: &Path) -> u64 {
    let mut reader = CaptureReader::open(path).unwrap();
    let mut count = 0;
    while reader.next_record().unwrap().is_some() {
        count += 1;
    }
    count
}

fn tshark_count(path: &Path) -> Option<u64> {
    let output = Command::new("tshark")
        .args(["-r", path.to_str()?, "-T", "fields", "-e", "frame.number"])
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).lines().count() as u64)
}

#[test]
fn every_shared_capture_replays_and_accounts_for_every_packet() {
    let dir = shared_pcaps();
    let scratch = std::env::temp_dir().join(format!("nsgd-real-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).unwrap();
    let tshark = Command::new("tshark").arg("--version").output().is_ok();
    if !tshark {
        eprintln!("tshark is not installed: checking outputs with nsgd's own reader only");
    }
    let mut captures: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pcap" || e == "pcapng"))
        .collect();
    captures.sort();
    assert!(captures.len() >= 30, "{captures:?}");
    for capture in captures {
        let name = capture.file_name().unwrap().to_string_lossy().to_string();
        let options = ReplayOptions {
            workers: 2,
            allowed_output: Some(scratch.join("allowed.pcap")),
            denied_output: Some(scratch.join("denied.pcap")),
            verdicts_output: Some(scratch.join("verdicts.jsonl")),
            flow_log_output: Some(scratch.join("flows.json")),
            dataplane: nsgd::dataplane::DataplaneConfig {
                flow_log: true,
                ..Default::default()
            },
            ..ReplayOptions::default()
        };
        let report = replay(program(), std::slice::from_ref(&capture), &options).unwrap();
        assert_eq!(
            report.packets_in,
            report.packets_allowed + report.packets_denied,
            "{name}"
        );
        let by_reason: u64 = report.allowed_by_reason.values().sum::<u64>()
            + report.denied_by_reason.values().sum::<u64>();
        assert_eq!(by_reason, report.packets_in, "{name}");
        let verdicts = std::fs::read_to_string(scratch.join("verdicts.jsonl")).unwrap();
        assert_eq!(verdicts.lines().count() as u64, report.packets_in, "{name}");
        for (i, line) in verdicts.lines().enumerate() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(v["index"], i as u64, "{name}");
        }
        let allowed = count_records(&scratch.join("allowed.pcap"));
        let denied = count_records(&scratch.join("denied.pcap"));
        assert_eq!(allowed, report.packets_allowed, "{name}");
        assert_eq!(denied, report.packets_denied, "{name}");
        if tshark {
            assert_eq!(
                tshark_count(&scratch.join("allowed.pcap")),
                Some(allowed),
                "{name} allowed via tshark"
            );
            assert_eq!(
                tshark_count(&scratch.join("denied.pcap")),
                Some(denied),
                "{name} denied via tshark"
            );
        }
        let log: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(scratch.join("flows.json")).unwrap())
                .unwrap();
        assert!(log["records"].is_array(), "{name}");
        // The readable part of a damaged file is replayed, and the damage reported.
        if name == "damaged-record-header.pcap" || name == "cut-short-dns.pcap" {
            assert_eq!(report.packets_in, 1, "{name}");
            assert_eq!(report.capture_problems.len(), 1, "{name}");
            assert!(report.capture_problems[0].offset.is_some(), "{name}");
        } else {
            assert!(
                report.capture_problems.is_empty(),
                "{name}: {:?}",
                report.capture_problems
            );
        }
    }
    std::fs::remove_dir_all(&scratch).ok();
}

#[test]
fn malformed_frames_are_dropped_with_their_reason() {
    let dir = shared_pcaps();
    for (file, reason) in [
        ("malformed-ip4-trunc.pcap", "truncated-ipv4"),
        ("malformed-ip6-ext-trunc.pcap", "bad-ipv6-extension"),
        ("malformed-ipv4-broken-header.pcap", "bad-ipv4-total-length"),
    ] {
        let report = replay(program(), &[dir.join(file)], &ReplayOptions::default()).unwrap();
        assert_eq!(
            report.invalid_by_reason.get(reason),
            Some(&1),
            "{file}: {report:?}"
        );
        assert_eq!(report.denied_by_reason.get("invalid"), Some(&1), "{file}");
    }
}

#[test]
fn the_real_lan_hour_is_decided_by_the_lab_rules() {
    let dir = shared_pcaps();
    let report = replay(
        program(),
        &[dir.join("real-lan-1h.pcap")],
        &ReplayOptions::default(),
    )
    .unwrap();
    assert_eq!(report.packets_in, 62_781);
    // ~5,600 Zabbix connections, each opened and closed.
    let zabbix = report.rule_hits["office-nsg"]["Allow-Zabbix"];
    assert!((5_000..7_000).contains(&zabbix), "{zabbix}");
    assert!(report.rule_hits["office-nsg"].contains_key("Deny-NetBIOS-SMB"));
    assert_eq!(
        report.allowed_by_reason["non-ip"], 743,
        "the ARP frames pass"
    );
}

#[test]
fn fragments_of_the_fragment_captures_follow_their_first() {
    let dir = shared_pcaps();
    for file in ["ipv4-fragments-udp.pcap", "ipv6-fragments-udp.pcap"] {
        let report = replay(program(), &[dir.join(file)], &ReplayOptions::default()).unwrap();
        assert!(
            report
                .allowed_by_reason
                .get("fragment")
                .copied()
                .unwrap_or(0)
                > 0,
            "{file}: {report:?}"
        );
        assert!(
            !report.denied_by_reason.contains_key("orphan-fragment"),
            "{file}"
        );
    }
}
