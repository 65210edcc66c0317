//! The capture reader against the real captures in `../shared/pcaps/`
//! (read in place; skipped with a note when the corpus is absent). Record
//! counts are the ones its README gives (capinfos/tshark).

use std::path::PathBuf;

use nsgd::io::{CaptureError, CaptureReader, PcapWriter, RecordBatch, TimestampPrecision};

fn corpus() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/pcaps");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("note: {} is absent; corpus tests skipped", dir.display());
        None
    }
}

struct Summary {
    records: usize,
    truncated: usize,
    first_timestamp: u64,
    nanosecond_digits: bool,
    link_types: Vec<u32>,
    timestamps: Vec<u64>,
    error: Option<CaptureError>,
}

fn summarise(path: &std::path::Path) -> Summary {
    let mut reader = CaptureReader::open(path).expect("the file header is readable");
    let mut summary = Summary {
        records: 0,
        truncated: 0,
        first_timestamp: 0,
        nanosecond_digits: false,
        link_types: Vec::new(),
        timestamps: Vec::new(),
        error: None,
    };
    loop {
        match reader.next_record() {
            Ok(Some(record)) => {
                assert_eq!(record.caplen as usize, record.data.len());
                if summary.records == 0 {
                    summary.first_timestamp = record.timestamp_ns;
                }
                summary.records += 1;
                summary.truncated += usize::from(record.is_truncated());
                summary.nanosecond_digits |= record.timestamp_ns % 1_000 != 0;
                if !summary.link_types.contains(&record.link_type) {
                    summary.link_types.push(record.link_type);
                }
                summary.timestamps.push(record.timestamp_ns);
            }
            Ok(None) => break,
            Err(error) => {
                summary.error = Some(error);
                break;
            }
        }
    }
    // The reader stays finished after the end or an error.
    assert!(reader.next_record().unwrap().is_none());
    summary
}

const COUNTS: &[(&str, usize, Option<u32>)] = &[
    ("http-get-dpkt.pcap", 43, Some(1)),
    ("dns-icmp-ping.pcap", 32, Some(1)),
    ("tls12-cipher-sweep-loopback.pcap", 1095, Some(1)),
    ("icmp-sample-libtrace.pcap", 21, Some(1)),
    ("icmpv6-sample-libtrace.pcap", 36, Some(1)),
    ("ipv6-http-dns.pcap", 193, Some(1)),
    ("ipv6-tcp-simple.pcap", 10, Some(1)),
    ("vlan-icmp-arp.pcap", 15, Some(1)),
    ("vlan-partial-tcp-syn-retransmit.pcap", 254, Some(1)),
    ("vlan-tcp-rst-with-data.pcap", 8, Some(1)),
    ("ipv4-fragments-udp.pcap", 53, Some(1)),
    ("ipv4-fragments-mixed.pcap", 3000, Some(1)),
    ("ipv6-fragments-udp.pcap", 36, Some(1)),
    ("tcp-ipv4-rst.pcap", 6, Some(1)),
    ("sll-mixed.pcap", 518, Some(113)),
    ("sll2-tcp-handshake.pcap", 5, Some(276)),
    ("sll2-icmp-icmpv6-arp.pcap", 6, Some(276)),
    ("rawip-v4-v6-mixed.pcap", 100, Some(101)),
    ("rawip4-linktype228.pcap", 1, Some(228)),
    ("pcapng-2if-ns-and-us.pcapng", 6, Some(1)),
    ("nanosec-mixed.pcap", 179, Some(1)),
    ("pcapng-nanosec-tcp.pcapng", 6, Some(1)),
    ("snaplen-cut-http-rst.pcap", 75, Some(1)),
    ("malformed-ip4-trunc.pcap", 1, Some(1)),
    ("malformed-ip6-ext-trunc.pcap", 1, Some(1)),
    ("malformed-icmp-payload-trunc.pcap", 4, Some(1)),
    ("malformed-ipv4-broken-header.pcap", 1, Some(1)),
    ("fuzzed-udp-snaplen69.pcap", 107, Some(1)),
    ("damaged-record-header.pcap", 1, Some(1)),
    ("cut-short-dns.pcap", 1, Some(1)),
    ("real-lan-1h.pcap", 62_781, Some(1)),
];

