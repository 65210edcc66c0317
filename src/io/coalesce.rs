//! Merging consecutive allowed frames of one stream into one aggregate for
//! the kernel to cut back (GSO) on the way out, as GRO would have merged
//! them on the way in.
//!
//! Why: every frame a packet socket sends leaves the kernel through its own
//! bottom-half section, and on the receiving side of a veth (or any RPS
//! hand-off) each such section may end with an inter-processor interrupt.
//! An aggregate goes through the device in one section, so a burst of a
//! stream costs one hand-off instead of one per frame.
//!
//! The rule that keeps the bridge transparent: frames are merged only when
//! the kernel's segmentation rebuilds each of them byte for byte — same
//! Ethernet and IP headers but for the fields segmentation rewrites (IPv4
//! total length, an ID that counts up by one, header checksum; IPv6
//! payload length), consecutive TCP sequence numbers with identical flags,
//! options and window (PSH only on the last), or UDP datagrams of one
//! size (the last may be shorter), every checksum valid (segmentation
//! writes correct ones, so a frame with a wrong one would be "repaired"),
//! no padding and no IP options or extension headers. Anything else is
//! sent as it came.

use super::live::{VIRTIO_NET_HDR_F_NEEDS_CSUM, VNET_HDR_LEN};

const VIRTIO_NET_HDR_GSO_TCPV4: u8 = 1;
const VIRTIO_NET_HDR_GSO_TCPV6: u8 = 4;
const VIRTIO_NET_HDR_GSO_UDP_L4: u8 = 5;

/// The largest aggregate: an IP packet's length field must hold it.
const MAX_AGGREGATE: usize = 64_000;
/// The most frames in one aggregate.
const MAX_SEGMENTS: u32 = 64;

const ETHERNET: usize = 14;
const TCP_FLAG_FIN: u8 = 0x01;
const TCP_FLAG_SYN: u8 = 0x02;
const TCP_FLAG_RST: u8 = 0x04;
const TCP_FLAG_PSH: u8 = 0x08;
const TCP_FLAG_ACK: u8 = 0x10;
const TCP_FLAG_URG: u8 = 0x20;
const TCP_FLAG_CWR: u8 = 0x80;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Tcp,
    Udp,
}

/// Where a frame's parts are, once it is known to be mergeable at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Shape {
    ipv6: bool,
    transport: Transport,
    /// Start of the L4 header.
    l4: usize,
    /// Start of the payload (end of all headers).
    payload: usize,
}

impl Shape {
    /// The frame's layout if it is an untagged IPv4/IPv6 TCP or UDP frame
    /// with payload, no IP options, extension headers or fragmentation,
    /// no padding, and valid checksums; None otherwise.
    fn of(frame: &[u8]) -> Option<Shape> {
        let be16 = |at: usize| -> Option<usize> {
            Some(usize::from(u16::from_be_bytes([
                *frame.get(at)?,
                *frame.get(at + 1)?,
            ])))
        };
        let (ipv6, l4, protocol) = match be16(12)? {
            0x0800 => {
                let ip = frame.get(ETHERNET..ETHERNET + 20)?;
                // Version 4, no options; not a fragment (DF may be set).
                if ip[0] != 0x45 || ip[6] & 0x3f != 0 || ip[7] != 0 {
                    return None;
                }
                if be16(ETHERNET + 2)? != frame.len() - ETHERNET || fold(sum(ip, 0)) != 0xffff {
                    return None;
                }
                (false, ETHERNET + 20, ip[9])
            }
            0x86dd => {
                let ip = frame.get(ETHERNET..ETHERNET + 40)?;
                if ip[0] >> 4 != 6 || be16(ETHERNET + 4)? != frame.len() - ETHERNET - 40 {
                    return None;
                }
                (true, ETHERNET + 40, ip[6])
            }
            _ => return None,
        };
        let (transport, payload) = match protocol {
            6 => {
                let offset = usize::from(*frame.get(l4 + 12)? >> 4) * 4;
                let flags = *frame.get(l4 + 13)?;
                let unmergeable =
                    TCP_FLAG_FIN | TCP_FLAG_SYN | TCP_FLAG_RST | TCP_FLAG_URG | TCP_FLAG_CWR;
                if offset < 20 || flags & TCP_FLAG_ACK == 0 || flags & unmergeable != 0 {
                    return None;
                }
                (Transport::Tcp, l4 + offset)
            }
            17 => {
                // A zero UDP checksum means "none"; segmentation would
                // write one.
                if be16(l4 + 4)? != frame.len() - l4 || be16(l4 + 6)? == 0 {
                    return None;
                }
                (Transport::Udp, l4 + 8)
            }
            _ => return None,
        };
        if payload >= frame.len() {
            return None;
        }
        let shape = Shape {
            ipv6,
            transport,
            l4,
            payload,
        };
        (fold(sum(
            &frame[l4..],
            shape.pseudo_header(frame, frame.len() - l4),
        )) == 0xffff)
            .then_some(shape)
    }

