//! [`CaptureReader`]: records out of a pcap or pcapng capture (optionally
//! gzip-compressed), lent one at a time from a reused buffer or copied into a
//! caller-owned [`RecordBatch`]; and [`SliceReader`]: the same records out of
//! a capture whole in memory (a mapped file), lent in place with no copy.
//! Both share one parser ([`Parser`] over a [`ByteSource`]), so they yield
//! the same records and the same errors. Neither allocates per record in
//! steady state or panics on hostile input; a damaged file yields every good
//! record before it, then one [`CaptureError`] naming the offset.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use super::input::{ByteSource, Input, SliceInput};
use super::pcap::PcapFormat;
use super::pcapng::{PcapngFormat, SECTION_HEADER_BLOCK};
use super::{CaptureError, Record, RecordBatch};

/// A record located in the input buffer (shared by the format parsers).
pub(super) struct RecordPosition {
    pub timestamp_ns: u64,
    pub link_type: u32,
    pub caplen: u32,
    pub orig_len: u32,
    /// Buffer position of the first data byte (see `ByteSource::position`).
    pub data_start: usize,
}

impl RecordPosition {
    /// The record, given its bytes (`caplen` of them from `data_start`).
    #[inline]
    fn record(self, data: &[u8]) -> Record<'_> {
        Record {
            timestamp_ns: self.timestamp_ns,
            link_type: self.link_type,
            caplen: self.caplen,
            orig_len: self.orig_len,
            data,
        }
    }
}

pub(super) fn io_error(offset: u64) -> impl FnOnce(io::Error) -> CaptureError {
    move |source| CaptureError::Io { offset, source }
}

/// The container format of a capture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaptureFormat {
    /// Classic pcap; `nanoseconds` for the `a1b23c4d` magic.
    Pcap {
        nanoseconds: bool,
        big_endian: bool,
    },
    Pcapng,
}

#[derive(Clone)]
enum Format {
    Pcap(PcapFormat),
    Pcapng(PcapngFormat),
}

/// The parsing state of one capture, whatever holds its bytes: the format
/// (detected from the file header) and how far the records went.
#[derive(Clone)]
struct Parser {
    format: Format,
    kind: CaptureFormat,
    finished: bool,
    records_read: u64,
}

impl Parser {
    /// Reads the file header at the start of `input` and detects the format.
    fn detect<S: ByteSource>(input: &mut S) -> Result<Parser, CaptureError> {
        if !input.fill(4).map_err(io_error(0))? {
            let available = input.available().len();
            if available == 0 {
                return Err(CaptureError::Empty);
            }
            return Err(CaptureError::Truncated {
                offset: 0,
                what: "file header",
                needed: 4,
                available: available as u64,
                claimed: false,
            });
        }
        let head = input.available();
        let magic = [head[0], head[1], head[2], head[3]];
        let (format, kind) = if let Some((big_endian, nanoseconds)) = PcapFormat::recognise(magic) {
            let format = PcapFormat::read_header(input, big_endian, nanoseconds)?;
            let kind = CaptureFormat::Pcap {
                nanoseconds,
                big_endian,
            };
            (Format::Pcap(format), kind)
        } else if u32::from_le_bytes(magic) == SECTION_HEADER_BLOCK {
            (Format::Pcapng(PcapngFormat::new()), CaptureFormat::Pcapng)
        } else {
            return Err(CaptureError::UnknownFormat { magic });
        };
        Ok(Parser {
            format,
            kind,
            finished: false,
            records_read: 0,
        })
    }

    /// Locates the next record in `input`; after the end or an error, every
    /// later call returns `Ok(None)`.
    #[inline]
    fn advance<S: ByteSource>(
        &mut self,
        input: &mut S,
    ) -> Result<Option<RecordPosition>, CaptureError> {
        if self.finished {
            return Ok(None);
        }
        let result = match &mut self.format {
            Format::Pcap(format) => format.next(input),
            Format::Pcapng(format) => format.next(input),
        };
        match result {
            Ok(Some(position)) => {
                self.records_read += 1;
                Ok(Some(position))
            }
            Ok(None) => {
                self.finished = true;
                Ok(None)
            }
            Err(error) => {
                self.finished = true;
                Err(error)
            }
        }
    }
}

/// Reads records from a capture. Typical use:
///
/// ```no_run
/// # fn main() -> Result<(), nsgd::io::CaptureError> {
/// let mut reader = nsgd::io::CaptureReader::open("trace.pcap")?;
/// while let Some(record) = reader.next_record()? {
///     println!("{} {} bytes", record.timestamp_ns, record.caplen);
/// }
/// # Ok(()) }
/// ```
pub struct CaptureReader<R> {
    input: Input<R>,
    parser: Parser,
    compressed: bool,
    /// An error found while filling a batch, returned on the next call.
    pending: Option<CaptureError>,
}

