//! One captured frame as the reader lends it ([`Record`]), and a reusable
//! batch of them ([`RecordBatch`]) that owns one contiguous byte buffer and
//! the per-record metadata, so batches can travel between threads and be
//! recycled without allocating per record.

/// One captured frame, borrowed from the reader's (or a batch's) buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// Nanoseconds since the Unix epoch, after the interface's resolution
    /// and `if_tsoffset` are applied.
    pub timestamp_ns: u64,
    /// The LINKTYPE number as the file states it (pcap header or pcapng IDB);
    /// no DLT mapping (raw IP stays 101).
    pub link_type: u32,
    /// Bytes captured; always `data.len()`.
    pub caplen: u32,
    /// Length of the frame on the wire; larger than `caplen` for frames the
    /// capture cut at its snaplen.
    pub orig_len: u32,
    pub data: &'a [u8],
}

impl Record<'_> {
    /// True when the capture kept only part of the frame.
    pub fn is_truncated(&self) -> bool {
        self.orig_len > self.caplen
    }
}

/// Metadata of one record in a [`RecordBatch`]; the bytes are
/// `batch.data()[start..start + caplen]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RecordMeta {
    pub timestamp_ns: u64,
    pub link_type: u32,
    pub caplen: u32,
    pub orig_len: u32,
    pub start: u32,
}

/// A reusable batch of records: one contiguous byte buffer plus metadata.
/// [`CaptureReader::read_batch`](super::CaptureReader::read_batch) clears
/// and refills it; its buffers keep their capacity between fills.
#[derive(Debug, Clone)]
pub struct RecordBatch {
    bytes: Vec<u8>,
    records: Vec<RecordMeta>,
    max_records: usize,
    byte_budget: usize,
}

impl RecordBatch {
    /// A batch that holds up to `max_records` records and stops taking more
    /// once `byte_budget` bytes are in it (a single record larger than the
    /// budget is still taken, so no record is ever refused).
    pub fn with_capacity(max_records: usize, byte_budget: usize) -> RecordBatch {
        let max_records = max_records.max(1);
        let byte_budget = byte_budget.max(1);
        RecordBatch {
            bytes: Vec::with_capacity(byte_budget + 65_536),
            records: Vec::with_capacity(max_records),
            max_records,
            byte_budget,
        }
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// True when the batch takes no more records.
    pub fn is_full(&self) -> bool {
        self.records.len() >= self.max_records || self.bytes.len() >= self.byte_budget
    }

    /// Empties the batch, keeping its buffers.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.records.clear();
    }

    /// Appends a copy of `record`. The caller checks [`is_full`](Self::is_full);
    /// pushing into a full batch still works (the buffers grow).
    pub fn push(&mut self, record: &Record<'_>) {
        let start = self.bytes.len() as u32;
        self.bytes.extend_from_slice(record.data);
        self.records.push(RecordMeta {
            timestamp_ns: record.timestamp_ns,
            link_type: record.link_type,
            caplen: record.data.len() as u32,
            orig_len: record.orig_len,
            start,
        });
    }

    pub fn get(&self, index: usize) -> Option<Record<'_>> {
        self.records.get(index).map(|meta| self.view(meta))
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = Record<'_>> + '_ {
        self.records.iter().map(move |meta| self.view(meta))
    }

    fn view(&self, meta: &RecordMeta) -> Record<'_> {
        let start = meta.start as usize;
        Record {
            timestamp_ns: meta.timestamp_ns,
            link_type: meta.link_type,
            caplen: meta.caplen,
            orig_len: meta.orig_len,
            data: &self.bytes[start..start + meta.caplen as usize],
        }
    }

    /// The metadata of every record, in order.
    pub fn metadata(&self) -> &[RecordMeta] {
        &self.records
    }

    /// All record bytes, back to back.
    pub fn data(&self) -> &[u8] {
        &self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_keeps_records_apart_and_reuses_buffers() {
        let mut batch = RecordBatch::with_capacity(2, 1024);
        let record = |data: &'static [u8]| Record {
            timestamp_ns: data.len() as u64,
            link_type: 1,
            caplen: data.len() as u32,
            orig_len: 100,
            data,
        };
        batch.push(&record(b"abc"));
        assert!(!batch.is_full());
        batch.push(&record(b"de"));
        assert!(batch.is_full());
        assert_eq!(batch.get(0).unwrap().data, b"abc");
        assert_eq!(batch.get(1).unwrap().data, b"de");
        assert_eq!(
            batch.iter().map(|r| r.timestamp_ns).collect::<Vec<_>>(),
            [3, 2]
        );
        assert!(batch.get(2).is_none());
        let capacity = batch.data().as_ptr();
        batch.clear();
        assert!(batch.is_empty());
        batch.push(&record(b"xyz"));
        assert_eq!(batch.data().as_ptr(), capacity);
    }
}
