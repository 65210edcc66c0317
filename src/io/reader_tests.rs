//! Reader tests on hand-built captures (every pcapng block kind, both byte
//! orders, every timestamp resolution form) and property tests on hostile
//! input: random bytes, truncations and bit flips never panic, and a
//! truncated file yields a prefix of the records of the whole one. The
//! in-place reader ([`SliceReader`]) yields exactly what the buffered one
//! does, errors and offsets included, on all of these and on every capture
//! of the corpus.

use proptest::prelude::*;

use super::{
    CaptureError, CaptureFormat, CaptureReader, MappedCapture, PcapWriter, SliceReader,
    TimestampPrecision,
};

type Owned = (u64, u32, u32, u32, Vec<u8>);

/// The two readers, alike for these tests.
trait Records {
    fn next_owned(&mut self) -> Result<Option<Owned>, CaptureError>;
    fn records_read(&self) -> u64;
}

fn owned(r: super::Record<'_>) -> Owned {
    assert_eq!(r.caplen as usize, r.data.len());
    (
        r.timestamp_ns,
        r.link_type,
        r.caplen,
        r.orig_len,
        r.data.to_vec(),
    )
}

impl<R: std::io::Read> Records for CaptureReader<R> {
    fn next_owned(&mut self) -> Result<Option<Owned>, CaptureError> {
        Ok(self.next_record()?.map(owned))
    }
    fn records_read(&self) -> u64 {
        CaptureReader::records_read(self)
    }
}

impl Records for SliceReader<'_> {
    fn next_owned(&mut self) -> Result<Option<Owned>, CaptureError> {
        Ok(self.next_record()?.map(owned))
    }
    fn records_read(&self) -> u64 {
        SliceReader::records_read(self)
    }
}

/// Every record `reader` yields, then the error (if any).
fn drain(reader: Result<impl Records, CaptureError>) -> (Vec<Owned>, Option<CaptureError>) {
    let mut reader = match reader {
        Ok(reader) => reader,
        Err(error) => return (Vec::new(), Some(error)),
    };
    let mut records = Vec::new();
    loop {
        match reader.next_owned() {
            Ok(Some(record)) => records.push(record),
            Ok(None) => return (records, None),
            Err(error) => {
                assert_eq!(reader.records_read(), records.len() as u64);
                assert!(reader.next_owned().unwrap().is_none());
                return (records, Some(error));
            }
        }
    }
}

/// Every record of `bytes`, then the error (if any).
fn read_all(bytes: &[u8]) -> (Vec<Owned>, Option<CaptureError>) {
    drain(CaptureReader::new(bytes))
}

/// Every record of `bytes` read in place, then the error (if any).
fn read_all_in_place(bytes: &[u8]) -> (Vec<Owned>, Option<CaptureError>) {
    drain(SliceReader::new(bytes))
}

/// The buffered and the in-place reader agree on `bytes`: the same records,
/// then the same error (message and offset) or none. Gzip input is the
/// buffered reader's alone.
fn assert_readers_agree(bytes: &[u8]) -> Result<(), TestCaseError> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        return Ok(());
    }
    let (buffered, buffered_error) = read_all(bytes);
    let (in_place, in_place_error) = read_all_in_place(bytes);
    prop_assert_eq!(&buffered, &in_place);
    prop_assert_eq!(
        buffered_error.as_ref().map(|e| (e.to_string(), e.offset())),
        in_place_error.as_ref().map(|e| (e.to_string(), e.offset()))
    );
    Ok(())
}

struct Pcapng {
    bytes: Vec<u8>,
    big: bool,
}

impl Pcapng {
    fn new() -> Pcapng {
        Pcapng {
            bytes: Vec::new(),
            big: false,
        }
    }

    fn u16(&self, value: u16) -> [u8; 2] {
        if self.big {
            value.to_be_bytes()
        } else {
            value.to_le_bytes()
        }
    }

    fn u32(&self, value: u32) -> [u8; 4] {
        if self.big {
            value.to_be_bytes()
        } else {
            value.to_le_bytes()
        }
    }

