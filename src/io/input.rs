//! The byte source under the capture reader: one growable buffer refilled in
//! large reads from any `Read`, with transparent gzip decompression (detected
//! by the magic bytes 1f 8b) and the file offset of every byte, so errors can
//! say where they happened. Offsets count decompressed bytes.
//!
//! Invariant: `start <= end <= buffer.len()`; `buffer[start..end]` holds the
//! unread bytes, the first of them at file offset `base + start`. Bytes
//! before `start` stay valid until the next [`Input::fill`], which is what
//! lets the reader lend record data straight out of the buffer.

use std::io::{self, Chain, Cursor, Read};

use flate2::read::MultiGzDecoder;

const READ_CHUNK: usize = 1 << 20;

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
        let (source, buffered) = if have >= 2 && prefix[..2] == [0x1f, 0x8b] {
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

    /// File offset of the first unread byte.
    #[inline]
    pub(super) fn offset(&self) -> u64 {
        self.base + self.start as u64
    }

    /// The unread bytes currently buffered.
    #[inline]
    pub(super) fn available(&self) -> &[u8] {
        &self.buffer[self.start..self.end]
    }

    /// Marks `count` buffered bytes as read. Their content stays readable
    /// through [`consumed`](Self::consumed) until the next `fill`.
    #[inline]
    pub(super) fn consume(&mut self, count: usize) {
        debug_assert!(count <= self.end - self.start);
        self.start = (self.start + count).min(self.end);
    }

    /// Bytes `range` (buffer positions) of already-consumed data.
    #[inline]
    pub(super) fn slice(&self, start: usize, len: usize) -> &[u8] {
        &self.buffer[start..start + len]
    }

    /// Buffer position of the first unread byte (pairs with [`slice`](Self::slice)).
    #[inline]
    pub(super) fn position(&self) -> usize {
        self.start
    }

    /// Makes at least `need` unread bytes available. Returns `false` when the
    /// input ends first; the bytes that do remain are then `available()`.
    #[inline]
    pub(super) fn fill(&mut self, need: usize) -> io::Result<bool> {
        if self.end - self.start >= need {
            return Ok(true);
        }
        self.fill_slow(need)
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

impl<R> Input<R> {
    /// True when the bytes pass through the gzip decoder.
    pub(super) fn is_compressed(&self) -> bool {
        matches!(self.source, Source::Gzip(_))
    }
}
