//! pcapng: a sequence of blocks (`type`, `total length`, body, `total
//! length`). A section header block fixes the byte order and starts a new set
//! of interfaces; each interface description block declares one interface
//! with its own link type, snaplen, timestamp resolution (`if_tsresol`,
//! decimal or binary) and offset (`if_tsoffset`). Packets come in enhanced,
//! simple and (obsolete) packet blocks; every other block is skipped.
//! Parsing only; the bytes come from a [`ByteSource`] (the buffered reader's
//! or a mapped file's).

use super::input::ByteSource;
use super::pcap::{read_u16, read_u32};
use super::reader::{io_error, RecordPosition};
use super::CaptureError;

pub(super) const SECTION_HEADER_BLOCK: u32 = 0x0a0d_0d0a;
const INTERFACE_DESCRIPTION_BLOCK: u32 = 1;
const PACKET_BLOCK: u32 = 2;
const SIMPLE_PACKET_BLOCK: u32 = 3;
const ENHANCED_PACKET_BLOCK: u32 = 6;
const BYTE_ORDER_MAGIC: u32 = 0x1a2b_3c4d;
/// Larger blocks are taken as corruption (Wireshark's limit is 16 MiB too).
const MAX_BLOCK_LEN: u32 = 16 << 20;
const OPTION_END: u16 = 0;
const OPTION_IF_TSRESOL: u16 = 9;
const OPTION_IF_TSOFFSET: u16 = 14;

/// How one interface's timestamp ticks become nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TickScale {
    Multiply(u64),
    Divide(u64),
    /// Ticks of 2^-n seconds.
    Binary(u32),
}

impl TickScale {
    fn from_tsresol(value: u8) -> TickScale {
        if value & 0x80 != 0 {
            return TickScale::Binary(u32::from(value & 0x7f));
        }
        if value <= 9 {
            TickScale::Multiply(10u64.pow(9 - u32::from(value)))
        } else {
            // 10^19 is the largest power of ten a u64 holds; finer ticks than
            // that round every timestamp to zero nanoseconds anyway.
            TickScale::Divide(10u64.checked_pow(u32::from(value) - 9).unwrap_or(u64::MAX))
        }
    }

