//! [`PcapWriter`]: classic pcap output (one link type, snaplen 262144,
//! microsecond or nanosecond timestamps), buffered, writing each record
//! verbatim — captured bytes and original length as given.

use std::io::{self, BufWriter, Write};

use super::pcap::{MAGIC_MICROSECONDS, MAGIC_NANOSECONDS};
use super::Record;

/// The snaplen written in the file header; records longer than this are refused.
pub const WRITER_SNAPLEN: u32 = 262_144;
/// LINKTYPE_ETHERNET.
pub const LINKTYPE_ETHERNET: u32 = 1;

/// The timestamp unit of the written file (its magic number).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimestampPrecision {
    /// Magic `a1b2c3d4`; nanoseconds are truncated to microseconds.
    Microseconds,
    /// Magic `a1b23c4d`; timestamps are kept exactly.
    #[default]
    Nanoseconds,
}

/// Writes a classic pcap file in the host's byte order (little-endian on
/// every platform nsgd targets, as libpcap does).
pub struct PcapWriter<W: Write> {
    out: BufWriter<W>,
    link_type: u32,
    precision: TimestampPrecision,
    records_written: u64,
}

impl<W: Write> PcapWriter<W> {
    /// Writes the file header at once.
    pub fn new(out: W, link_type: u32, precision: TimestampPrecision) -> io::Result<PcapWriter<W>> {
        let mut out = BufWriter::with_capacity(1 << 20, out);
        let magic = match precision {
            TimestampPrecision::Microseconds => MAGIC_MICROSECONDS,
            TimestampPrecision::Nanoseconds => MAGIC_NANOSECONDS,
        };
        let mut header = [0u8; 24];
        header[0..4].copy_from_slice(&magic.to_le_bytes());
        header[4..6].copy_from_slice(&2u16.to_le_bytes());
        header[6..8].copy_from_slice(&4u16.to_le_bytes());
        // thiszone and sigfigs stay zero.
        header[16..20].copy_from_slice(&WRITER_SNAPLEN.to_le_bytes());
        header[20..24].copy_from_slice(&link_type.to_le_bytes());
        out.write_all(&header)?;
        Ok(PcapWriter {
            out,
            link_type,
            precision,
            records_written: 0,
        })
    }

    pub fn link_type(&self) -> u32 {
        self.link_type
    }

    pub fn records_written(&self) -> u64 {
        self.records_written
    }

    /// Writes one record: `data` as captured, `orig_len` as on the wire
    /// (at least `data.len()` for a sensible file, but not enforced).
    pub fn write_frame(&mut self, timestamp_ns: u64, data: &[u8], orig_len: u32) -> io::Result<()> {
        if data.len() > WRITER_SNAPLEN as usize {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "a record of {} bytes exceeds the snaplen {WRITER_SNAPLEN}",
                    data.len()
                ),
            ));
        }
        let seconds = timestamp_ns / 1_000_000_000;
        let nanoseconds = timestamp_ns % 1_000_000_000;
        let fraction = match self.precision {
            TimestampPrecision::Microseconds => nanoseconds / 1_000,
            TimestampPrecision::Nanoseconds => nanoseconds,
        };
        let seconds = u32::try_from(seconds).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("timestamp {timestamp_ns} ns is past the pcap format's year 2106"),
            )
        })?;
        let mut header = [0u8; 16];
        header[0..4].copy_from_slice(&seconds.to_le_bytes());
        header[4..8].copy_from_slice(&(fraction as u32).to_le_bytes());
        header[8..12].copy_from_slice(&(data.len() as u32).to_le_bytes());
        header[12..16].copy_from_slice(&orig_len.to_le_bytes());
        self.out.write_all(&header)?;
        self.out.write_all(data)?;
        self.records_written += 1;
        Ok(())
    }

    /// Writes a record read from a capture; its link type must be the file's.
    pub fn write_record(&mut self, record: &Record<'_>) -> io::Result<()> {
        if record.link_type != self.link_type {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "a record of link type {} cannot go into a pcap file of link type {}",
                    record.link_type, self.link_type
                ),
            ));
        }
        self.write_frame(record.timestamp_ns, record.data, record.orig_len)
    }

    /// Flushes the buffer and returns the inner writer.
    pub fn finish(self) -> io::Result<W> {
        self.out.into_inner().map_err(|error| error.into_error())
    }
}