const DAMAGED: &[&str] = &["damaged-record-header.pcap", "cut-short-dns.pcap"];

#[test]
fn every_corpus_file_reads_with_the_readme_count() {
    let Some(dir) = corpus() else { return };
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        if !(name.ends_with(".pcap") || name.ends_with(".pcapng")) {
            continue;
        }
        let (_, expected, link_type) = COUNTS
            .iter()
            .find(|(file, _, _)| *file == name)
            .unwrap_or_else(|| panic!("{name} has no expected count in this test"));
        let summary = summarise(&path);
        eprintln!(
            "{name}: {} records, {} cut, error: {:?}",
            summary.records,
            summary.truncated,
            summary.error.as_ref().map(ToString::to_string)
        );
        assert_eq!(summary.records, *expected, "{name}");
        if let Some(link_type) = link_type {
            assert_eq!(summary.link_types, [*link_type], "{name}");
        }
        assert_eq!(
            summary.error.is_some(),
            DAMAGED.contains(&name.as_str()),
            "{name}: {:?}",
            summary.error
        );
        seen += 1;
    }
    assert_eq!(seen, COUNTS.len(), "corpus files seen");
}

#[test]
fn damaged_files_end_with_an_error_naming_the_offset() {
    let Some(dir) = corpus() else { return };
    let damaged = summarise(&dir.join("damaged-record-header.pcap"));
    let error = damaged.error.expect("an error after the first record");
    // Record 1 (16-byte header + 74 bytes... ) ends where record 2's header starts.
    let text = error.to_string();
    assert!(matches!(error, CaptureError::Truncated { .. }), "{text}");
    assert!(text.contains("claims 16896 bytes"), "{text}");
    assert!(error.offset().unwrap() > 24, "{text}");

    let cut = summarise(&dir.join("cut-short-dns.pcap"));
    let error = cut.error.expect("an error after the first record");
    assert!(matches!(error, CaptureError::Truncated { .. }), "{error}");
    assert!(error.offset().unwrap() > 24, "{error}");
}

#[test]
fn two_interface_pcapng_applies_each_resolution() {
    let Some(dir) = corpus() else { return };
    let summary = summarise(&dir.join("pcapng-2if-ns-and-us.pcapng"));
    let seconds: Vec<u64> = summary
        .timestamps
        .iter()
        .map(|t| t / 1_000_000_000)
        .collect();
    let lowest = *seconds.iter().min().unwrap();
    let highest = *seconds.iter().max().unwrap();
    // Both interfaces land in the same epoch range (a 1000x error would put
    // one of them decades away).
    assert!(highest - lowest < 3600, "{seconds:?}");
    assert!(lowest > 1_000_000_000, "{seconds:?}");
    assert!(
        summary.nanosecond_digits,
        "the ns interface keeps its digits"
    );
}

#[test]
fn nanosecond_pcap_keeps_nanoseconds() {
    let Some(dir) = corpus() else { return };
    let summary = summarise(&dir.join("nanosec-mixed.pcap"));
    assert!(summary.nanosecond_digits);
    let reader = CaptureReader::open(dir.join("nanosec-mixed.pcap")).unwrap();
    assert_eq!(
        reader.format(),
        nsgd::io::CaptureFormat::Pcap {
            nanoseconds: true,
            big_endian: false
        }
    );
    let microseconds = summarise(&dir.join("http-get-dpkt.pcap"));
    assert!(!microseconds.nanosecond_digits);
    assert!(microseconds.first_timestamp > 1_000_000_000 * 1_000_000_000);
}

#[test]
fn snaplen_cut_records_are_delivered() {
    let Some(dir) = corpus() else { return };
    assert_eq!(
        summarise(&dir.join("snaplen-cut-http-rst.pcap")).truncated,
        45
    );
    assert_eq!(
        summarise(&dir.join("fuzzed-udp-snaplen69.pcap")).records,
        107
    );
    assert_eq!(
        summarise(&dir.join("malformed-icmp-payload-trunc.pcap")).truncated,
        4
    );
}