    fn block(&mut self, block_type: u32, body: &[u8]) -> &mut Self {
        let mut padded = body.to_vec();
        padded.resize(body.len().next_multiple_of(4), 0);
        let total = (padded.len() + 12) as u32;
        let (t, l) = (self.u32(block_type), self.u32(total));
        self.bytes.extend_from_slice(&t);
        self.bytes.extend_from_slice(&l);
        self.bytes.extend_from_slice(&padded);
        self.bytes.extend_from_slice(&l);
        self
    }

    fn section(&mut self, big: bool) -> &mut Self {
        self.big = big;
        let mut body = self.u32(0x1a2b_3c4d).to_vec();
        body.extend_from_slice(&self.u16(1));
        body.extend_from_slice(&self.u16(0));
        body.extend_from_slice(&[0xff; 8]);
        self.block(0x0a0d_0d0a, &body)
    }

    fn option(&self, body: &mut Vec<u8>, code: u16, value: &[u8]) {
        body.extend_from_slice(&self.u16(code));
        body.extend_from_slice(&self.u16(value.len() as u16));
        body.extend_from_slice(value);
        body.resize(body.len().next_multiple_of(4), 0);
    }

    fn interface(
        &mut self,
        link_type: u16,
        snaplen: u32,
        tsresol: Option<u8>,
        tsoffset: Option<i64>,
    ) -> &mut Self {
        let mut body = self.u16(link_type).to_vec();
        body.extend_from_slice(&[0, 0]);
        body.extend_from_slice(&self.u32(snaplen));
        self.option(&mut body, 2, b"eth0");
        if let Some(resolution) = tsresol {
            self.option(&mut body, 9, &[resolution]);
        }
        if let Some(offset) = tsoffset {
            let value = if self.big {
                offset.to_be_bytes()
            } else {
                offset.to_le_bytes()
            };
            self.option(&mut body, 14, &value);
        }
        self.option(&mut body, 0, &[]);
        self.block(1, &body)
    }

    fn enhanced(&mut self, interface: u32, ticks: u64, data: &[u8], orig_len: u32) -> &mut Self {
        let mut body = self.u32(interface).to_vec();
        body.extend_from_slice(&self.u32((ticks >> 32) as u32));
        body.extend_from_slice(&self.u32(ticks as u32));
        body.extend_from_slice(&self.u32(data.len() as u32));
        body.extend_from_slice(&self.u32(orig_len));
        body.extend_from_slice(data);
        self.block(6, &body)
    }

    fn simple(&mut self, orig_len: u32, data: &[u8]) -> &mut Self {
        let mut body = self.u32(orig_len).to_vec();
        body.extend_from_slice(data);
        self.block(3, &body)
    }

    fn obsolete(&mut self, interface: u16, ticks: u64, data: &[u8]) -> &mut Self {
        let mut body = self.u16(interface).to_vec();
        body.extend_from_slice(&self.u16(0));
        body.extend_from_slice(&self.u32((ticks >> 32) as u32));
        body.extend_from_slice(&self.u32(ticks as u32));
        body.extend_from_slice(&self.u32(data.len() as u32));
        body.extend_from_slice(&self.u32(data.len() as u32));
        body.extend_from_slice(data);
        self.block(2, &body)
    }
}

const SECOND: u64 = 1_000_000_000;
const EPOCH: u64 = 1_700_000_000;

fn sample_pcapng() -> Vec<u8> {
    let mut file = Pcapng::new();
    file.section(false)
        .interface(1, 150, None, None) // default microseconds, snaplen 150
        .interface(101, 96, Some(0x80 | 20), None) // 2^-20 s ticks
        .interface(228, 0, Some(3), Some(100)) // milliseconds, +100 s
        .block(4, &[0; 12]) // name resolution: skipped
        .enhanced(0, EPOCH * 1_000_000 + 5, b"abcde", 60)
        .enhanced(1, (EPOCH << 20) + (1 << 19), b"xyz", 3)
        .enhanced(2, EPOCH * 1_000 + 7, b"", 0)
        .block(0x0bad_cafe, &[1, 2, 3]) // unknown: skipped
        .simple(200, &[9; 150]) // cut to interface 0's snaplen
        .obsolete(0, EPOCH * 1_000_000 + 9, b"old")
        .section(true) // a new big-endian section: interfaces reset
        .interface(1, 0, Some(9), None)
        .enhanced(0, EPOCH * SECOND + 123, b"big-endian", 10);
    file.bytes
}