    /// The ones' complement sum of the pseudo-header for `l4_len` bytes of
    /// L4 header and payload.
    fn pseudo_header(&self, frame: &[u8], l4_len: usize) -> u64 {
        let protocol = match self.transport {
            Transport::Tcp => 6,
            Transport::Udp => 17,
        };
        let addresses = if self.ipv6 {
            &frame[ETHERNET + 8..ETHERNET + 40]
        } else {
            &frame[ETHERNET + 12..ETHERNET + 20]
        };
        sum(addresses, protocol + l4_len as u64)
    }

    fn gso_type(&self) -> u8 {
        match (self.transport, self.ipv6) {
            (Transport::Tcp, false) => VIRTIO_NET_HDR_GSO_TCPV4,
            (Transport::Tcp, true) => VIRTIO_NET_HDR_GSO_TCPV6,
            (Transport::Udp, _) => VIRTIO_NET_HDR_GSO_UDP_L4,
        }
    }
}

/// What [`Coalescer::take`] hands back.
#[derive(Debug, PartialEq, Eq)]
pub enum Aggregate<'a> {
    /// One frame, to be sent as it is.
    Single(&'a [u8]),
    /// Several frames merged: the virtio-net header that asks the kernel
    /// to cut them back, and the merged frame.
    Merged {
        header: [u8; VNET_HDR_LEN],
        frame: &'a [u8],
        /// Wire frames it stands for, and their bytes.
        frames: u32,
        wire_bytes: u64,
    },
}

/// Builds one aggregate at a time out of the frames offered to it.
pub struct Coalescer {
    /// The first frame's headers, then every merged frame's payload.
    buffer: Vec<u8>,
    shape: Option<Shape>,
    frames: u32,
    wire_bytes: u64,
    /// Payload bytes of every frame but possibly the last.
    segment_size: usize,
    /// The last frame was shorter than the others, or carried PSH: the
    /// aggregate must end with it.
    closed: bool,
    /// IPv4 ID and TCP sequence number the next frame must carry.
    next_id: u16,
    next_sequence: u32,
}

impl Default for Coalescer {
    fn default() -> Self {
        Coalescer {
            buffer: Vec::with_capacity(MAX_AGGREGATE + 1600),
            shape: None,
            frames: 0,
            wire_bytes: 0,
            segment_size: 0,
            closed: false,
            next_id: 0,
            next_sequence: 0,
        }
    }
}

impl Coalescer {
    /// Whether an aggregate is being built.
    pub fn is_empty(&self) -> bool {
        self.frames == 0
    }

    /// Adds `frame` to the aggregate being built, or starts one with it.
    /// False when it cannot join (the caller ends the current aggregate
    /// and offers it again) or cannot be merged at all (sent as it is).
    pub fn offer(&mut self, frame: &[u8]) -> bool {
        match self.shape {
            None => self.start(frame),
            Some(shape) => self.extend(shape, frame),
        }
    }

