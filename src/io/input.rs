//! The byte sources under the format parsers ([`ByteSource`]): [`Input`],
//! one growable buffer refilled in large reads from any `Read`, with
//! transparent gzip decompression (detected by the magic bytes 1f 8b), and
//! [`SliceInput`], a capture already whole in memory (a mapped file), read in
//! place. Both give the file offset of every byte, so errors can say where
//! they happened. Offsets count decompressed bytes.
//!
//! `Input`'s invariant: `start <= end <= buffer.len()`; `buffer[start..end]`
//! holds the unread bytes, the first of them at file offset `base + start`.
//! Bytes before `start` stay valid until the next [`ByteSource::fill`], which
//! is what lets the reader lend record data straight out of the buffer.

use std::io::{self, Chain, Cursor, Read};

use flate2::read::MultiGzDecoder;

use super::prefetch::prefetch;

const READ_CHUNK: usize = 1 << 20;

/// Where the pcap and pcapng parsers take their bytes from. Positions
/// (`position`, a record's `data_start`) index the source's own buffer: an
/// `Input`'s (valid until its next `fill`) or a `SliceInput`'s whole slice.
pub(super) trait ByteSource {
    /// File offset of the first unread byte.
    fn offset(&self) -> u64;
    /// The unread bytes currently at hand.
    fn available(&self) -> &[u8];
    /// Marks `count` available bytes as read. Their content stays readable
    /// by position until the next `fill`.
    fn consume(&mut self, count: usize);
    /// Buffer position of the first unread byte.
    fn position(&self) -> usize;
    /// Makes at least `need` unread bytes available. Returns `false` when the
    /// input ends first; the bytes that do remain are then `available()`.
    fn fill(&mut self, need: usize) -> io::Result<bool>;
}

/// True when `prefix` (the first bytes of a file) starts a gzip stream.
pub(super) fn is_gzip(prefix: &[u8]) -> bool {
    prefix.len() >= 2 && prefix[..2] == [0x1f, 0x8b]
}

enum Source<R> {
    Plain(R),
    Gzip(Box<MultiGzDecoder<Chain<Cursor<Vec<u8>>, R>>>),
}

impl<R: Read> Read for Source<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        match self {
            Source::Plain(inner) => inner.read(out),
            Source::Gzip(inner) => inner.read(out),
        }
    }
}

pub(super) struct Input<R> {
    source: Source<R>,
    buffer: Vec<u8>,
    start: usize,
    end: usize,
    base: u64,
    at_eof: bool,
}

