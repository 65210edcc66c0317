//! What can go wrong while reading a capture. Every variant that concerns the
//! file's content carries the byte offset (in the decompressed stream) where
//! the problem starts, and says whether bytes were *missing* (the file ends
//! early) or *wrong* (a value no valid capture holds).

use std::io;

/// An error from [`CaptureReader`](super::CaptureReader). Records before the
/// error have all been delivered when it is returned; after it, the reader
/// yields no more records.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// The underlying reader (or the gzip decoder) failed.
    #[error("cannot read the capture at offset {offset}: {source}")]
    Io {
        offset: u64,
        #[source]
        source: io::Error,
    },

    /// The capture file cannot be opened.
    #[error("cannot open the capture {}: {source}", path.display())]
    Open {
        path: std::path::PathBuf,
        #[source]
        source: io::Error,
    },

    /// The input holds no bytes at all.
    #[error("the capture is empty (0 bytes)")]
    Empty,

    /// The first four bytes are neither a pcap, pcapng nor gzip magic number.
    #[error(
        "unknown capture format: the file starts with {magic:02x?}, which is no pcap, pcapng or gzip magic number"
    )]
    UnknownFormat { magic: [u8; 4] },

    /// The file ends inside a header, record or block: bytes are missing.
    /// `claimed` says whether `needed` is a length the file itself states
    /// ("claims") or the fixed size of a header ("needs").
    #[error(
        "{what} at offset {offset} {verb} {needed} bytes but only {available} remain",
        verb = if *claimed { "claims" } else { "needs" }
    )]
    Truncated {
        offset: u64,
        /// What was being read: "file header", "record header", "block", …
        what: &'static str,
        needed: u64,
        available: u64,
        claimed: bool,
    },

    /// A header field holds a value no valid capture holds: bytes are wrong.
    #[error("{what} at offset {offset} is malformed: {reason}")]
    Malformed {
        offset: u64,
        what: &'static str,
        reason: String,
    },
}

impl CaptureError {
    /// The byte offset the error refers to, when it concerns the file's content.
    pub fn offset(&self) -> Option<u64> {
        match self {
            CaptureError::Io { offset, .. }
            | CaptureError::Truncated { offset, .. }
            | CaptureError::Malformed { offset, .. } => Some(*offset),
            CaptureError::Open { .. }
            | CaptureError::Empty
            | CaptureError::UnknownFormat { .. } => None,
        }
    }
}
