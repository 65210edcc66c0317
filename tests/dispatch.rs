//! The reader's cheap dispatch (`shard_hint`) must send every frame that
//! parses to an IP packet to the same shard as the full parse would, or a
//! connection's packets could meet different connection tables.

use std::path::PathBuf;

use nsgd::dataplane::{shard_hint, shard_of};
use nsgd::io::CaptureReader;
use nsgd::packet::{parse, LinkType, Parsed};

#[test]
fn the_dispatch_hint_agrees_with_the_parse_on_every_capture() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<PathBuf> = Vec::new();
    for dir in [root.join("../shared/pcaps"), root.join("pcaps")] {
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        files.extend(
            entries
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|e| e == "pcap" || e == "pcapng")),
        );
    }
    let (mut hinted, mut checked) = (0u64, 0u64);
    for file in files {
        let mut reader = CaptureReader::open(&file).unwrap();
        while let Ok(Some(record)) = reader.next_record() {
            let Ok(link) = LinkType::from_linktype(record.link_type) else {
                continue;
            };
            let parsed = parse(link, record.data);
            checked += 1;
            if let (Some(hint), Parsed::Ip(_)) = (shard_hint(link, record.data), &parsed) {
                hinted += 1;
                assert_eq!(hint, shard_of(&parsed), "{}: {:?}", file.display(), parsed);
            }
        }
    }
    assert!(
        checked > 60_000 && hinted > 50_000,
        "{hinted} of {checked} frames dispatched by the hint"
    );
}