impl<R: Read> Input<R> {
    /// Wraps `inner`, peeking at its first bytes to decide whether it is
    /// gzip-compressed.
    pub(super) fn new(mut inner: R) -> io::Result<Input<R>> {
        let mut prefix = [0u8; 4];
        let mut have = 0;
        while have < prefix.len() {
            match inner.read(&mut prefix[have..]) {
                Ok(0) => break,
                Ok(n) => have += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let (source, buffered) = if is_gzip(&prefix[..have]) {
            let prefix = Cursor::new(prefix[..have].to_vec());
            let decoder = MultiGzDecoder::new(prefix.chain(inner));
            (Source::Gzip(Box::new(decoder)), 0)
        } else {
            (Source::Plain(inner), have)
        };
        let mut input = Input {
            source,
            buffer: vec![0; READ_CHUNK],
            start: 0,
            end: buffered,
            base: 0,
            at_eof: false,
        };
        input.buffer[..buffered].copy_from_slice(&prefix[..buffered]);
        Ok(input)
    }

    /// Bytes `start..start + len` (buffer positions) of already-consumed data.
    #[inline]
    pub(super) fn slice(&self, start: usize, len: usize) -> &[u8] {
        &self.buffer[start..start + len]
    }

    #[cold]
    fn fill_slow(&mut self, need: usize) -> io::Result<bool> {
        if self.start > 0 {
            self.buffer.copy_within(self.start..self.end, 0);
            self.base += self.start as u64;
            self.end -= self.start;
            self.start = 0;
        }
        while self.end < need && !self.at_eof {
            // Grow as data arrives, not as a header claims: a hostile length
            // field must not make us allocate what the file does not hold.
            if self.end == self.buffer.len() {
                let grown = (self.buffer.len() * 2).min(need.next_power_of_two());
                self.buffer.resize(grown, 0);
            }
            match self.source.read(&mut self.buffer[self.end..]) {
                Ok(0) => self.at_eof = true,
                Ok(n) => self.end += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(self.end >= need)
    }
}

impl<R: Read> ByteSource for Input<R> {
    #[inline]
    fn offset(&self) -> u64 {
        self.base + self.start as u64
    }

    #[inline]
    fn available(&self) -> &[u8] {
        &self.buffer[self.start..self.end]
    }

    #[inline]
    fn consume(&mut self, count: usize) {
        debug_assert!(count <= self.end - self.start);
        self.start = (self.start + count).min(self.end);
    }

    #[inline]
    fn position(&self) -> usize {
        self.start
    }

    #[inline]
    fn fill(&mut self, need: usize) -> io::Result<bool> {
        if self.end - self.start >= need {
            return Ok(true);
        }
        self.fill_slow(need)
    }
}

/// How far ahead of the cursor [`SliceInput::read_ahead`] brings the bytes
/// into the cache.
const READ_AHEAD: usize = 4096;
/// The cache line size of every platform nsgd targets (a larger one only
/// means some lines are touched twice).
const CACHE_LINE: usize = 64;

/// A whole capture in memory, read in place: positions are offsets into the
/// slice, so record data can be lent for the slice's whole lifetime.
#[derive(Debug, Clone, Copy)]
pub(super) struct SliceInput<'a> {
    bytes: &'a [u8],
    start: usize,
    /// Bytes before this position were touched by `read_ahead`.
    touched: usize,
}

impl<'a> SliceInput<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> SliceInput<'a> {
        SliceInput {
            bytes,
            start: 0,
            touched: 0,
        }
    }

    /// Prefetches every cache line up to `READ_AHEAD` bytes past the
    /// cursor. Each record's header says where the next one starts, so
    /// walking a capture is a chain of dependent loads, each a cache miss (a
    /// memory latency per record); prefetches of the lines ahead do not
    /// wait on each other, so the memory streams in and the chain then hits
    /// the cache. Measured walking a capture of 700-byte frames: 115 ns a
    /// record without, 31 with.
    #[inline]
    pub(super) fn read_ahead(&mut self) {
        let target = (self.start + READ_AHEAD).min(self.bytes.len());
        let mut at = self.touched.max(self.start);
        while at < target {
            prefetch(self.bytes, at);
            at += CACHE_LINE;
        }
        self.touched = at;
    }

    /// Bytes `start..start + len` of the slice.
    #[inline]
    pub(super) fn slice(&self, start: usize, len: usize) -> &'a [u8] {
        &self.bytes[start..start + len]
    }
}

impl ByteSource for SliceInput<'_> {
    #[inline]
    fn offset(&self) -> u64 {
        self.start as u64
    }

    #[inline]
    fn available(&self) -> &[u8] {
        &self.bytes[self.start..]
    }

    #[inline]
    fn consume(&mut self, count: usize) {
        debug_assert!(count <= self.bytes.len() - self.start);
        self.start = (self.start + count).min(self.bytes.len());
    }

    #[inline]
    fn position(&self) -> usize {
        self.start
    }

    #[inline]
    fn fill(&mut self, need: usize) -> io::Result<bool> {
        Ok(self.bytes.len() - self.start >= need)
    }
}

impl<R> Input<R> {
    /// True when the bytes pass through the gzip decoder.
    pub(super) fn is_compressed(&self) -> bool {
        matches!(self.source, Source::Gzip(_))
    }
}
