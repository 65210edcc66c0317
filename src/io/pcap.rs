//! Classic pcap (libpcap's format): a 24-byte file header whose magic number
//! gives the byte order and the timestamp unit (microseconds `a1b2c3d4`,
//! nanoseconds `a1b23c4d`), then records of a 16-byte header and `incl_len`
//! bytes. Parsing only; the bytes come from a [`ByteSource`] (the buffered
//! reader's or a mapped file's).

use super::input::ByteSource;
use super::reader::{io_error, RecordPosition};
use super::CaptureError;

pub(super) const MAGIC_MICROSECONDS: u32 = 0xa1b2_c3d4;
pub(super) const MAGIC_NANOSECONDS: u32 = 0xa1b2_3c4d;
const FILE_HEADER_LEN: usize = 24;
const RECORD_HEADER_LEN: usize = 16;
/// libpcap's largest snaplen; a record may exceed a smaller file snaplen
/// (some writers do that) but never this, unless the header says more.
pub(super) const MAX_SNAPLEN: u32 = 262_144;

#[derive(Clone)]
pub(super) struct PcapFormat {
    big_endian: bool,
    nanoseconds: bool,
    link_type: u32,
    record_limit: u32,
}

impl PcapFormat {
    /// Recognises the magic number in the first four bytes.
    pub(super) fn recognise(magic: [u8; 4]) -> Option<(bool, bool)> {
        let little = u32::from_le_bytes(magic);
        let big = u32::from_be_bytes(magic);
        match (little, big) {
            (MAGIC_MICROSECONDS, _) => Some((false, false)),
            (_, MAGIC_MICROSECONDS) => Some((true, false)),
            (MAGIC_NANOSECONDS, _) => Some((false, true)),
            (_, MAGIC_NANOSECONDS) => Some((true, true)),
            _ => None,
        }
    }

    /// Reads the file header; the input is at offset 0 and the magic number
    /// was recognised as (`big_endian`, `nanoseconds`).
    pub(super) fn read_header<S: ByteSource>(
        input: &mut S,
        big_endian: bool,
        nanoseconds: bool,
    ) -> Result<PcapFormat, CaptureError> {
        let offset = input.offset();
        if !input.fill(FILE_HEADER_LEN).map_err(io_error(offset))? {
            return Err(CaptureError::Truncated {
                offset,
                what: "pcap file header",
                needed: FILE_HEADER_LEN as u64,
                available: input.available().len() as u64,
                claimed: false,
            });
        }
        let header = input.available();
        let snaplen = read_u32(header, 16, big_endian);
        // The upper bits of the link-type field carry FCS flags; the LINKTYPE
        // number is the low 16 bits.
        let link_type = read_u32(header, 20, big_endian) & 0xffff;
        input.consume(FILE_HEADER_LEN);
        Ok(PcapFormat {
            big_endian,
            nanoseconds,
            link_type,
            record_limit: snaplen.max(MAX_SNAPLEN),
        })
    }

    pub(super) fn next<S: ByteSource>(
        &mut self,
        input: &mut S,
    ) -> Result<Option<RecordPosition>, CaptureError> {
        let offset = input.offset();
        if !input.fill(RECORD_HEADER_LEN).map_err(io_error(offset))? {
            let available = input.available().len();
            if available == 0 {
                return Ok(None);
            }
            return Err(CaptureError::Truncated {
                offset,
                what: "record header",
                needed: RECORD_HEADER_LEN as u64,
                available: available as u64,
                claimed: false,
            });
        }
        let header = input.available();
        let big = self.big_endian;
        let seconds = u64::from(read_u32(header, 0, big));
        let fraction = u64::from(read_u32(header, 4, big));
        let caplen = read_u32(header, 8, big);
        let orig_len = read_u32(header, 12, big);
        if caplen > self.record_limit {
            return Err(CaptureError::Malformed {
                offset,
                what: "record header",
                reason: format!(
                    "it claims {caplen} captured bytes, more than the largest snaplen ({})",
                    self.record_limit
                ),
            });
        }
        let total = RECORD_HEADER_LEN + caplen as usize;
        if !input.fill(total).map_err(io_error(offset))? {
            return Err(CaptureError::Truncated {
                offset,
                what: "record header",
                needed: u64::from(caplen),
                available: (input.available().len() - RECORD_HEADER_LEN) as u64,
                claimed: true,
            });
        }
        let fraction_ns = if self.nanoseconds {
            fraction
        } else {
            fraction * 1_000
        };
        let data_start = input.position() + RECORD_HEADER_LEN;
        input.consume(total);
        Ok(Some(RecordPosition {
            timestamp_ns: seconds * 1_000_000_000 + fraction_ns,
            link_type: self.link_type,
            caplen,
            orig_len,
            data_start,
        }))
    }
}

#[inline]
pub(super) fn read_u32(bytes: &[u8], at: usize, big_endian: bool) -> u32 {
    let word = [bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]];
    if big_endian {
        u32::from_be_bytes(word)
    } else {
        u32::from_le_bytes(word)
    }
}

#[inline]
pub(super) fn read_u16(bytes: &[u8], at: usize, big_endian: bool) -> u16 {
    let word = [bytes[at], bytes[at + 1]];
    if big_endian {
        u16::from_be_bytes(word)
    } else {
        u16::from_le_bytes(word)
    }
}