    fn start(&mut self, frame: &[u8]) -> bool {
        let Some(shape) = Shape::of(frame) else {
            return false;
        };
        self.buffer.clear();
        self.buffer.extend_from_slice(frame);
        self.shape = Some(shape);
        self.frames = 1;
        self.wire_bytes = frame.len() as u64;
        self.segment_size = frame.len() - shape.payload;
        let l4 = shape.l4;
        self.closed = shape.transport == Transport::Tcp && frame[l4 + 13] & TCP_FLAG_PSH != 0;
        self.next_id =
            u16::from_be_bytes([frame[ETHERNET + 4], frame[ETHERNET + 5]]).wrapping_add(1);
        self.next_sequence = sequence(frame, l4).wrapping_add(self.segment_size as u32);
        true
    }

    fn extend(&mut self, shape: Shape, frame: &[u8]) -> bool {
        let payload = frame.len().saturating_sub(shape.payload);
        if self.closed
            || self.frames >= MAX_SEGMENTS
            || payload > self.segment_size
            || self.buffer.len() + payload > MAX_AGGREGATE
            || Shape::of(frame) != Some(shape)
        {
            return false;
        }
        let first = &self.buffer[..shape.payload];
        let same = |range: std::ops::Range<usize>| first[range.clone()] == frame[range];
        // Ethernet header, and IP header but for what segmentation writes.
        let headers_match = if shape.ipv6 {
            same(0..ETHERNET + 4) && same(ETHERNET + 6..shape.l4)
        } else {
            same(0..ETHERNET + 2)
                && same(ETHERNET + 6..ETHERNET + 10)
                && same(ETHERNET + 12..shape.l4)
                && u16::from_be_bytes([frame[ETHERNET + 4], frame[ETHERNET + 5]]) == self.next_id
        };
        if !headers_match {
            return false;
        }
        let l4 = shape.l4;
        match shape.transport {
            Transport::Tcp => {
                // Ports; acknowledgement, offset, flags but PSH, window,
                // urgent pointer, options (checksum at 16 is rewritten).
                let flags = frame[l4 + 13];
                if !same(l4..l4 + 4)
                    || !same(l4 + 8..l4 + 13)
                    || first[l4 + 13] != flags & !TCP_FLAG_PSH
                    || !same(l4 + 14..l4 + 16)
                    || !same(l4 + 18..shape.payload)
                    || sequence(frame, l4) != self.next_sequence
                {
                    return false;
                }
                self.closed = flags & TCP_FLAG_PSH != 0;
                self.next_sequence = self.next_sequence.wrapping_add(payload as u32);
            }
            Transport::Udp => {
                if !same(l4..l4 + 4) {
                    return false;
                }
            }
        }
        self.closed |= payload < self.segment_size;
        self.next_id = self.next_id.wrapping_add(1);
        self.buffer.extend_from_slice(&frame[shape.payload..]);
        self.frames += 1;
        self.wire_bytes += frame.len() as u64;
        if shape.transport == Transport::Tcp && self.closed {
            // The last frame's PSH goes on the aggregate, which GSO puts
            // on the last segment only.
            self.buffer[l4 + 13] |= frame[l4 + 13] & TCP_FLAG_PSH;
        }
        true
    }

    /// Ends the aggregate being built and hands it over; None when there
    /// is none.
    pub fn take(&mut self) -> Option<Aggregate<'_>> {
        let shape = self.shape.take()?;
        let frames = std::mem::take(&mut self.frames);
        if frames == 1 {
            return Some(Aggregate::Single(&self.buffer));
        }
        let len = self.buffer.len();
        let l4 = shape.l4;
        let l4_len = len - l4;
        let frame = &mut self.buffer[..];
        if shape.ipv6 {
            frame[ETHERNET + 4..ETHERNET + 6].copy_from_slice(&(l4_len as u16).to_be_bytes());
        } else {
            let total = (len - ETHERNET) as u16;
            frame[ETHERNET + 2..ETHERNET + 4].copy_from_slice(&total.to_be_bytes());
            // Rewritten per segment; kept right for the aggregate itself.
            frame[ETHERNET + 10..ETHERNET + 12].fill(0);
            let check = !fold(sum(&frame[ETHERNET..l4], 0));
            frame[ETHERNET + 10..ETHERNET + 12].copy_from_slice(&check.to_be_bytes());
        }
        let check_at = match shape.transport {
            Transport::Tcp => 16,
            Transport::Udp => {
                frame[l4 + 4..l4 + 6].copy_from_slice(&(l4_len as u16).to_be_bytes());
                6
            }
        };
        // Left for the kernel to finish per segment: the field holds the
        // pseudo-header's sum, as the stack leaves it for offload.
        let partial = fold(shape.pseudo_header(frame, l4_len));
        frame[l4 + check_at..l4 + check_at + 2].copy_from_slice(&partial.to_be_bytes());
        let mut header = [0u8; VNET_HDR_LEN];
        header[0] = VIRTIO_NET_HDR_F_NEEDS_CSUM;
        header[1] = shape.gso_type();
        header[2..4].copy_from_slice(&(shape.payload as u16).to_ne_bytes());
        header[4..6].copy_from_slice(&(self.segment_size as u16).to_ne_bytes());
        header[6..8].copy_from_slice(&(l4 as u16).to_ne_bytes());
        header[8..10].copy_from_slice(&(check_at as u16).to_ne_bytes());
        Some(Aggregate::Merged {
            header,
            frame: &self.buffer,
            frames,
            wire_bytes: self.wire_bytes,
        })
    }
}