#[test]
fn pcapng_blocks_resolutions_and_sections() {
    let (records, error) = read_all(&sample_pcapng());
    assert!(error.is_none(), "{error:?}");
    let expected: Vec<Owned> = vec![
        (EPOCH * SECOND + 5_000, 1, 5, 60, b"abcde".to_vec()),
        (EPOCH * SECOND + SECOND / 2, 101, 3, 3, b"xyz".to_vec()),
        ((EPOCH + 100) * SECOND + 7_000_000, 228, 0, 0, Vec::new()),
        (
            (EPOCH + 100) * SECOND + 7_000_000,
            1,
            150,
            200,
            vec![9; 150],
        ),
        (EPOCH * SECOND + 9_000, 1, 3, 3, b"old".to_vec()),
        (EPOCH * SECOND + 123, 1, 10, 10, b"big-endian".to_vec()),
    ];
    assert_eq!(records, expected);
    let bytes = sample_pcapng();
    let reader = CaptureReader::new(bytes.as_slice()).unwrap();
    assert_eq!(reader.format(), CaptureFormat::Pcapng);
}

#[test]
fn pcapng_errors_name_the_offset() {
    let mut file = Pcapng::new();
    file.section(false)
        .interface(1, 0, None, None)
        .enhanced(3, 0, b"x", 1);
    let (records, error) = read_all(&file.bytes);
    assert!(records.is_empty());
    let error = error.unwrap();
    assert!(error.to_string().contains("names interface 3"), "{error}");
    let offset = error.offset().unwrap() as usize;
    assert_eq!(
        u32::from_le_bytes(file.bytes[offset..offset + 4].try_into().unwrap()),
        6
    );

    let mut file = Pcapng::new();
    file.section(false)
        .interface(1, 0, None, None)
        .enhanced(0, 0, b"ok", 2);
    let good = file.bytes.len();
    file.enhanced(0, 0, b"bad trailer", 11);
    let last = file.bytes.len() - 1;
    file.bytes[last] ^= 0x40;
    let (records, error) = read_all(&file.bytes);
    assert_eq!(records.len(), 1);
    let error = error.unwrap();
    assert_eq!(error.offset(), Some(good as u64));
    assert!(error.to_string().contains("trailing length"), "{error}");
}

