//! Capture files and synthetic traffic: reading pcap/pcapng (plain or
//! gzip-compressed) into records, or in place from a mapped file; writing
//! classic pcap; generating realistic stateful traffic for an estate; and
//! live ports (AF_PACKET rings on Linux interfaces, `live`, and AF_XDP
//! receive, `xdp`).
//!
//! This room moves bytes; it does not interpret frames beyond what the
//! generator builds. Nothing here spawns threads, reads the clock or logs:
//! timestamps come from the file (or the generator's virtual clock). The
//! reader lends records from one reused buffer (or the mapped file) and
//! never panics on input.

pub mod coalesce;
mod error;
pub mod generate;

mod input;
pub mod live;
mod xdp;
// Mapping a file is unsafe: see the SAFETY comment in the module.
#[allow(unsafe_code)]
mod mapped;
mod pcap;
mod pcapng;
// A prefetch instruction is unsafe to call before Rust 1.87.
#[allow(unsafe_code)]
mod prefetch;
mod reader;
#[cfg(test)]
mod reader_tests;
mod record;
mod writer;

pub use error::CaptureError;
pub use generate::{generate, GenerateError, GenerateOptions, GenerateStats};

pub use mapped::MappedCapture;
pub(crate) use prefetch::prefetch;
pub use reader::{CaptureFormat, CaptureReader, SliceReader};
pub use record::{Record, RecordBatch, RecordMeta};
pub use writer::{PcapWriter, TimestampPrecision, LINKTYPE_ETHERNET, WRITER_SNAPLEN};