fn sequence(frame: &[u8], l4: usize) -> u32 {
    u32::from_be_bytes([frame[l4 + 4], frame[l4 + 5], frame[l4 + 6], frame[l4 + 7]])
}

/// Ones' complement sum of `bytes` as big-endian 16-bit words (an odd last
/// byte padded with zero), added to `initial`, not yet folded.
///
/// Summed in the machine's byte order, 32 bytes a turn in four lanes, and
/// byte-swapped once at the end: the ones' complement sum of swapped
/// words is the swapped sum (RFC 1071), so no word is swapped on the way.
pub(crate) fn sum(bytes: &[u8], initial: u64) -> u64 {
    let halves = |chunk: &[u8]| {
        let word = u64::from_ne_bytes(chunk.try_into().unwrap_or([0; 8]));
        (word & 0xffff_ffff) + (word >> 32)
    };
    let mut lanes = [0u64; 4];
    let mut blocks = bytes.chunks_exact(32);
    for block in &mut blocks {
        for (lane, chunk) in lanes.iter_mut().zip(block.chunks_exact(8)) {
            *lane += halves(chunk);
        }
    }
    let mut native: u64 = lanes.iter().sum();
    let mut words = blocks.remainder().chunks_exact(2);
    for word in &mut words {
        native += u64::from(u16::from_ne_bytes([word[0], word[1]]));
    }
    if let [last] = words.remainder() {
        native += u64::from(u16::from_ne_bytes([*last, 0]));
    }
    let big_endian = u16::from_be_bytes(fold(native).to_ne_bytes());
    initial + u64::from(big_endian)
}