    #[inline]
    fn to_nanoseconds(self, ticks: u64) -> u64 {
        match self {
            TickScale::Multiply(factor) => ticks.saturating_mul(factor),
            TickScale::Divide(divisor) => ticks / divisor,
            TickScale::Binary(shift) => {
                let nanoseconds = (u128::from(ticks) * 1_000_000_000) >> shift;
                u64::try_from(nanoseconds).unwrap_or(u64::MAX)
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Interface {
    link_type: u32,
    snaplen: u32,
    scale: TickScale,
    /// `if_tsoffset` in nanoseconds.
    offset_ns: i128,
}

impl Interface {
    #[inline]
    fn timestamp(&self, ticks: u64) -> u64 {
        let nanoseconds = self.scale.to_nanoseconds(ticks);
        if self.offset_ns == 0 {
            return nanoseconds;
        }
        (i128::from(nanoseconds) + self.offset_ns).clamp(0, i128::from(u64::MAX)) as u64
    }
}

#[derive(Clone)]
pub(super) struct PcapngFormat {
    big_endian: bool,
    interfaces: Vec<Interface>,
    /// Simple packet blocks carry no timestamp; they get the last one seen.
    last_timestamp: u64,
}

impl PcapngFormat {
    pub(super) fn new() -> PcapngFormat {
        PcapngFormat {
            big_endian: false,
            interfaces: Vec::new(),
            last_timestamp: 0,
        }
    }

    pub(super) fn next<S: ByteSource>(
        &mut self,
        input: &mut S,
    ) -> Result<Option<RecordPosition>, CaptureError> {
        loop {
            let offset = input.offset();
            if !input.fill(12).map_err(io_error(offset))? {
                let available = input.available().len();
                if available == 0 {
                    return Ok(None);
                }
                return Err(CaptureError::Truncated {
                    offset,
                    what: "block header",
                    needed: 12,
                    available: available as u64,
                    claimed: false,
                });
            }
            let head = input.available();
            let block_type = read_u32(head, 0, self.big_endian);
            let big_endian = if block_type == SECTION_HEADER_BLOCK {
                match u32::from_be_bytes([head[8], head[9], head[10], head[11]]) {
                    BYTE_ORDER_MAGIC => true,
                    magic if magic.swap_bytes() == BYTE_ORDER_MAGIC => false,
                    magic => {
                        return Err(malformed(
                            offset,
                            "section header block",
                            format!("its byte-order magic is {magic:08x}, not 1a2b3c4d"),
                        ))
                    }
                }
            } else {
                self.big_endian
            };
            let total = read_u32(head, 4, big_endian);
            if total < 12 || total % 4 != 0 || total > MAX_BLOCK_LEN {
                return Err(malformed(
                    offset,
                    "block",
                    format!(
                        "its length {total} is not a multiple of 4 between 12 and {MAX_BLOCK_LEN}"
                    ),
                ));
            }
            let total = total as usize;
            if !input.fill(total).map_err(io_error(offset))? {
                return Err(CaptureError::Truncated {
                    offset,
                    what: "block",
                    needed: total as u64,
                    available: input.available().len() as u64,
                    claimed: true,
                });
            }
            let block = &input.available()[..total];
            let trailer = read_u32(block, total - 4, big_endian);
            if trailer as usize != total {
                return Err(malformed(
                    offset,
                    "block",
                    format!(
                        "its trailing length {trailer} differs from its leading length {total}"
                    ),
                ));
            }
            let body = &block[8..total - 4];
            let body_start = input.position() + 8;
            let record = match block_type {
                SECTION_HEADER_BLOCK => {
                    self.section_header(offset, body, big_endian)?;
                    None
                }
                INTERFACE_DESCRIPTION_BLOCK => {
                    self.interface_description(offset, body)?;
                    None
                }
                ENHANCED_PACKET_BLOCK => Some(self.enhanced_packet(offset, body, body_start)?),
                SIMPLE_PACKET_BLOCK => Some(self.simple_packet(offset, body, body_start)?),
                PACKET_BLOCK => Some(self.packet(offset, body, body_start)?),
                _ => None,
            };
            input.consume(total);
            if let Some(record) = record {
                self.last_timestamp = record.timestamp_ns;
                return Ok(Some(record));
            }
        }
    }

    fn section_header(
        &mut self,
        offset: u64,
        body: &[u8],
        big_endian: bool,
    ) -> Result<(), CaptureError> {
        const WHAT: &str = "section header block";
        if body.len() < 16 {
            return Err(too_short(offset, WHAT, body.len(), 16));
        }
        let major = read_u16(body, 4, big_endian);
        if major != 1 {
            return Err(malformed(
                offset,
                WHAT,
                format!("its major version is {major}; only version 1 exists"),
            ));
        }
        self.big_endian = big_endian;
        self.interfaces.clear();
        Ok(())
    }

    fn interface_description(&mut self, offset: u64, body: &[u8]) -> Result<(), CaptureError> {
        const WHAT: &str = "interface description block";
        if body.len() < 8 {
            return Err(too_short(offset, WHAT, body.len(), 8));
        }
        let big = self.big_endian;
        let mut interface = Interface {
            link_type: u32::from(read_u16(body, 0, big)),
            snaplen: read_u32(body, 4, big),
            scale: TickScale::from_tsresol(6),
            offset_ns: 0,
        };
        // Options are read leniently: a list that runs past the block ends
        // there, and the defaults stand for what it did not say.
        let mut at = 8;
        while at + 4 <= body.len() {
            let code = read_u16(body, at, big);
            let len = usize::from(read_u16(body, at + 2, big));
            let value_start = at + 4;
            let Some(value) = body.get(value_start..value_start + len) else {
                break;
            };
            match code {
                OPTION_END => break,
                OPTION_IF_TSRESOL if len >= 1 => {
                    interface.scale = TickScale::from_tsresol(value[0]);
                }
                OPTION_IF_TSOFFSET if len >= 8 => {
                    let low = read_u32(value, if big { 4 } else { 0 }, big);
                    let high = read_u32(value, if big { 0 } else { 4 }, big);
                    let seconds = ((u64::from(high) << 32) | u64::from(low)) as i64;
                    interface.offset_ns = i128::from(seconds) * 1_000_000_000;
                }
                _ => {}
            }
            at = value_start + len.next_multiple_of(4);
        }
        self.interfaces.push(interface);
        Ok(())
    }

    fn interface(
        &self,
        offset: u64,
        what: &'static str,
        id: u32,
    ) -> Result<Interface, CaptureError> {
        self.interfaces.get(id as usize).copied().ok_or_else(|| {
            malformed(
                offset,
                what,
                format!(
                    "it names interface {id}, but the section declares {} interface(s)",
                    self.interfaces.len()
                ),
            )
        })
    }

    fn enhanced_packet(
        &self,
        offset: u64,
        body: &[u8],
        body_start: usize,
    ) -> Result<RecordPosition, CaptureError> {
        const WHAT: &str = "enhanced packet block";
        if body.len() < 20 {
            return Err(too_short(offset, WHAT, body.len(), 20));
        }
        let big = self.big_endian;
        let interface = self.interface(offset, WHAT, read_u32(body, 0, big))?;
        let ticks = (u64::from(read_u32(body, 4, big)) << 32) | u64::from(read_u32(body, 8, big));
        let caplen = read_u32(body, 12, big);
        let orig_len = read_u32(body, 16, big);
        if caplen as usize > body.len() - 20 {
            return Err(malformed(
                offset,
                WHAT,
                format!(
                    "its captured length {caplen} exceeds the {} data bytes the block holds",
                    body.len() - 20
                ),
            ));
        }
        Ok(RecordPosition {
            timestamp_ns: interface.timestamp(ticks),
            link_type: interface.link_type,
            caplen,
            orig_len,
            data_start: body_start + 20,
        })
    }

    fn simple_packet(
        &self,
        offset: u64,
        body: &[u8],
        body_start: usize,
    ) -> Result<RecordPosition, CaptureError> {
        const WHAT: &str = "simple packet block";
        if body.len() < 4 {
            return Err(too_short(offset, WHAT, body.len(), 4));
        }
        let interface = self.interface(offset, WHAT, 0)?;
        let orig_len = read_u32(body, 0, self.big_endian);
        let mut caplen = orig_len.min((body.len() - 4) as u32);
        if interface.snaplen != 0 {
            caplen = caplen.min(interface.snaplen);
        }
        Ok(RecordPosition {
            timestamp_ns: self.last_timestamp,
            link_type: interface.link_type,
            caplen,
            orig_len,
            data_start: body_start + 4,
        })
    }

    fn packet(
        &self,
        offset: u64,
        body: &[u8],
        body_start: usize,
    ) -> Result<RecordPosition, CaptureError> {
        const WHAT: &str = "packet block";
        if body.len() < 20 {
            return Err(too_short(offset, WHAT, body.len(), 20));
        }
        let big = self.big_endian;
        let interface = self.interface(offset, WHAT, u32::from(read_u16(body, 0, big)))?;
        let ticks = (u64::from(read_u32(body, 4, big)) << 32) | u64::from(read_u32(body, 8, big));
        let caplen = read_u32(body, 12, big);
        let orig_len = read_u32(body, 16, big);
        if caplen as usize > body.len() - 20 {
            return Err(malformed(
                offset,
                WHAT,
                format!(
                    "its captured length {caplen} exceeds the {} data bytes the block holds",
                    body.len() - 20
                ),
            ));
        }
        Ok(RecordPosition {
            timestamp_ns: interface.timestamp(ticks),
            link_type: interface.link_type,
            caplen,
            orig_len,
            data_start: body_start + 20,
        })
    }
}

fn malformed(offset: u64, what: &'static str, reason: String) -> CaptureError {
    CaptureError::Malformed {
        offset,
        what,
        reason,
    }
}

fn too_short(offset: u64, what: &'static str, len: usize, minimum: usize) -> CaptureError {
    malformed(
        offset,
        what,
        format!("its body has {len} bytes, fewer than the {minimum} its fixed fields need"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_scales() {
        assert_eq!(
            TickScale::from_tsresol(6).to_nanoseconds(1_500_000),
            1_500_000_000
        );
        assert_eq!(TickScale::from_tsresol(9).to_nanoseconds(7), 7);
        assert_eq!(TickScale::from_tsresol(12).to_nanoseconds(7_000), 7);
        assert_eq!(
            TickScale::from_tsresol(0x80 | 10).to_nanoseconds(1024),
            1_000_000_000
        );
        assert_eq!(
            TickScale::from_tsresol(0x80 | 127).to_nanoseconds(u64::MAX),
            0
        );
        assert_eq!(
            TickScale::from_tsresol(0).to_nanoseconds(u64::MAX),
            u64::MAX
        );
        assert!(TickScale::from_tsresol(127).to_nanoseconds(u64::MAX) <= 1);
    }
}