#[test]
fn batches_deliver_the_same_records_then_the_error() {
    let Some(dir) = corpus() else { return };
    for name in [
        "real-lan-1h.pcap",
        "pcapng-2if-ns-and-us.pcapng",
        "damaged-record-header.pcap",
    ] {
        let path = dir.join(name);
        let mut single = CaptureReader::open(&path).unwrap();
        let mut batched = CaptureReader::open(&path).unwrap();
        let mut batch = RecordBatch::with_capacity(64, 16 * 1024);
        let mut count = 0;
        let mut batch_error = None;
        loop {
            match batched.read_batch(&mut batch) {
                Ok(0) => break,
                Ok(n) => {
                    assert!(n <= 64);
                    for record in batch.iter() {
                        let expected = single.next_record().unwrap().unwrap();
                        assert_eq!(record, expected, "{name} record {count}");
                        count += 1;
                    }
                }
                Err(error) => {
                    batch_error = Some(error.to_string());
                    break;
                }
            }
        }
        let single_error = single.next_record().err().map(|e| e.to_string());
        assert_eq!(batch_error, single_error, "{name}");
        assert_eq!(batched.records_read(), count as u64);
    }
}

#[test]
fn gzip_input_reads_like_the_plain_file() {
    let Some(dir) = corpus() else { return };
    let path = dir.join("nanosec-mixed.pcap");
    let plain = std::fs::read(&path).unwrap();
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut encoder, &plain).unwrap();
    let compressed = encoder.finish().unwrap();
    let mut from_plain = CaptureReader::new(plain.as_slice()).unwrap();
    let mut from_gzip = CaptureReader::new(compressed.as_slice()).unwrap();
    assert!(from_gzip.is_compressed() && !from_plain.is_compressed());
    while let Some(expected) = from_plain.next_record().unwrap() {
        let expected = (
            expected.timestamp_ns,
            expected.orig_len,
            expected.data.to_vec(),
        );
        let record = from_gzip.next_record().unwrap().unwrap();
        assert_eq!(
            (record.timestamp_ns, record.orig_len, record.data.to_vec()),
            expected
        );
    }
    assert!(from_gzip.next_record().unwrap().is_none());
}

/// Read → write → read gives identical records, for every readable file;
/// tshark (when installed) counts the same frames in the written file.
#[test]
fn write_round_trip_keeps_every_record() {
    let Some(dir) = corpus() else { return };
    let tshark = std::process::Command::new("tshark")
        .arg("--version")
        .output()
        .is_ok();
    if !tshark {
        eprintln!("note: tshark is not installed; the tshark cross-check is skipped");
    }
    let scratch = std::env::temp_dir().join(format!("nsgd-roundtrip-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).unwrap();
    for (name, expected, _) in COUNTS {
        let mut reader = CaptureReader::open(dir.join(name)).unwrap();
        let mut records = Vec::new();
        let mut writer = None;
        while let Ok(Some(record)) = reader.next_record() {
            let writer = writer.get_or_insert_with(|| {
                PcapWriter::new(
                    Vec::new(),
                    record.link_type,
                    TimestampPrecision::Nanoseconds,
                )
                .unwrap()
            });
            writer.write_record(&record).unwrap();
            records.push((
                record.timestamp_ns,
                record.link_type,
                record.orig_len,
                record.data.to_vec(),
            ));
        }
        assert_eq!(records.len(), *expected);
        let bytes = writer.unwrap().finish().unwrap();
        let mut again = CaptureReader::new(bytes.as_slice()).unwrap();
        for expected in &records {
            let record = again.next_record().unwrap().unwrap();
            assert_eq!(
                &(
                    record.timestamp_ns,
                    record.link_type,
                    record.orig_len,
                    record.data.to_vec()
                ),
                expected,
                "{name}"
            );
        }
        assert!(again.next_record().unwrap().is_none());
        if tshark && !name.starts_with("real-lan") {
            let out = scratch.join(name);
            std::fs::write(&out, &bytes).unwrap();
            let output = std::process::Command::new("tshark")
                .arg("-r")
                .arg(&out)
                .args(["-T", "fields", "-e", "frame.number"])
                .output()
                .unwrap();
            let frames = String::from_utf8_lossy(&output.stdout).lines().count();
            assert_eq!(
                frames,
                *expected,
                "tshark on rewritten {name}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
    std::fs::remove_dir_all(&scratch).ok();
}