impl CaptureReader<File> {
    /// Opens a capture file (pcap, pcapng, either gzip-compressed or not).
    pub fn open(path: impl AsRef<Path>) -> Result<CaptureReader<File>, CaptureError> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|source| CaptureError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        CaptureReader::new(file)
    }
}

impl<R: Read> CaptureReader<R> {
    /// Reads the file header from `inner` and detects the format (and gzip).
    /// Reads in large chunks itself, so `inner` need not be buffered.
    pub fn new(inner: R) -> Result<CaptureReader<R>, CaptureError> {
        let mut input = Input::new(inner).map_err(io_error(0))?;
        let parser = Parser::detect(&mut input)?;
        Ok(CaptureReader {
            compressed: input.is_compressed(),
            input,
            parser,
            pending: None,
        })
    }

    pub fn format(&self) -> CaptureFormat {
        self.parser.kind
    }

    /// True when the input was gzip-compressed.
    pub fn is_compressed(&self) -> bool {
        self.compressed
    }

    /// Records delivered so far (singly or in batches).
    pub fn records_read(&self) -> u64 {
        self.parser.records_read
    }

    /// Offset (in the decompressed stream) of the next unread byte.
    pub fn offset(&self) -> u64 {
        self.input.offset()
    }

    /// The next record, borrowed until the next call; `Ok(None)` at the end
    /// of the capture. After an error, every later call returns `Ok(None)`.
    #[inline]
    pub fn next_record(&mut self) -> Result<Option<Record<'_>>, CaptureError> {
        let Some(position) = self.advance()? else {
            return Ok(None);
        };
        let data = self
            .input
            .slice(position.data_start, position.caplen as usize);
        Ok(Some(position.record(data)))
    }

    /// Clears `batch` and fills it with the next records until it is full or
    /// the capture ends; returns how many it holds (0 at the end). An error
    /// met after some records is returned by the next call, so the records
    /// before it are never lost.
    pub fn read_batch(&mut self, batch: &mut RecordBatch) -> Result<usize, CaptureError> {
        batch.clear();
        while !batch.is_full() {
            match self.advance() {
                Ok(Some(position)) => {
                    let data = self
                        .input
                        .slice(position.data_start, position.caplen as usize);
                    batch.push(&position.record(data));
                }
                Ok(None) => break,
                Err(error) if batch.is_empty() => return Err(error),
                Err(error) => {
                    self.pending = Some(error);
                    break;
                }
            }
        }
        Ok(batch.len())
    }

    #[inline]
    fn advance(&mut self) -> Result<Option<RecordPosition>, CaptureError> {
        if let Some(error) = self.pending.take() {
            return Err(error);
        }
        self.parser.advance(&mut self.input)
    }
}

/// Reads the records of a capture that is whole in memory (typically a
/// mapped file, see [`MappedCapture`](super::MappedCapture)), lending each
/// record's bytes straight out of the slice for the slice's lifetime: no
/// copy, no buffer. Yields exactly the records and errors a
/// [`CaptureReader`] yields on the same bytes, uncompressed (a gzip stream
/// is an [`UnknownFormat`](CaptureError::UnknownFormat) here).
///
/// ```
/// # fn main() -> Result<(), nsgd::io::CaptureError> {
/// # let bytes = nsgd::io::PcapWriter::new(Vec::new(), 1, Default::default())
/// #     .unwrap().finish().unwrap();
/// let mut reader = nsgd::io::SliceReader::new(&bytes)?;
/// while let Some(record) = reader.next_record()? {
///     println!("{} {} bytes", record.timestamp_ns, record.caplen);
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SliceReader<'a> {
    input: SliceInput<'a>,
    parser: Parser,
}

impl<'a> SliceReader<'a> {
    /// Reads the file header at the start of `bytes` and detects the format.
    pub fn new(bytes: &'a [u8]) -> Result<SliceReader<'a>, CaptureError> {
        let mut input = SliceInput::new(bytes);
        let parser = Parser::detect(&mut input)?;
        Ok(SliceReader { input, parser })
    }

    pub fn format(&self) -> CaptureFormat {
        self.parser.kind
    }

    /// Records delivered so far.
    pub fn records_read(&self) -> u64 {
        self.parser.records_read
    }

    /// Offset of the next unread byte.
    pub fn offset(&self) -> u64 {
        self.input.offset()
    }

    /// The next record, its bytes borrowed from the slice; `Ok(None)` at the
    /// end of the capture. After an error, every later call returns `Ok(None)`.
    #[inline]
    pub fn next_record(&mut self) -> Result<Option<Record<'a>>, CaptureError> {
        let Some(position) = self.parser.advance(&mut self.input)? else {
            return Ok(None);
        };
        self.input.read_ahead();
        let data = self
            .input
            .slice(position.data_start, position.caplen as usize);
        Ok(Some(position.record(data)))
    }
}
