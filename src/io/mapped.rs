//! [`MappedCapture`]: a capture file mapped into memory, so that its records
//! can be read in place ([`SliceReader`](super::SliceReader)) by several
//! threads at once, with no read() copy. Only plain files are mapped: a
//! gzip-compressed file, a pipe or anything the system refuses to map is
//! left to [`CaptureReader`](super::CaptureReader).

use std::fs::File;
use std::path::Path;

use memmap2::Mmap;

use super::input::is_gzip;
use super::CaptureError;

/// A read-only mapping of a whole capture file.
#[derive(Debug)]
pub struct MappedCapture {
    /// `None` for an empty file (a mapping cannot be empty).
    map: Option<Mmap>,
}

impl MappedCapture {
    /// Maps the capture at `path`. `Ok(None)` when it cannot be read in
    /// place: not a regular file (a pipe is not even opened, so nothing is
    /// consumed from it), gzip-compressed, or refused by the system. Fails
    /// as [`CaptureReader::open`](super::CaptureReader::open) does when the
    /// file cannot be opened. The format is not checked: see
    /// [`SliceReader::new`](super::SliceReader::new).
    pub fn open(path: impl AsRef<Path>) -> Result<Option<MappedCapture>, CaptureError> {
        let path = path.as_ref();
        if std::fs::metadata(path).is_ok_and(|m| !m.is_file()) {
            return Ok(None);
        }
        let file = File::open(path).map_err(|source| CaptureError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        match file.metadata() {
            Ok(metadata) if metadata.is_file() && metadata.len() == 0 => {
                return Ok(Some(MappedCapture { map: None }))
            }
            Ok(metadata) if metadata.is_file() => {}
            _ => return Ok(None),
        }
        // SAFETY: `Mmap::map` is unsafe because the mapped bytes can change
        // under the returned slice if another process writes the file, and
        // reading a page that another process truncated away raises SIGBUS.
        // nsgd maps only capture files it was asked to replay, read-only and
        // privately; it never writes them, and a replay takes the files as
        // they are, not while something rewrites or truncates them (the same
        // contract as reading a file someone is overwriting: garbage in).
        // Every length the parser reads is checked against the slice length
        // fixed here, so changed bytes can give wrong records but no read
        // outside the mapping.
        let map = match unsafe { Mmap::map(&file) } {
            Ok(map) => map,
            Err(_) => return Ok(None),
        };
        if is_gzip(&map) {
            return Ok(None);
        }
        // Records are walked front to back: ask for early, large read-ahead.
        let _ = map.advise(memmap2::Advice::Sequential);
        Ok(Some(MappedCapture { map: Some(map) }))
    }

    /// The whole file.
    pub fn bytes(&self) -> &[u8] {
        self.map.as_deref().unwrap_or(&[])
    }

    /// Drops the page mappings of the whole pages inside `range` (bytes of
    /// the file), which the caller is done with: tearing down a large
    /// mapping costs about a third of setting it up, and done piecewise by
    /// the workers as they go it runs in parallel instead of all at the end.
    /// The bytes stay readable: the mapping is private and never written, so
    /// a later read faults the same file bytes back in (only slower).
    pub fn release(&self, range: std::ops::Range<usize>) {
        let Some(map) = &self.map else { return };
        let start = range.start.next_multiple_of(RELEASE_GRANULE);
        let end = range.end.min(map.len()) / RELEASE_GRANULE * RELEASE_GRANULE;
        if start >= end {
            return;
        }
        #[cfg(unix)]
        // SAFETY: MADV_DONTNEED is "unchecked" advice because on a private
        // mapping it discards what the process wrote to its copy of the
        // pages, so the bytes behind live references could change. This
        // mapping is read-only (nothing can write to it) and backed by the
        // file, so the pages come back with the bytes they had, the same
        // file bytes the mapping showed (the contract of `open`).
        // `start..end` lies inside the mapping. Should the kernel's page be
        // larger than the granule, it widens the range to whole pages,
        // which is harmless for the same reason.
        unsafe {
            let _ =
                map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, end - start);
        }
    }
}

/// [`MappedCapture::release`] drops whole pages of this size.
const RELEASE_GRANULE: usize = 4096;