#[test]
fn classic_pcap_in_both_byte_orders_and_units() {
    for (magic, big, nanos) in [
        (0xa1b2_c3d4u32, false, false),
        (0xa1b2_c3d4, true, false),
        (0xa1b2_3c4d, false, true),
        (0xa1b2_3c4d, true, true),
    ] {
        let word = |v: u32| {
            if big {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        };
        let mut bytes = word(magic).to_vec();
        bytes.extend_from_slice(&if big { [0, 2, 0, 4] } else { [2, 0, 4, 0] });
        bytes.extend_from_slice(&[0; 8]);
        bytes.extend_from_slice(&word(64));
        bytes.extend_from_slice(&word(0x1000_0001)); // FCS flag bits + Ethernet
        for (seconds, fraction, data) in [(10u32, 999u32, &b"one"[..]), (11, 0, &b"second"[..])] {
            bytes.extend_from_slice(&word(seconds));
            bytes.extend_from_slice(&word(fraction));
            bytes.extend_from_slice(&word(data.len() as u32));
            bytes.extend_from_slice(&word(1500));
            bytes.extend_from_slice(data);
        }
        let (records, error) = read_all(&bytes);
        assert!(error.is_none());
        let unit = if nanos { 1 } else { 1_000 };
        assert_eq!(
            records[0],
            (10 * SECOND + 999 * unit, 1, 3, 1500, b"one".to_vec())
        );
        assert_eq!(records[1].0, 11 * SECOND);
        let reader = CaptureReader::new(bytes.as_slice()).unwrap();
        assert_eq!(
            reader.format(),
            CaptureFormat::Pcap {
                nanoseconds: nanos,
                big_endian: big
            }
        );
    }
}

#[test]
fn bad_starts_are_errors() {
    assert!(matches!(read_all(b"").1, Some(CaptureError::Empty)));
    let missing = CaptureReader::open("/nonexistent/nsgd/trace.pcap")
        .err()
        .unwrap();
    assert!(matches!(missing, CaptureError::Open { .. }), "{missing}");
    assert!(missing.to_string().contains("/nonexistent/nsgd/trace.pcap"));
    assert!(matches!(
        read_all(b"\xd4\xc3").1,
        Some(CaptureError::Truncated { .. })
    ));
    assert!(matches!(
        read_all(b"GIF89a").1,
        Some(CaptureError::UnknownFormat { .. })
    ));
    let error = read_all(b"\xd4\xc3\xb2\xa1\x02\x00").1.unwrap();
    assert_eq!(
        error.to_string(),
        "pcap file header at offset 0 needs 24 bytes but only 6 remain"
    );
    let error = read_all(&[0x1f, 0x8b, 8, 0, 0, 0]).1.unwrap();
    assert!(matches!(error, CaptureError::Io { .. }), "{error}");
}

#[test]
fn microsecond_writer_truncates_to_microseconds() {
    let mut writer = PcapWriter::new(Vec::new(), 1, TimestampPrecision::Microseconds).unwrap();
    writer
        .write_frame(5 * SECOND + 1_234_567, b"frame", 60)
        .unwrap();
    let bytes = writer.finish().unwrap();
    let (records, _) = read_all(&bytes);
    assert_eq!(
        records,
        vec![(5 * SECOND + 1_234_000, 1, 5, 60, b"frame".to_vec())]
    );
}

#[test]
fn the_in_place_reader_agrees_on_hand_built_captures() {
    let mut captures = vec![
        sample_pcapng(),
        small_pcap(),
        Vec::new(),
        b"GIF89a".to_vec(),
    ];
    // Truncated inside a block, and a damaged trailer.
    let whole = sample_pcapng();
    captures.push(whole[..whole.len() - 7].to_vec());
    let mut bad = whole.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0x40;
    captures.push(bad);
    let pcap = small_pcap();
    captures.push(pcap[..pcap.len() - 3].to_vec());
    captures.push(pcap[..30].to_vec());
    captures.push(pcap[..10].to_vec());
    for bytes in &captures {
        assert_readers_agree(bytes).unwrap();
    }
    let reader = SliceReader::new(&whole).unwrap();
    assert_eq!(reader.format(), CaptureFormat::Pcapng);
    let reader = SliceReader::new(&pcap).unwrap();
    assert_eq!(reader.offset(), 24);
    // The records outlive the reader: they borrow the bytes, not it.
    let first = SliceReader::new(&pcap)
        .unwrap()
        .next_record()
        .unwrap()
        .unwrap();
    assert_eq!(first.timestamp_ns, 0);
}

/// Every capture of the corpus and of the repository's pcaps/.
fn corpus_files() -> Vec<std::path::PathBuf> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in [root.join("../shared/pcaps"), root.join("pcaps")] {
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        files.extend(
            entries
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|e| e == "pcap" || e == "pcapng")),
        );
    }
    files.sort();
    files
}

#[test]
fn the_in_place_reader_agrees_on_every_corpus_capture() {
    let files = corpus_files();
    assert!(files.len() >= 33, "{files:?}");
    let mut damaged = 0;
    for file in files {
        let map = MappedCapture::open(&file).unwrap().unwrap();
        assert_eq!(map.bytes(), std::fs::read(&file).unwrap().as_slice());
        let (buffered, buffered_error) = read_all(map.bytes());
        let (in_place, in_place_error) = read_all_in_place(map.bytes());
        assert_eq!(buffered.len(), in_place.len(), "{}", file.display());
        assert!(buffered == in_place, "{}", file.display());
        let describe = |e: &CaptureError| (e.to_string(), e.offset());
        assert_eq!(
            buffered_error.as_ref().map(describe),
            in_place_error.as_ref().map(describe),
            "{}",
            file.display()
        );
        damaged += usize::from(in_place_error.is_some());
        // Released pages read back the same bytes.
        map.release(0..map.bytes().len());
        let (again, _) = read_all_in_place(map.bytes());
        assert!(again == in_place, "{}", file.display());
    }
    assert!(damaged >= 2, "the corpus has two damaged captures");
}