/// Folds a sum into 16 bits.
pub(crate) fn fold(mut total: u64) -> u16 {
    while total > 0xffff {
        total = (total & 0xffff) + (total >> 16);
    }
    total as u16
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn checksum(bytes: &[u8], initial: u64) -> u16 {
        let value = !fold(sum(bytes, initial));
        if value == 0 {
            0xffff
        } else {
            value
        }
    }

    /// Fills in the IPv4 header checksum and the L4 checksum of `frame`.
    fn seal(frame: &mut [u8]) {
        let shape_l4 = if frame[12..14] == [0x08, 0x00] {
            frame[24..26].fill(0);
            let check = !fold(sum(&frame[14..34], 0));
            frame[24..26].copy_from_slice(&check.to_be_bytes());
            34
        } else {
            54
        };
        let ipv6 = shape_l4 == 54;
        let protocol = if ipv6 { frame[20] } else { frame[23] };
        let at = shape_l4 + if protocol == 6 { 16 } else { 6 };
        frame[at..at + 2].fill(0);
        let addresses = if ipv6 { &frame[22..54] } else { &frame[26..34] };
        let l4_len = frame.len() - shape_l4;
        let value = checksum(
            &frame[shape_l4..],
            sum(addresses, u64::from(protocol) + l4_len as u64),
        );
        frame[at..at + 2].copy_from_slice(&value.to_be_bytes());
    }

    struct Segment {
        ipv6: bool,
        udp: bool,
        id: u16,
        sequence: u32,
        flags: u8,
        payload: usize,
        fill: u8,
    }

    fn tcp(id: u16, sequence: u32, flags: u8, payload: usize) -> Segment {
        Segment {
            ipv6: false,
            udp: false,
            id,
            sequence,
            flags,
            payload,
            fill: sequence as u8,
        }
    }

    fn frame(segment: &Segment) -> Vec<u8> {
        let mut frame = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
        let protocol = if segment.udp { 17u8 } else { 6 };
        let l4_len = if segment.udp { 8 } else { 32 } + segment.payload;
        if segment.ipv6 {
            frame.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
            frame.extend_from_slice(&(l4_len as u16).to_be_bytes());
            frame.extend_from_slice(&[protocol, 64]);
            frame.extend_from_slice(&[0xfd; 16]);
            frame.extend_from_slice(&[0xfe; 16]);
        } else {
            frame.extend_from_slice(&[0x08, 0x00, 0x45, 0]);
            frame.extend_from_slice(&((20 + l4_len) as u16).to_be_bytes());
            frame.extend_from_slice(&segment.id.to_be_bytes());
            frame.extend_from_slice(&[0x40, 0, 64, protocol, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
        }
        frame.extend_from_slice(&[0x9c, 0x40, 0x1f, 0x90]);
        if segment.udp {
            frame.extend_from_slice(&(l4_len as u16).to_be_bytes());
            frame.extend_from_slice(&[0, 0]);
        } else {
            frame.extend_from_slice(&segment.sequence.to_be_bytes());
            frame.extend_from_slice(&7u32.to_be_bytes());
            frame.extend_from_slice(&[0x80, segment.flags, 0x01, 0xf5, 0, 0, 0, 0]);
            // NOP, NOP, timestamps.
            frame.extend_from_slice(&[1, 1, 8, 10, 0, 0, 0, 5, 0, 0, 0, 6]);
        }
        frame.extend((0..segment.payload).map(|i| segment.fill.wrapping_add(i as u8)));
        seal(&mut frame);
        frame
    }

    /// What the kernel's segmentation makes of an aggregate, written out
    /// from its rules: payload cut at gso_size; IPv4 length, an ID
    /// counting up and the header checksum rewritten; IPv6 payload length;
    /// TCP sequence numbers counting up, PSH and FIN on the last segment
    /// only; every L4 checksum computed afresh.
    fn segment(header: &[u8; VNET_HDR_LEN], aggregate: &[u8]) -> Vec<Vec<u8>> {
        let headers = usize::from(u16::from_ne_bytes([header[2], header[3]]));
        let size = usize::from(u16::from_ne_bytes([header[4], header[5]]));
        let l4 = usize::from(u16::from_ne_bytes([header[6], header[7]]));
        let tcp = header[1] != VIRTIO_NET_HDR_GSO_UDP_L4;
        let ipv6 = aggregate[12..14] == [0x86, 0xdd];
        let chunks: Vec<&[u8]> = aggregate[headers..].chunks(size).collect();
        let last = chunks.len() - 1;
        chunks
            .iter()
            .enumerate()
            .map(|(i, chunk)| {
                let mut out = aggregate[..headers].to_vec();
                out.extend_from_slice(chunk);
                let l4_len = out.len() - l4;
                if ipv6 {
                    out[18..20].copy_from_slice(&(l4_len as u16).to_be_bytes());
                } else {
                    let total = (out.len() - 14) as u16;
                    out[16..18].copy_from_slice(&total.to_be_bytes());
                    let id = u16::from_be_bytes([out[18], out[19]]).wrapping_add(i as u16);
                    out[18..20].copy_from_slice(&id.to_be_bytes());
                }
                if tcp {
                    let sequence = u32::from_be_bytes(out[l4 + 4..l4 + 8].try_into().unwrap())
                        .wrapping_add((i * size) as u32);
                    out[l4 + 4..l4 + 8].copy_from_slice(&sequence.to_be_bytes());
                    if i != last {
                        out[l4 + 13] &= !(TCP_FLAG_PSH | TCP_FLAG_FIN);
                    }
                } else {
                    out[l4 + 4..l4 + 6].copy_from_slice(&(l4_len as u16).to_be_bytes());
                }
                seal(&mut out);
                out
            })
            .collect()
    }

    /// Offers every frame; returns what came out, each aggregate cut back
    /// by `segment`, and how many aggregates there were.
    fn round_trip(frames: &[Vec<u8>]) -> (Vec<Vec<u8>>, usize) {
        let mut coalescer = Coalescer::default();
        let mut out = Vec::new();
        let mut aggregates = 0;
        let mut drain = |coalescer: &mut Coalescer, out: &mut Vec<Vec<u8>>| match coalescer.take() {
            Some(Aggregate::Single(frame)) => out.push(frame.to_vec()),
            Some(Aggregate::Merged {
                header,
                frame,
                frames,
                ..
            }) => {
                let segments = segment(&header, frame);
                assert_eq!(segments.len(), frames as usize);
                out.extend(segments);
                aggregates += 1;
            }
            None => {}
        };
        for frame in frames {
            if coalescer.offer(frame) {
                continue;
            }
            drain(&mut coalescer, &mut out);
            if !coalescer.offer(frame) {
                out.push(frame.clone());
            }
        }
        drain(&mut coalescer, &mut out);
        (out, aggregates)
    }

    const ACK: u8 = TCP_FLAG_ACK;
    const PSH_ACK: u8 = TCP_FLAG_ACK | TCP_FLAG_PSH;

    /// The segments' frames make one aggregate, which segmentation cuts
    /// back into the very same frames.
    fn assert_merged_and_rebuilt(segments: &[Segment]) {
        let frames: Vec<Vec<u8>> = segments.iter().map(frame).collect();
        let (out, aggregates) = round_trip(&frames);
        assert_eq!(aggregates, 1);
        assert!(out == frames);
    }

    #[test]
    fn a_tcp_burst_merges_and_cuts_back_into_the_same_bytes() {
        assert_merged_and_rebuilt(&[
            tcp(100, 1000, ACK, 1448),
            tcp(101, 2448, ACK, 1448),
            tcp(102, 3896, ACK, 1448),
            tcp(103, 5344, PSH_ACK, 600),
        ]);
    }

    #[test]
    fn udp_datagrams_of_one_size_merge_and_ipv6_tcp_too() {
        let udp = |id: u16, payload: usize| Segment {
            ipv6: false,
            udp: true,
            id,
            sequence: 0,
            flags: 0,
            payload,
            fill: id as u8,
        };
        assert_merged_and_rebuilt(&[udp(7, 18), udp(8, 18), udp(9, 18), udp(10, 5)]);
        let v6 = |sequence: u32, flags: u8, payload: usize| Segment {
            ipv6: true,
            ..tcp(0, sequence, flags, payload)
        };
        assert_merged_and_rebuilt(&[
            v6(1, ACK, 1000),
            v6(1001, ACK, 1000),
            v6(2001, PSH_ACK, 1000),
        ]);
    }

    #[test]
    fn frames_segmentation_could_not_rebuild_are_never_merged() {
        let base = || vec![tcp(100, 1000, ACK, 1448), tcp(101, 2448, ACK, 1448)];
        let mut cases: Vec<(&str, Vec<Vec<u8>>)> = Vec::new();
        let mut with = |name: &'static str, change: &dyn Fn(&mut Vec<Segment>)| {
            let mut segments = base();
            change(&mut segments);
            cases.push((name, segments.iter().map(frame).collect()));
        };
        with("IP ID not counting up", &|s| s[1].id = 105);
        with("sequence gap", &|s| s[1].sequence = 2449);
        with("longer second segment", &|s| s[1].payload = 1449);
        with("PSH on the first", &|s| s[0].flags = PSH_ACK);
        with("FIN", &|s| s[1].flags = ACK | TCP_FLAG_FIN);
        with("CWR", &|s| s[1].flags = ACK | TCP_FLAG_CWR);
        with("no ACK", &|s| s[1].flags = 0);
        let mut bad_checksum = base().iter().map(frame).collect::<Vec<_>>();
        let end = bad_checksum[1].len() - 1;
        bad_checksum[1][end] ^= 1;
        cases.push(("wrong TCP checksum", bad_checksum));
        let mut other_ttl = base().iter().map(frame).collect::<Vec<_>>();
        other_ttl[1][22] = 63;
        seal(&mut other_ttl[1]);
        cases.push(("other TTL", other_ttl));
        let mut other_window = base().iter().map(frame).collect::<Vec<_>>();
        other_window[1][48] = 0x02;
        seal(&mut other_window[1]);
        cases.push(("other window", other_window));
        let mut other_timestamp = base().iter().map(frame).collect::<Vec<_>>();
        other_timestamp[1][61] = 9;
        seal(&mut other_timestamp[1]);
        cases.push(("other timestamp", other_timestamp));
        let mut padded = vec![
            frame(&tcp(100, 1000, ACK, 4)),
            frame(&tcp(101, 1004, ACK, 4)),
        ];
        for frame in &mut padded {
            frame.resize(frame.len() + 6, 0);
        }
        cases.push(("padded", padded));
        for (name, frames) in cases {
            let (out, aggregates) = round_trip(&frames);
            assert_eq!(aggregates, 0, "{name}");
            assert!(out == frames, "{name}");
        }
    }

    #[test]
    fn the_ones_complement_sum_matches_the_word_by_word_definition() {
        let bytes: Vec<u8> = (0..1001u32).map(|i| (i * 37 % 251) as u8).collect();
        for len in [0, 1, 2, 7, 8, 9, 63, 64, 1000, 1001] {
            let mut words = 0u64;
            for pair in bytes[..len].chunks(2) {
                words += u64::from(pair[0]) << 8 | u64::from(*pair.get(1).unwrap_or(&0));
            }
            assert_eq!(fold(sum(&bytes[..len], 5)), fold(words + 5), "{len}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Whatever the coalescer merges, segmentation rebuilds exactly:
        /// streams of TCP or UDP frames with random sizes, flags, ID and
        /// sequence steps, and random bytes changed (their checksums then
        /// sometimes made right again).
        #[test]
        fn whatever_merges_is_rebuilt_byte_for_byte(
            ipv6 in any::<bool>(),
            udp in any::<bool>(),
            frames in prop::collection::vec(
                (1usize..1400, 0u16..3, -1i32..=1, prop_oneof![
                    4 => Just(ACK),
                    1 => Just(PSH_ACK),
                    1 => Just(ACK | TCP_FLAG_FIN),
                    1 => Just(ACK | 0x40),
                    1 => Just(ACK | TCP_FLAG_CWR),
                ]),
                1..20,
            ),
            uniform in any::<bool>(),
            changes in prop::collection::vec((0usize..20, 0usize..1500, 1u8..=255, any::<bool>()), 0..4),
        ) {
            let mut id = 100u16;
            let mut sequence = 5000u32;
            let first_size = frames[0].0;
            let mut built: Vec<Vec<u8>> = frames
                .iter()
                .map(|&(size, id_step, sequence_step, flags)| {
                    // Mostly one size, as a bulk stream sends, when asked.
                    let payload = if uniform { first_size } else { size };
                    id = id.wrapping_add(id_step);
                    sequence = sequence.wrapping_add_signed(sequence_step);
                    let segment = Segment { ipv6, udp, id, sequence, flags, payload, fill: 3 };
                    sequence = sequence.wrapping_add(payload as u32);
                    frame(&segment)
                })
                .collect();
            let count = built.len();
            for (which, at, xor, reseal) in changes {
                let frame = &mut built[which % count];
                let at = at % frame.len();
                frame[at] ^= xor;
                // Resealing needs the layout intact: not the EtherType, the
                // IP version and header length, or the protocol fields.
                let layout = [12, 13, 14, 20, 23];
                if reseal && !layout.contains(&at) {
                    seal(frame);
                }
            }
            let (out, _) = round_trip(&built);
            prop_assert!(out == built);
        }
    }
}