#[test]
fn mapping_leaves_compressed_and_special_files_to_the_buffered_reader() {
    let dir = std::env::temp_dir().join(format!("nsgd-mapped-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let gzip = dir.join("trace.pcap.gz");
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut encoder, &small_pcap()).unwrap();
    std::fs::write(&gzip, encoder.finish().unwrap()).unwrap();
    assert!(MappedCapture::open(&gzip).unwrap().is_none());
    assert!(MappedCapture::open(&dir).unwrap().is_none());
    let empty = dir.join("empty.pcap");
    std::fs::write(&empty, b"").unwrap();
    let map = MappedCapture::open(&empty).unwrap().unwrap();
    assert!(map.bytes().is_empty());
    map.release(0..10);
    assert!(matches!(
        SliceReader::new(map.bytes()),
        Err(CaptureError::Empty)
    ));
    let missing = MappedCapture::open(dir.join("missing.pcap")).unwrap_err();
    let expected = CaptureReader::open(dir.join("missing.pcap")).err().unwrap();
    assert_eq!(missing.to_string(), expected.to_string());
    std::fs::remove_dir_all(&dir).unwrap();
}

fn small_pcap() -> Vec<u8> {
    let mut writer = PcapWriter::new(Vec::new(), 1, TimestampPrecision::Nanoseconds).unwrap();
    for i in 0..12u8 {
        let data = vec![i; usize::from(i) * 7];
        writer
            .write_frame(u64::from(i) * 1_000_003, &data, u32::from(i) * 9)
            .unwrap();
    }
    writer.finish().unwrap()
}

/// Real corpus files small enough to fuzz, when the corpus is present.
fn seeds() -> Vec<Vec<u8>> {
    let mut seeds = vec![small_pcap(), sample_pcapng()];
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/pcaps");
    for name in [
        "pcapng-2if-ns-and-us.pcapng",
        "pcapng-nanosec-tcp.pcapng",
        "cut-short-dns.pcap",
        "damaged-record-header.pcap",
        "dns-icmp-ping.pcap",
    ] {
        if let Ok(bytes) = std::fs::read(dir.join(name)) {
            seeds.push(bytes);
        }
    }
    seeds
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512), magic in 0usize..4) {
        let mut input = bytes;
        let magics: [&[u8]; 4] = [b"", b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1", b"\x0a\x0d\x0d\x0a"];
        input.splice(0..0, magics[magic].iter().copied());
        let _ = read_all(&input);
    }

    #[test]
    fn the_readers_agree_on_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512), magic in 0usize..4) {
        let mut input = bytes;
        let magics: [&[u8]; 4] = [b"", b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1", b"\x0a\x0d\x0d\x0a"];
        input.splice(0..0, magics[magic].iter().copied());
        assert_readers_agree(&input)?;
    }

    #[test]
    fn the_readers_agree_on_truncations_and_bit_flips(seed in 0usize..7, cut in any::<prop::sample::Index>(), flips in proptest::collection::vec((any::<prop::sample::Index>(), 0u8..8), 0..4)) {
        let seeds = seeds();
        let whole = &seeds[seed % seeds.len()];
        let mut bytes = whole[..cut.index(whole.len() + 1)].to_vec();
        if !bytes.is_empty() {
            for (at, bit) in flips {
                let at = at.index(bytes.len());
                bytes[at] ^= 1 << bit;
            }
        }
        assert_readers_agree(&bytes)?;
    }

    #[test]
    fn truncation_yields_a_prefix(seed in 0usize..7, cut in any::<prop::sample::Index>()) {
        let seeds = seeds();
        let whole = &seeds[seed % seeds.len()];
        let (all, _) = read_all(whole);
        let cut = cut.index(whole.len() + 1);
        let (some, _) = read_all(&whole[..cut]);
        prop_assert!(some.len() <= all.len());
        prop_assert_eq!(&all[..some.len()], &some[..]);
    }

    #[test]
    fn bit_flips_never_panic(seed in 0usize..7, flips in proptest::collection::vec((any::<prop::sample::Index>(), 0u8..8), 1..6)) {
        let seeds = seeds();
        let mut bytes = seeds[seed % seeds.len()].clone();
        for (at, bit) in flips {
            let at = at.index(bytes.len());
            bytes[at] ^= 1 << bit;
        }
        let _ = read_all(&bytes);
    }
}
