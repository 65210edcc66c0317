//! Live ports: one Linux interface seen through AF_PACKET sockets with
//! memory-mapped rings. Receiving uses a TPACKET_V2 ring (each frame handed
//! over as it lands) or a TPACKET_V3 ring (frames packed into blocks, a
//! block handed over at once), joined to a PACKET_FANOUT group so several
//! workers can share a port, each getting whole flows (the kernel's fanout
//! hash is symmetric); [`Receiver`] also covers the AF_XDP sockets of
//! `xdp`. Sending uses a TPACKET_V2 ring on a second socket that receives
//! nothing: frames are copied into ring slots and one `send` hands the
//! whole batch to the driver, bypassing the qdisc.
//!
//! This room moves bytes and knows nothing of policy. The live I/O's
//! `unsafe` lives here and in `xdp`: raw socket options, the shared ring
//! mappings and the status words the kernel and we take turns on.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{fence, AtomicU32, Ordering};

use super::coalesce::{fold, sum, Aggregate, Coalescer};

pub use super::xdp::{XdpMode, XdpRx};

const ETH_P_ALL: u16 = 0x0003;
const SOL_PACKET: libc::c_int = 263;
const PACKET_ADD_MEMBERSHIP: libc::c_int = 1;
const PACKET_RX_RING: libc::c_int = 5;
const PACKET_STATISTICS: libc::c_int = 6;
const PACKET_VERSION: libc::c_int = 10;
const PACKET_TX_RING: libc::c_int = 13;
const PACKET_LOSS: libc::c_int = 14;
const PACKET_FANOUT: libc::c_int = 18;
const PACKET_QDISC_BYPASS: libc::c_int = 20;
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;
const PACKET_VNET_HDR: libc::c_int = 15;
/// `struct virtio_net_hdr`, which PACKET_VNET_HDR puts before each frame.
pub(crate) const VNET_HDR_LEN: usize = 10;
pub(crate) const VIRTIO_NET_HDR_F_NEEDS_CSUM: u8 = 1;
/// "The checksum was checked": meaningful only on receive.
const VIRTIO_NET_HDR_F_DATA_VALID: u8 = 2;
const VIRTIO_NET_HDR_GSO_ECN: u8 = 0x80;
const PACKET_COPY_THRESH: libc::c_int = 7;
/// Longest aggregate taken whole: an IP packet's 64 KiB plus link headers.
const MERGED_FRAME_MAX: usize = 65_536 + 64;
const PACKET_MR_PROMISC: libc::c_ushort = 1;
const PACKET_FANOUT_HASH: u32 = 0;
const TPACKET_V2: libc::c_int = 1;
const TPACKET_V3: libc::c_int = 2;

const TP_STATUS_KERNEL: u32 = 0;
const TP_STATUS_USER: u32 = 1;
/// The slot holds the head of a frame too long for it, and the whole frame
/// waits on the socket's receive queue (PACKET_COPY_THRESH).
const TP_STATUS_COPY: u32 = 1 << 1;
const TP_STATUS_SEND_REQUEST: u32 = 1;
const TP_STATUS_WRONG_FORMAT: u32 = 4;
const TP_STATUS_CSUMNOTREADY: u32 = 1 << 3;
const TP_STATUS_VLAN_VALID: u32 = 1 << 4;
const TP_STATUS_VLAN_TPID_VALID: u32 = 1 << 6;

/// Offset of frame data in a TPACKET_V2 transmit slot: the aligned header
/// (`TPACKET2_HDRLEN - sizeof(struct sockaddr_ll)`).
const TX_DATA_OFFSET: usize = 32;

/// Ring geometry of one port. The defaults hold about 16 MiB of received
/// frames and 4096 frames waiting to be sent per socket.
#[derive(Debug, Clone, Copy)]
pub struct RingConfig {
    /// Receive ring layout.
    pub rx_layout: RxLayout,
    /// Receive block size (a power of two, a multiple of the page size).
    pub rx_block_size: u32,
    pub rx_blocks: u32,
    /// Milliseconds after which the kernel hands over a block that is not
    /// full: the latency bound at low rates.
    pub rx_block_timeout_ms: u32,
    /// Transmit slot size; frames longer than the slot minus its header
    /// cannot be sent (see [`TxRing::max_frame`]).
    pub tx_frame_size: u32,
    pub tx_frames: u32,
}

impl Default for RingConfig {
    fn default() -> Self {
        RingConfig {
            rx_layout: RxLayout::Frames,
            rx_block_size: 1 << 18,
            rx_blocks: 64,
            rx_block_timeout_ms: 1,
            tx_frame_size: 2048,
            tx_frames: 4096,
        }
    }
}

/// How the receive ring hands frames over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RxLayout {
    /// TPACKET_V2: fixed 2 KiB slots, each frame handed over as soon as it
    /// lands. Lowest latency: what a bridge carrying TCP wants.
    Frames,
    /// TPACKET_V3: variable-size frames packed into blocks, a block handed
    /// over when full or after `rx_block_timeout_ms`. Fewer wake-ups under
    /// load, but a quiet direction (TCP's ACKs) waits for the timeout.
    Blocks,
}

/// Why a port could not be opened: the interface, the step and the OS error.
/// The message holds the OS error itself (it is not a separate `source`, so
/// an error chain does not print it twice).
#[derive(Debug, thiserror::Error)]
#[error("{interface}: {step}: {error}{}", hint(step, error))]
pub struct PortError {
    pub interface: String,
    pub step: &'static str,
    pub error: io::Error,
}

fn hint(step: &str, error: &io::Error) -> &'static str {
    let xdp = step.contains("XDP") || step.contains("XSK") || step.contains("UMEM");
    match error.raw_os_error() {
        Some(libc::EBUSY) if step.contains("AF_XDP") => {
            " (the queue already has an AF_XDP socket: is another nsgd bridging this port?)"
        }
        Some(libc::ENOBUFS) if step.contains("UMEM") => {
            " (the UMEM is locked memory: needs CAP_IPC_LOCK or a higher `ulimit -l`)"
        }
        Some(libc::EPERM) | Some(libc::EACCES) if xdp => {
            " (AF_XDP receive needs CAP_NET_RAW, CAP_NET_ADMIN, CAP_BPF and CAP_IPC_LOCK)"
        }
        Some(libc::EPERM) | Some(libc::EACCES) => {
            " (needs CAP_NET_RAW and CAP_NET_ADMIN: run as root or `setcap cap_net_raw,cap_net_admin+ep nsgd`)"
        }
        Some(libc::ENODEV) => " (no such interface in this network namespace)",
        _ => "",
    }
}

fn os_error<T>(interface: &str, step: &'static str) -> Result<T, PortError> {
    Err(PortError {
        interface: interface.to_string(),
        step,
        error: io::Error::last_os_error(),
    })
}

/// The interface index of `name`, or an error naming it.
pub fn interface_index(name: &str) -> Result<u32, PortError> {
    let c_name = CString::new(name).map_err(|_| PortError {
        interface: name.to_string(),
        step: "interface name",
        error: io::Error::from(io::ErrorKind::InvalidInput),
    })?;
    // SAFETY: `c_name` is a valid NUL-terminated string for the call.
    let index = unsafe { libc::if_nametoindex(c_name.as_ptr()) };
    if index == 0 {
        return os_error(name, "look up interface");
    }
    Ok(index)
}

/// The MTU of the interface `fd` is bound to or will be: the longest IP
/// packet it takes.
fn interface_mtu(fd: RawFd, interface: &str) -> Result<usize, PortError> {
    // SAFETY: an all-zero ifreq is a valid value of the C struct.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    if interface.len() >= request.ifr_name.len() {
        return Err(PortError {
            interface: interface.to_string(),
            step: "interface name",
            error: io::Error::from(io::ErrorKind::InvalidInput),
        });
    }
    for (to, from) in request.ifr_name.iter_mut().zip(interface.bytes()) {
        *to = from as libc::c_char;
    }
    // SAFETY: SIOCGIFMTU reads the NUL-terminated name from `request` and
    // writes the MTU into it; both live for the call.
    if unsafe { libc::ioctl(fd, libc::SIOCGIFMTU, &mut request) } < 0 {
        return os_error(interface, "read the interface's MTU");
    }
    // SAFETY: SIOCGIFMTU filled the union's MTU member.
    let mtu = unsafe { request.ifr_ifru.ifru_mtu };
    Ok(usize::try_from(mtu).unwrap_or(0))
}

/// Puts the interface in promiscuous mode for as long as the AF_PACKET
/// socket `fd` stays open (the kernel counts these, so nothing is left
/// switched on after nsgd).
pub(crate) fn add_promiscuous_membership(
    fd: RawFd,
    index: u32,
    interface: &str,
) -> Result<(), PortError> {
    let membership = PacketMreq {
        mr_ifindex: index as i32,
        mr_type: PACKET_MR_PROMISC,
        mr_alen: 0,
        mr_address: [0; 8],
    };
    set_option(
        fd,
        PACKET_ADD_MEMBERSHIP,
        &membership,
        interface,
        "enter promiscuous mode",
    )
}

pub(crate) fn packet_socket(interface: &str) -> Result<OwnedFd, PortError> {
    // Protocol 0: the socket receives nothing until it is bound, so no frame
    // of another interface slips in before the bind.
    // SAFETY: plain syscall; the result is checked before use.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return os_error(interface, "open AF_PACKET socket");
    }
    // SAFETY: `fd` is a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn set_option<T>(
    fd: RawFd,
    name: libc::c_int,
    value: &T,
    interface: &str,
    step: &'static str,
) -> Result<(), PortError> {
    write_option(fd, SOL_PACKET, name, value).map_err(|error| PortError {
        interface: interface.to_string(),
        step,
        error,
    })
}

/// Sets the socket option `name` of `level` to `value` (the option's C
/// value or structure).
pub(crate) fn write_option<T>(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
) -> io::Result<()> {
    // SAFETY: `value` points to a live `T` of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Reads the socket option `name` of `level` into a `T` (the option's C
/// structure); `None` when the kernel refuses.
pub(crate) fn read_option<T: Default>(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
) -> Option<T> {
    let mut value = T::default();
    let mut len = std::mem::size_of::<T>() as libc::socklen_t;
    // SAFETY: `value` is a writable `T` of `len` bytes.
    let rc = unsafe { libc::getsockopt(fd, level, name, (&mut value as *mut T).cast(), &mut len) };
    (rc == 0).then_some(value)
}

/// Sets a socket buffer to `bytes`: past the system limit where
/// CAP_NET_ADMIN allows (`forced`), else up to it. Best effort: the default
/// buffer still works, only with less room for bursts.
fn enlarge_buffer(fd: RawFd, forced: libc::c_int, plain: libc::c_int, bytes: i32) {
    for name in [forced, plain] {
        if write_option(fd, libc::SOL_SOCKET, name, &bytes).is_ok() {
            return;
        }
    }
}

fn bind(fd: RawFd, index: u32, protocol: u16, interface: &str) -> Result<(), PortError> {
    // SAFETY: an all-zero sockaddr_ll is a valid value of the C struct.
    let mut address: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    address.sll_family = libc::AF_PACKET as u16;
    address.sll_protocol = protocol.to_be();
    address.sll_ifindex = index as i32;
    // SAFETY: `address` is a valid sockaddr_ll and its size is passed.
    let rc = unsafe {
        libc::bind(
            fd,
            (&address as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return os_error(interface, "bind to interface");
    }
    Ok(())
}

/// Memory shared with the kernel (a ring, or AF_XDP's UMEM), unmapped on
/// drop.
pub(crate) struct Mapping {
    base: *mut u8,
    len: usize,
}

// SAFETY: the mapping is plain memory owned by this value; the kernel's side
// is synchronised through the ring status words.
unsafe impl Send for Mapping {}

impl Mapping {
    fn new(fd: RawFd, len: usize, interface: &str) -> Result<Self, PortError> {
        Mapping::of_socket(fd, len, 0).ok_or_else(|| PortError {
            interface: interface.to_string(),
            step: "map ring",
            error: io::Error::last_os_error(),
        })
    }

    /// Maps `len` bytes of what the kernel set up on `fd` at `offset`
    /// (which selects the ring); `None` with the OS error left in errno.
    pub(crate) fn of_socket(fd: RawFd, len: usize, offset: libc::off_t) -> Option<Self> {
        // SAFETY: maps memory the kernel just set up on `fd`; checked below.
        let map = |flags| unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                fd,
                offset,
            )
        };
        let mut base = map(libc::MAP_SHARED | libc::MAP_LOCKED);
        if base == libc::MAP_FAILED {
            // MAP_LOCKED fails under a low RLIMIT_MEMLOCK; fall back to an
            // unlocked mapping rather than refuse to run.
            base = map(libc::MAP_SHARED);
        }
        (base != libc::MAP_FAILED).then_some(Mapping {
            base: base.cast(),
            len,
        })
    }

    /// Fresh zeroed memory of `len` bytes, its pages allocated now.
    pub(crate) fn anonymous(len: usize) -> Option<Self> {
        // SAFETY: a fresh private anonymous mapping; checked below.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        (base != libc::MAP_FAILED).then_some(Mapping {
            base: base.cast(),
            len,
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The address `offset` bytes in, for words the kernel and we share
    /// (ring indices, descriptors); the caller keeps `offset` inside.
    pub(crate) fn at(&self, offset: usize) -> *mut u8 {
        debug_assert!(offset <= self.len);
        // SAFETY: `offset` is inside the mapping (debug-checked above, and
        // by every caller); the result stays in the same allocation.
        unsafe { self.base.add(offset) }
    }

    /// The status word at `offset` (4-byte aligned, inside the mapping).
    fn status(&self, offset: usize) -> &AtomicU32 {
        debug_assert!(offset % 4 == 0 && offset + 4 <= self.len);
        // SAFETY: `offset` is inside the mapping and aligned; the kernel and
        // we both access this word atomically.
        unsafe { &*(self.base.add(offset) as *const AtomicU32) }
    }

    fn read_u32(&self, offset: usize) -> u32 {
        debug_assert!(offset + 4 <= self.len);
        // SAFETY: inside the mapping; the word belongs to user space while
        // the block's status says so (checked by the callers).
        unsafe { std::ptr::read_unaligned(self.base.add(offset) as *const u32) }
    }

    fn read_u16(&self, offset: usize) -> u16 {
        debug_assert!(offset + 2 <= self.len);
        // SAFETY: as `read_u32`.
        unsafe { std::ptr::read_unaligned(self.base.add(offset) as *const u16) }
    }

    pub(crate) fn slice(&self, offset: usize, len: usize) -> &[u8] {
        debug_assert!(offset + len <= self.len);
        // SAFETY: inside the mapping; user space owns these bytes while the
        // block or slot status says so.
        unsafe { std::slice::from_raw_parts(self.base.add(offset), len) }
    }

    fn slice_mut(&mut self, offset: usize, len: usize) -> &mut [u8] {
        debug_assert!(offset + len <= self.len);
        // SAFETY: inside the mapping; the slot is ours (status available)
        // and `&mut self` rules out another borrow of it.
        unsafe { std::slice::from_raw_parts_mut(self.base.add(offset), len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `base`/`len` are exactly what mmap returned.
        unsafe {
            libc::munmap(self.base.cast(), self.len);
        }
    }
}

/// What the kernel says about a receive ring since the previous call.
#[derive(Debug, Clone, Copy, Default)]
pub struct RxKernelStats {
    pub packets: u64,
    /// Frames the kernel dropped because the ring was full: never seen,
    /// never forwarded (fail closed).
    pub drops: u64,
}

/// A receive ring: TPACKET_V3 on one interface.
pub struct RxRing {
    fd: OwnedFd,
    map: Mapping,
    layout: RxLayout,
    /// Block size (V3) or slot size (V2).
    unit_size: usize,
    units: usize,
    next_unit: usize,
    /// Units (V2 slots or one V3 block) drained but not yet given back:
    /// frames a [`Sender`] may still point into.
    held: usize,
    /// Frames come with a virtio-net header (PACKET_VNET_HDR), which says
    /// where an offloaded checksum goes.
    vnet: bool,
    /// Where an aggregate too long for a slot is received whole (virtio-net
    /// header first); empty when the ring cannot take aggregates.
    merged: Box<[u8]>,
    interface: String,
}

/// Frame slot size of a TPACKET_V2 receive ring: a 1514-byte frame (plus a
/// VLAN tag) after the header.
const RX_FRAME_SIZE: u32 = 2048;

/// One received frame, borrowed from the ring.
#[derive(Debug, Clone, Copy)]
pub struct RxFrame<'a> {
    /// The frame as captured (without a VLAN tag the driver stripped).
    pub data: &'a [u8],
    /// Length on the wire; longer than `data` when the frame was cut.
    pub wire_len: u32,
    /// A VLAN tag the driver took out of the frame: (TPID, TCI).
    pub vlan: Option<(u16, u16)>,
    /// The sender left the L4 checksum to offload and it is still
    /// unfinished: forwarded as it is, the receiver will drop the frame.
    pub checksum_pending: bool,
    /// The sender left the L4 checksum to offload and nsgd filled it in (as
    /// the sending NIC would have), in place.
    pub checksum_completed: bool,
    /// Set when the frame is a receive-offload aggregate.
    pub merged: Option<Merged>,
}

/// A receive-offload (GRO/LRO) aggregate: wire frames of one TCP stream the
/// kernel merged into one, taken whole and sent on with its virtio-net
/// header, so the kernel cuts it back into frames of the original size
/// (GSO) on the way out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Merged {
    /// The virtio-net header the kernel gave the aggregate.
    pub header: [u8; VNET_HDR_LEN],
    /// Wire frames it stands for, and their bytes on the wire.
    pub frames: u32,
    pub wire_bytes: u32,
}

impl Merged {
    /// Reads an aggregate's header: how many wire frames of `gso_size`
    /// payload bytes, each with the aggregate's own headers, it stands for.
    pub fn new(header: [u8; VNET_HDR_LEN], frame: &[u8]) -> Merged {
        let gso_type = header[1] & !VIRTIO_NET_HDR_GSO_ECN;
        let gso_size = usize::from(u16::from_ne_bytes([header[4], header[5]]));
        let len = frame.len();
        let single = Merged {
            header,
            frames: 1,
            wire_bytes: len as u32,
        };
        if gso_type == 0 || gso_size == 0 {
            return single;
        }
        let Some(headers) = headers_len(frame).filter(|&h| h < len) else {
            return single;
        };
        let frames = (len - headers).div_ceil(gso_size).max(1);
        Merged {
            header,
            frames: frames as u32,
            wire_bytes: (len + (frames - 1) * headers).min(u32::MAX as usize) as u32,
        }
    }
}

/// Ethernet (with any VLAN tags), IP and TCP/UDP header bytes at the start
/// of `frame`: what every segment of an aggregate repeats.
fn headers_len(frame: &[u8]) -> Option<usize> {
    let be16 = |at: usize| Some(u16::from_be_bytes([*frame.get(at)?, *frame.get(at + 1)?]));
    let mut at = 12;
    let mut ethertype = be16(at)?;
    while ethertype == 0x8100 || ethertype == 0x88a8 {
        at += 4;
        ethertype = be16(at)?;
    }
    let l3 = at + 2;
    let (l4, protocol) = match ethertype {
        0x0800 => (
            l3 + usize::from(frame.get(l3)? & 0x0f) * 4,
            *frame.get(l3 + 9)?,
        ),
        0x86dd => (l3 + 40, *frame.get(l3 + 6)?),
        _ => return None,
    };
    match protocol {
        6 => Some(l4 + usize::from(frame.get(l4 + 12)? >> 4) * 4),
        17 => Some(l4 + 8),
        _ => None,
    }
}

impl RxFrame<'_> {
    /// Wire frames this frame stands for: more than one for an aggregate.
    pub fn frames(&self) -> u32 {
        self.merged.map_or(1, |m| m.frames)
    }

    /// Bytes on the wire of those frames.
    pub fn wire_bytes(&self) -> u32 {
        self.merged.map_or(self.wire_len, |m| m.wire_bytes)
    }
}

/// Fills in an offloaded checksum: the ones' complement sum of
/// `frame[start..]` (whose checksum field holds the pseudo-header sum, as
/// the stack leaves it) stored at `start + offset`, as `skb_checksum_help`
/// does. False when the offsets do not fit the frame.
pub fn complete_checksum(frame: &mut [u8], start: usize, offset: usize) -> bool {
    let field = start + offset;
    if start >= frame.len() || field + 2 > frame.len() {
        return false;
    }
    let folded = !fold(sum(&frame[start..], 0));
    let value = if folded == 0 { 0xffff } else { folded };
    frame[field..field + 2].copy_from_slice(&value.to_be_bytes());
    true
}

impl RxRing {
    /// Opens a receive ring on `interface`; `fanout` joins the hash fanout
    /// group of that id; `promiscuous` asks for every frame on the wire.
    pub fn open(
        interface: &str,
        config: &RingConfig,
        fanout: Option<u16>,
        promiscuous: bool,
    ) -> Result<RxRing, PortError> {
        let index = interface_index(interface)?;
        let fd = packet_socket(interface)?;
        let raw = fd.as_raw_fd();
        let mut vnet = false;
        let mut merged = Box::default();
        let (unit_size, units) = match config.rx_layout {
            RxLayout::Blocks => {
                set_option(
                    raw,
                    PACKET_VERSION,
                    &TPACKET_V3,
                    interface,
                    "select TPACKET_V3",
                )?;
                let request = TpacketReq3 {
                    tp_block_size: config.rx_block_size,
                    tp_block_nr: config.rx_blocks,
                    tp_frame_size: RX_FRAME_SIZE,
                    tp_frame_nr: config.rx_block_size / RX_FRAME_SIZE * config.rx_blocks,
                    tp_retire_blk_tov: config.rx_block_timeout_ms,
                    tp_sizeof_priv: 0,
                    tp_feature_req_word: 0,
                };
                set_option(
                    raw,
                    PACKET_RX_RING,
                    &request,
                    interface,
                    "set up receive ring",
                )?;
                (config.rx_block_size as usize, config.rx_blocks as usize)
            }
            RxLayout::Frames => {
                set_option(
                    raw,
                    PACKET_VERSION,
                    &TPACKET_V2,
                    interface,
                    "select TPACKET_V2",
                )?;
                // Best effort: without it, offloaded checksums are only counted.
                vnet = set_option(raw, PACKET_VNET_HDR, &1i32, interface, "vnet header").is_ok();
                // An aggregate longer than a slot is queued whole on the
                // socket as well, to be taken with its virtio-net header.
                if vnet
                    && set_option(raw, PACKET_COPY_THRESH, &1i32, interface, "copy threshold")
                        .is_ok()
                {
                    enlarge_buffer(raw, libc::SO_RCVBUFFORCE, libc::SO_RCVBUF, 8 << 20);
                    merged = vec![0; VNET_HDR_LEN + MERGED_FRAME_MAX].into_boxed_slice();
                }
                let per_block = config.rx_block_size / RX_FRAME_SIZE;
                let request = TpacketReq {
                    tp_block_size: config.rx_block_size,
                    tp_block_nr: config.rx_blocks,
                    tp_frame_size: RX_FRAME_SIZE,
                    tp_frame_nr: per_block * config.rx_blocks,
                };
                set_option(
                    raw,
                    PACKET_RX_RING,
                    &request,
                    interface,
                    "set up receive ring",
                )?;
                (RX_FRAME_SIZE as usize, request.tp_frame_nr as usize)
            }
        };
        let map = Mapping::new(raw, unit_size * units, interface)?;
        set_option(
            raw,
            PACKET_IGNORE_OUTGOING,
            &1i32,
            interface,
            "ignore outgoing frames",
        )?;
        bind(raw, index, ETH_P_ALL, interface)?;
        if promiscuous {
            add_promiscuous_membership(raw, index, interface)?;
        }
        if let Some(group) = fanout {
            let argument: u32 = u32::from(group) | (PACKET_FANOUT_HASH << 16);
            set_option(
                raw,
                PACKET_FANOUT,
                &argument,
                interface,
                "join fanout group",
            )?;
        }
        Ok(RxRing {
            fd,
            map,
            layout: config.rx_layout,
            unit_size,
            units,
            next_unit: 0,
            held: 0,
            vnet,
            merged,
            interface: interface.to_string(),
        })
    }

    pub fn interface(&self) -> &str {
        &self.interface
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Calls `each` for the frames the kernel has handed over (the next
    /// block, or up to `max_frames` slots) and gives them back. Returns the
    /// number of frames, `None` when nothing was ready.
    pub fn drain(&mut self, max_frames: usize, each: impl FnMut(RxFrame<'_>)) -> Option<usize> {
        let drained = self.drain_held(max_frames, each);
        self.release_held();
        drained
    }

    fn drain_slots(
        &mut self,
        max_frames: usize,
        mut each: impl FnMut(RxFrame<'_>),
    ) -> Option<usize> {
        let mut seen = 0;
        // Never lap the ring: a held slot is not the kernel's yet.
        while seen < max_frames && self.held < self.units {
            let slot = self.next_unit * self.unit_size;
            // tpacket2_hdr: status 0, len 4, snaplen 8, mac 12, vlan 24/26.
            let status_word = self.map.status(slot);
            let status = status_word.load(Ordering::Acquire);
            if status & TP_STATUS_USER == 0 {
                break;
            }
            let wire_len = self.map.read_u32(slot + 4);
            let snaplen = self.map.read_u32(slot + 8) as usize;
            let mac = self.map.read_u16(slot + 12) as usize;
            let whole = if status & TP_STATUS_COPY != 0 {
                self.receive_merged()
            } else {
                None
            };
            if let Some((len, merged)) = whole {
                let vlan = self.stripped_vlan(status, slot + 24, slot + 26);
                each(RxFrame {
                    data: &self.merged[VNET_HDR_LEN..VNET_HDR_LEN + len],
                    wire_len: len as u32,
                    vlan,
                    // The header says how the checksum is to be finished;
                    // the transmit side does it per segment.
                    checksum_pending: false,
                    checksum_completed: false,
                    merged: Some(merged),
                });
            } else if let Some(merged) = self.slot_aggregate(slot, mac, snaplen) {
                // An aggregate short enough to fit its slot: it still leaves
                // cut back into the frames it merged, never as one frame.
                let vlan = self.stripped_vlan(status, slot + 24, slot + 26);
                each(RxFrame {
                    data: self.map.slice(slot + mac, snaplen),
                    wire_len,
                    vlan,
                    checksum_pending: false,
                    checksum_completed: false,
                    merged: Some(merged),
                });
            } else if mac >= 32 + VNET_HDR_LEN && mac + snaplen <= self.unit_size {
                let mut checksum_pending = status & TP_STATUS_CSUMNOTREADY != 0;
                let mut checksum_completed = false;
                if checksum_pending && self.vnet {
                    let header = slot + mac - VNET_HDR_LEN;
                    let flags = self.map.slice(header, 1)[0];
                    // virtio_net_hdr: csum_start at 6, csum_offset at 8.
                    let start = self.map.read_u16(header + 6) as usize;
                    let offset = self.map.read_u16(header + 8) as usize;
                    if flags & VIRTIO_NET_HDR_F_NEEDS_CSUM != 0
                        && complete_checksum(self.map.slice_mut(slot + mac, snaplen), start, offset)
                    {
                        checksum_pending = false;
                        checksum_completed = true;
                    }
                }
                // tpacket2_hdr: tp_vlan_tci at 24, tp_vlan_tpid at 26.
                let vlan = self.stripped_vlan(status, slot + 24, slot + 26);
                each(RxFrame {
                    data: self.map.slice(slot + mac, snaplen),
                    wire_len,
                    vlan,
                    checksum_pending,
                    checksum_completed,
                    merged: None,
                });
            }
            seen += 1;
            self.held += 1;
            self.next_unit = (self.next_unit + 1) % self.units;
        }
        (seen > 0).then_some(seen)
    }

    /// The receive-offload aggregate in a slot, read from the virtio-net
    /// header before its frame; None for a frame of the wire's size.
    fn slot_aggregate(&self, slot: usize, mac: usize, snaplen: usize) -> Option<Merged> {
        if !self.vnet || mac < 32 + VNET_HDR_LEN || mac + snaplen > self.unit_size {
            return None;
        }
        let mut header = [0; VNET_HDR_LEN];
        header.copy_from_slice(self.map.slice(slot + mac - VNET_HDR_LEN, VNET_HDR_LEN));
        (header[1] & !VIRTIO_NET_HDR_GSO_ECN != 0)
            .then(|| Merged::new(header, self.map.slice(slot + mac, snaplen)))
    }

    /// Takes the next whole aggregate from the socket's queue (the kernel
    /// queues them in ring order). None when there is none, or it was
    /// longer than any IP packet: the slot's cut copy is then counted as
    /// oversize.
    fn receive_merged(&mut self) -> Option<(usize, Merged)> {
        if self.merged.is_empty() {
            return None;
        }
        // SAFETY: `merged` is this ring's own buffer, writable for its
        // length; MSG_TRUNC makes the call return the full length.
        let received = unsafe {
            libc::recv(
                self.fd.as_raw_fd(),
                self.merged.as_mut_ptr().cast(),
                self.merged.len(),
                libc::MSG_DONTWAIT | libc::MSG_TRUNC,
            )
        };
        let received = usize::try_from(received).ok()?;
        if received < VNET_HDR_LEN + 14 || received > self.merged.len() {
            return None;
        }
        let len = received - VNET_HDR_LEN;
        let mut header = [0; VNET_HDR_LEN];
        header.copy_from_slice(&self.merged[..VNET_HDR_LEN]);
        let frame = &self.merged[VNET_HDR_LEN..received];
        Some((len, Merged::new(header, frame)))
    }

    /// The VLAN tag the driver took out of a frame, from its ring header.
    fn stripped_vlan(&self, status: u32, tci_at: usize, tpid_at: usize) -> Option<(u16, u16)> {
        (status & TP_STATUS_VLAN_VALID != 0).then(|| {
            let tci = self.map.read_u16(tci_at);
            let tpid = if status & TP_STATUS_VLAN_TPID_VALID != 0 {
                self.map.read_u16(tpid_at)
            } else {
                0x8100
            };
            (tpid, tci)
        })
    }

    /// The next TPACKET_V3 block, if the kernel has handed it over.
    fn drain_block(&mut self, mut each: impl FnMut(RxFrame<'_>)) -> Option<usize> {
        let block = self.next_unit * self.unit_size;
        // Block descriptor: tpacket_block_desc with tpacket_hdr_v1 at 8.
        let status = self.map.status(block + 8);
        if self.held == self.units || status.load(Ordering::Acquire) & TP_STATUS_USER == 0 {
            return None;
        }
        let count = self.map.read_u32(block + 12) as usize;
        let mut offset = self.map.read_u32(block + 16) as usize;
        let end = block + self.unit_size;
        let mut seen = 0;
        for _ in 0..count {
            let header = block + offset;
            // Offsets come from the kernel; check them anyway so a bad one
            // ends the block instead of reading outside it.
            if offset < 48 || header + 48 > end {
                break;
            }
            let next = self.map.read_u32(header) as usize;
            let snaplen = self.map.read_u32(header + 12) as usize;
            let wire_len = self.map.read_u32(header + 16);
            let frame_status = self.map.read_u32(header + 20);
            let mac = self.map.read_u16(header + 24) as usize;
            if header + mac + snaplen > end {
                break;
            }
            // tpacket3_hdr's hv1: tp_vlan_tci at 32, tp_vlan_tpid at 36.
            let vlan = self.stripped_vlan(frame_status, header + 32, header + 36);
            each(RxFrame {
                data: self.map.slice(header + mac, snaplen),
                wire_len,
                vlan,
                checksum_pending: frame_status & TP_STATUS_CSUMNOTREADY != 0,
                checksum_completed: false,
                merged: None,
            });
            seen += 1;
            if next == 0 {
                break;
            }
            offset += next;
        }
        self.held += 1;
        self.next_unit = (self.next_unit + 1) % self.units;
        Some(seen)
    }

    /// Frames received and dropped by the kernel since the previous call.
    pub fn kernel_stats(&self) -> RxKernelStats {
        let Some(stats) =
            read_option::<TpacketStatsV3>(self.fd.as_raw_fd(), SOL_PACKET, PACKET_STATISTICS)
        else {
            return RxKernelStats::default();
        };
        RxKernelStats {
            packets: u64::from(stats.tp_packets),
            drops: u64::from(stats.tp_drops),
        }
    }
}

/// Where a worker's frames come from: an AF_PACKET receive ring or an
/// AF_XDP socket. Drained frames stay the source's until released, so a
/// sender may point into them until it has sent.
pub(crate) trait FrameSource {
    /// Calls `each` for up to `max_frames` received frames (a V3 source:
    /// the next block) and holds them; `None` when nothing was ready.
    fn drain_held(&mut self, max_frames: usize, each: impl FnMut(RxFrame<'_>)) -> Option<usize>;
    /// Gives every held frame back to the kernel.
    fn release_held(&mut self);
}

impl FrameSource for RxRing {
    fn release_held(&mut self) {
        while self.held > 0 {
            let unit = (self.next_unit + self.units - self.held) % self.units;
            let offset = unit * self.unit_size;
            let status = match self.layout {
                RxLayout::Frames => self.map.status(offset),
                RxLayout::Blocks => self.map.status(offset + 8),
            };
            status.store(TP_STATUS_KERNEL, Ordering::Release);
            self.held -= 1;
        }
    }

    fn drain_held(&mut self, max_frames: usize, each: impl FnMut(RxFrame<'_>)) -> Option<usize> {
        match self.layout {
            RxLayout::Blocks => self.drain_block(each),
            RxLayout::Frames => self.drain_slots(max_frames, each),
        }
    }
}

/// Judges the frames `source` has ready and sends those `judge` allows out
/// of `out`, then gives the frames back: a copying sender points into the
/// source until it has sent.
fn forward_from(
    source: &mut impl FrameSource,
    out: &mut Sender,
    max_frames: usize,
    mut judge: impl FnMut(&RxFrame<'_>) -> bool,
) -> Option<Forwarded> {
    let mut forwarded = Forwarded::default();
    let drained = source.drain_held(max_frames, |frame| {
        let frames = u64::from(frame.frames());
        forwarded.frames += frames;
        if !judge(&frame) {
            return;
        }
        match out.push(&frame) {
            Ok(()) => {
                forwarded.sent += frames;
                forwarded.sent_bytes += match frame.merged {
                    Some(merged) => u64::from(merged.wire_bytes),
                    None => frame.data.len() as u64,
                };
            }
            Err(TxRefusal::Oversize) => forwarded.oversize += frames,
            Err(TxRefusal::RingFull) => forwarded.busy += frames,
        }
    });
    drained?;
    let failed = out.flush();
    forwarded.sent -= failed.oversize + failed.busy;
    forwarded.sent_bytes -= failed.bytes;
    forwarded.oversize += failed.oversize;
    forwarded.busy += failed.busy;
    forwarded.coalesced = out.take_coalesced();
    source.release_held();
    Some(forwarded)
}

/// How a port receives: an AF_PACKET ring, or an AF_XDP socket fed by an
/// XDP program.
pub enum Receiver {
    Packet(RxRing),
    Xdp(XdpRx),
}

impl Receiver {
    pub fn interface(&self) -> &str {
        match self {
            Receiver::Packet(ring) => ring.interface(),
            Receiver::Xdp(socket) => socket.interface(),
        }
    }

    /// The descriptor to wait on for frames.
    pub fn raw_fd(&self) -> RawFd {
        match self {
            Receiver::Packet(ring) => ring.raw_fd(),
            Receiver::Xdp(socket) => socket.raw_fd(),
        }
    }

    /// Frames the kernel dropped since the previous call because nsgd did
    /// not keep up.
    pub fn kernel_stats(&self) -> RxKernelStats {
        match self {
            Receiver::Packet(ring) => ring.kernel_stats(),
            Receiver::Xdp(socket) => socket.kernel_stats(),
        }
    }

    /// Judges the frames the kernel has handed over and sends those `judge`
    /// allows out of `out`; `None` when nothing was ready.
    pub fn forward(
        &mut self,
        out: &mut Sender,
        max_frames: usize,
        judge: impl FnMut(&RxFrame<'_>) -> bool,
    ) -> Option<Forwarded> {
        match self {
            Receiver::Packet(ring) => forward_from(ring, out, max_frames, judge),
            Receiver::Xdp(socket) => forward_from(socket, out, max_frames, judge),
        }
    }
}

/// Why a frame was not queued for sending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxRefusal {
    /// Longer than a transmit slot holds.
    Oversize,
    /// Every slot is waiting for the driver.
    RingFull,
}

/// A transmit ring: TPACKET_V2 on a socket that receives nothing.
pub struct TxRing {
    fd: OwnedFd,
    map: Mapping,
    frame_size: usize,
    frames: usize,
    head: usize,
    queued: usize,
    /// The longest untagged frame the device takes (MTU + Ethernet header).
    /// Checked here: with a virtio-net header the kernel leaves the check
    /// to the driver, and a frame the driver drops is retried at the next
    /// `send` for ever, stalling every frame behind it.
    max_wire_frame: usize,
    /// The last `send` left frames in the ring for want of room.
    unsent: bool,
    /// Frames the kernel rejected (malformed for the device).
    pub rejected: u64,
    interface: String,
}

impl TxRing {
    pub fn open(interface: &str, config: &RingConfig) -> Result<TxRing, PortError> {
        let index = interface_index(interface)?;
        let fd = packet_socket(interface)?;
        let raw = fd.as_raw_fd();
        set_option(
            raw,
            PACKET_VERSION,
            &TPACKET_V2,
            interface,
            "select TPACKET_V2",
        )?;
        set_option(raw, PACKET_QDISC_BYPASS, &1i32, interface, "bypass qdisc")?;
        // Each slot starts with a virtio-net header whose hdr_len is the
        // whole frame: the kernel then copies the frame into the skb's own
        // buffer. Without it the skb points at the ring's pages, and veth
        // (any device handing frames to another namespace) copies them into
        // a freshly allocated page per frame (skb_copy_ubufs).
        set_option(raw, PACKET_VNET_HDR, &1i32, interface, "vnet header")?;
        // Skip a malformed frame instead of stalling the ring on it.
        set_option(raw, PACKET_LOSS, &1i32, interface, "set PACKET_LOSS")?;
        let frame_size = config.tx_frame_size;
        let frames_per_block = 16u32;
        let request = TpacketReq {
            tp_block_size: frame_size * frames_per_block,
            tp_block_nr: config.tx_frames.div_ceil(frames_per_block),
            tp_frame_size: frame_size,
            tp_frame_nr: config.tx_frames.div_ceil(frames_per_block) * frames_per_block,
        };
        set_option(
            raw,
            PACKET_TX_RING,
            &request,
            interface,
            "set up transmit ring",
        )?;
        let frames = request.tp_frame_nr as usize;
        let map = Mapping::new(raw, frames * frame_size as usize, interface)?;
        bind(raw, index, 0, interface)?;
        let max_wire_frame = interface_mtu(raw, interface)? + 14;
        Ok(TxRing {
            fd,
            map,
            frame_size: frame_size as usize,
            frames,
            head: 0,
            queued: 0,
            max_wire_frame,
            unsent: false,
            rejected: 0,
            interface: interface.to_string(),
        })
    }

    pub fn interface(&self) -> &str {
        &self.interface
    }

    /// The longest frame (VLAN tag included) a slot holds.
    pub fn max_frame(&self) -> usize {
        self.frame_size - TX_DATA_OFFSET - VNET_HDR_LEN
    }

    /// Copies `frame` into the next free slot, re-inserting a VLAN tag the
    /// receiving driver stripped, and marks it for sending at the next
    /// [`flush`](Self::flush).
    pub fn queue(&mut self, frame: &RxFrame<'_>) -> Result<(), TxRefusal> {
        let tag_len = if frame.vlan.is_some() { 4 } else { 0 };
        let len = frame.data.len() + tag_len;
        // A tagged frame may be 4 bytes longer, as the kernel allows.
        let tagged = tag_len > 0 || matches!(frame.data.get(12..14), Some([0x81, 0x00]));
        let max_len = self.max_wire_frame + if tagged { 4 } else { 0 };
        if len > self.max_frame().min(max_len) || (tag_len > 0 && frame.data.len() < 12) {
            return Err(TxRefusal::Oversize);
        }
        let slot = self.head * self.frame_size;
        let status = self.map.status(slot).load(Ordering::Acquire);
        if status == TP_STATUS_WRONG_FORMAT {
            self.rejected += 1;
        } else if status != 0 {
            // Still queued or being sent: let the kernel catch up once.
            self.flush();
            if self.map.status(slot).load(Ordering::Acquire) & !TP_STATUS_WRONG_FORMAT != 0 {
                return Err(TxRefusal::RingFull);
            }
        }
        let slot_data = self
            .map
            .slice_mut(slot + TX_DATA_OFFSET, VNET_HDR_LEN + len);
        let (header, data) = slot_data.split_at_mut(VNET_HDR_LEN);
        header.copy_from_slice(&linear_frame_header(len));
        match frame.vlan {
            Some((tpid, tci)) => {
                data[..12].copy_from_slice(&frame.data[..12]);
                data[12..14].copy_from_slice(&tpid.to_be_bytes());
                data[14..16].copy_from_slice(&tci.to_be_bytes());
                data[16..].copy_from_slice(&frame.data[12..]);
            }
            None => data.copy_from_slice(frame.data),
        }
        // tpacket2_hdr: tp_len at 4, tp_snaplen at 8.
        let sent_len = (VNET_HDR_LEN + len) as u32;
        let header = self.map.slice_mut(slot, 12);
        header[4..8].copy_from_slice(&sent_len.to_ne_bytes());
        header[8..12].copy_from_slice(&sent_len.to_ne_bytes());
        fence(Ordering::Release);
        self.map
            .status(slot)
            .store(TP_STATUS_SEND_REQUEST, Ordering::Release);
        self.head = (self.head + 1) % self.frames;
        self.queued += 1;
        Ok(())
    }

    /// Hands every queued frame to the driver: one syscall per batch.
    ///
    /// A frame the driver cannot take now (a peer's full queue) stays in
    /// its slot with every frame behind it, and the kernel takes it up
    /// again at the next `send`: [`has_unsent`](Self::has_unsent) says so,
    /// and the caller comes back soon rather than at the next frame.
    pub fn flush(&mut self) {
        if self.queued == 0 && !self.unsent {
            return;
        }
        self.queued = 0;
        for _ in 0..TX_RETRIES {
            // SAFETY: a zero-length send on our own socket asks the kernel
            // to transmit the slots marked SEND_REQUEST; no user buffer is
            // passed.
            let rc =
                unsafe { libc::send(self.fd.as_raw_fd(), std::ptr::null(), 0, libc::MSG_DONTWAIT) };
            self.unsent = rc < 0
                && matches!(
                    io::Error::last_os_error().raw_os_error(),
                    Some(libc::ENOBUFS | libc::EAGAIN | libc::EINTR)
                );
            if !self.unsent {
                return;
            }
            std::hint::spin_loop();
        }
    }

    /// Frames are still waiting in the ring after the last flush.
    pub fn has_unsent(&self) -> bool {
        self.unsent
    }
}

/// The virtio-net header of a frame sent as it is (no checksum to finish,
/// no segmentation) whose `len` bytes all go into the skb's linear buffer.
fn linear_frame_header(len: usize) -> [u8; VNET_HDR_LEN] {
    let mut header = [0; VNET_HDR_LEN];
    // hdr_len at 2; a slot's frame is at most a few KiB, well within u16.
    header[2..4].copy_from_slice(&(len as u16).to_ne_bytes());
    header
}

/// Attempts of one flush at a `send` the driver had no room for.
const TX_RETRIES: usize = 8;

/// What one [`RxRing::forward`] call did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Forwarded {
    /// Frames taken from the receive ring, an aggregate counting as the
    /// wire frames it merged (as do the counts below).
    pub frames: u64,
    /// Allowed frames handed to the driver, and their bytes.
    pub sent: u64,
    pub sent_bytes: u64,
    /// Allowed frames too long to send.
    pub oversize: u64,
    /// Allowed frames dropped because the transmit side stayed full.
    pub busy: u64,
    /// Sent frames that left merged into an aggregate of their stream.
    pub coalesced: u64,
}

/// Allowed frames that a flush could not send.
#[derive(Debug, Clone, Copy, Default)]
pub struct FlushFailures {
    pub oversize: u64,
    pub busy: u64,
    pub bytes: u64,
}

/// How allowed frames leave a port: frames of the wire's size through
/// `frames`, receive-offload aggregates through `merged`.
pub struct Sender {
    frames: FrameSender,
    merged: MergedSender,
    /// Merges runs of one stream's frames for the kernel to cut back, so
    /// a burst crosses the device in one go (with the ring sender only:
    /// the copying one points into its frames until it flushes).
    coalescer: Option<Coalescer>,
    /// Frames sent inside aggregates since the last `take_coalesced`.
    coalesced: u64,
}

/// How allowed frames of the wire's size leave a port.
pub enum FrameSender {
    /// Copied into a memory-mapped TPACKET_V2 ring, sent by one `send`,
    /// each frame copied once more into its skb's own buffer (a
    /// virtio-net header asks for that: an skb pointing at the ring's
    /// pages costs veth a page allocation and a copy per frame).
    Ring(TxRing),
    /// Gathered straight from the receive ring (no copy here) and sent by
    /// one `sendmmsg`, the kernel copying each frame once.
    Copy(TxBatch),
}

/// How allowed frames are sent, as chosen on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxMode {
    Ring,
    Copy,
}

impl Sender {
    pub fn open(
        interface: &str,
        config: &RingConfig,
        mode: TxMode,
        coalesce: bool,
    ) -> Result<Sender, PortError> {
        let frames = match mode {
            TxMode::Ring => FrameSender::Ring(TxRing::open(interface, config)?),
            TxMode::Copy => FrameSender::Copy(TxBatch::open(interface)?),
        };
        let coalescer =
            (matches!(frames, FrameSender::Ring(_)) && coalesce).then(Coalescer::default);
        Ok(Sender {
            frames,
            merged: MergedSender::open(interface)?,
            coalescer,
            coalesced: 0,
        })
    }

    fn push(&mut self, frame: &RxFrame<'_>) -> Result<(), TxRefusal> {
        if let Some(coalescer) = &mut self.coalescer {
            // Too long for the far port: the ring refuses it below.
            let fits = match &self.frames {
                FrameSender::Ring(ring) => frame.data.len() <= ring.max_wire_frame,
                FrameSender::Copy(_) => false,
            };
            if fits && frame.merged.is_none() && frame.vlan.is_none() && !frame.checksum_pending {
                if coalescer.offer(frame.data) {
                    return Ok(());
                }
                if !coalescer.is_empty() {
                    self.end_aggregate();
                    if self.coalescer.as_mut().is_some_and(|c| c.offer(frame.data)) {
                        return Ok(());
                    }
                }
            } else {
                self.end_aggregate();
            }
        }
        match (&mut self.frames, frame.merged) {
            (FrameSender::Ring(ring), None) => ring.queue(frame),
            (FrameSender::Copy(batch), None) => batch.push(frame),
            (frames, Some(merged)) => {
                // Frames queued before it go first: a stream stays in order.
                let failed = frames.flush();
                self.merged.carried_failures.add(&failed);
                self.merged.send(frame, &merged)
            }
        }
    }

    /// Sends the aggregate being built, if any: a lone frame into the
    /// ring, several through the segmenting path after what the ring
    /// holds. Failures are handed on at the next flush.
    fn end_aggregate(&mut self) {
        let Sender {
            frames,
            merged,
            coalescer,
            coalesced,
        } = self;
        let Some(aggregate) = coalescer.as_mut().and_then(Coalescer::take) else {
            return;
        };
        let (result, frame_count, bytes) = match aggregate {
            Aggregate::Single(data) => {
                let single = RxFrame {
                    data,
                    wire_len: data.len() as u32,
                    vlan: None,
                    checksum_pending: false,
                    checksum_completed: false,
                    merged: None,
                };
                let result = match frames {
                    FrameSender::Ring(ring) => ring.queue(&single),
                    FrameSender::Copy(_) => Err(TxRefusal::Oversize),
                };
                (result, 1, data.len() as u64)
            }
            Aggregate::Merged {
                header,
                frame,
                frames: frame_count,
                wire_bytes,
            } => {
                // What the ring holds goes first. (If the driver had no
                // room for it even after the flush's retries, the aggregate
                // may overtake it: a reordering under congestion, as a
                // full NIC queue may cause, never a loss.)
                let failed = frames.flush();
                merged.carried_failures.add(&failed);
                let result = merged.send_parts(&header, &[frame]);
                if result.is_ok() {
                    *coalesced += u64::from(frame_count);
                }
                (result, u64::from(frame_count), wire_bytes)
            }
        };
        let failures = &mut merged.carried_failures;
        match result {
            Ok(()) => {}
            Err(TxRefusal::Oversize) => failures.oversize += frame_count,
            Err(TxRefusal::RingFull) => failures.busy += frame_count,
        }
        if result.is_err() {
            failures.bytes += bytes;
        }
    }

    fn flush(&mut self) -> FlushFailures {
        self.end_aggregate();
        let mut failed = self.frames.flush();
        failed.add(&std::mem::take(&mut self.merged.carried_failures));
        failed
    }

    fn take_coalesced(&mut self) -> u64 {
        std::mem::take(&mut self.coalesced)
    }

    /// Frames wait in the transmit ring for the driver to take them.
    pub fn has_unsent(&self) -> bool {
        matches!(&self.frames, FrameSender::Ring(ring) if ring.has_unsent())
    }

    /// Offers the waiting frames to the driver again.
    pub fn retry_unsent(&mut self) {
        if let FrameSender::Ring(ring) = &mut self.frames {
            ring.flush();
        }
    }
}

impl FrameSender {
    fn flush(&mut self) -> FlushFailures {
        match self {
            FrameSender::Ring(ring) => {
                ring.flush();
                FlushFailures::default()
            }
            FrameSender::Copy(batch) => batch.flush(),
        }
    }
}

impl FlushFailures {
    fn add(&mut self, other: &FlushFailures) {
        self.oversize += other.oversize;
        self.busy += other.busy;
        self.bytes += other.bytes;
    }
}

/// The virtio-net header to send an aggregate with: the received one
/// without "checksum checked" (meaningless on the way out), its offsets
/// moved past a VLAN tag put back in front of them.
fn outgoing_header(received: [u8; VNET_HDR_LEN], tagged: bool) -> [u8; VNET_HDR_LEN] {
    let mut header = received;
    header[0] &= !VIRTIO_NET_HDR_F_DATA_VALID;
    if tagged {
        // hdr_len at 2, csum_start at 6: both count from the frame's start.
        for at in [2, 6] {
            let value = u16::from_ne_bytes([header[at], header[at + 1]]);
            if value != 0 {
                header[at..at + 2].copy_from_slice(&value.saturating_add(4).to_ne_bytes());
            }
        }
    }
    header
}

/// I/O vectors that gather `frame` as it goes out: whole, or, when the
/// receiving driver stripped a VLAN tag, the MAC addresses, the tag
/// (written into `tag`, which must outlive the vectors) and the rest.
/// Returns the vectors and how many of them are used.
fn gather_frame(frame: &RxFrame<'_>, tag: &mut [u8; 4]) -> ([libc::iovec; 3], usize) {
    let data = frame.data;
    let part = |base: *const u8, len: usize| libc::iovec {
        iov_base: base as *mut libc::c_void,
        iov_len: len,
    };
    let unused = part(data.as_ptr(), 0);
    match frame.vlan {
        Some((tpid, tci)) if data.len() >= 12 => {
            tag[..2].copy_from_slice(&tpid.to_be_bytes());
            tag[2..].copy_from_slice(&tci.to_be_bytes());
            let (addresses, rest) = data.split_at(12);
            (
                [
                    part(addresses.as_ptr(), 12),
                    part(tag.as_ptr(), 4),
                    part(rest.as_ptr(), rest.len()),
                ],
                3,
            )
        }
        _ => ([part(data.as_ptr(), data.len()), unused, unused], 1),
    }
}

/// How a sending socket hands frames to the device.
#[derive(Clone, Copy, PartialEq, Eq)]
enum SendPath {
    /// Straight to the driver (PACKET_QDISC_BYPASS): frames of wire size.
    BypassQdisc,
    /// Through the queueing layer, with a virtio-net header before each
    /// frame that may ask for segmentation.
    Queue,
}

/// A packet socket bound to `interface` that only sends, with an 8 MiB
/// send buffer where allowed.
fn send_socket(interface: &str, path: SendPath) -> Result<OwnedFd, PortError> {
    let index = interface_index(interface)?;
    let fd = packet_socket(interface)?;
    let raw = fd.as_raw_fd();
    match path {
        SendPath::BypassQdisc => {
            set_option(raw, PACKET_QDISC_BYPASS, &1i32, interface, "bypass qdisc")?
        }
        SendPath::Queue => set_option(raw, PACKET_VNET_HDR, &1i32, interface, "vnet header")?,
    }
    enlarge_buffer(raw, libc::SO_SNDBUFFORCE, libc::SO_SNDBUF, 8 << 20);
    bind(raw, index, 0, interface)?;
    Ok(fd)
}

/// Sends receive-offload aggregates, one `sendmsg` each, with their
/// virtio-net header (PACKET_VNET_HDR): the kernel segments them (GSO)
/// into frames of the size they were merged from, finishing checksums.
pub struct MergedSender {
    fd: OwnedFd,
    /// Failures of frames flushed early to keep a stream in order, handed
    /// on at the next flush.
    carried_failures: FlushFailures,
}

impl MergedSender {
    fn open(interface: &str) -> Result<MergedSender, PortError> {
        // Not the qdisc-bypass path: it drops any frame that needs
        // segmenting, the queueing path segments it.
        Ok(MergedSender {
            fd: send_socket(interface, SendPath::Queue)?,
            carried_failures: FlushFailures::default(),
        })
    }

    fn send(&mut self, frame: &RxFrame<'_>, merged: &Merged) -> Result<(), TxRefusal> {
        let data = frame.data;
        match frame.vlan {
            Some((tpid, tci)) if data.len() >= 12 => {
                let mut tag = [0u8; 4];
                tag[..2].copy_from_slice(&tpid.to_be_bytes());
                tag[2..].copy_from_slice(&tci.to_be_bytes());
                let header = outgoing_header(merged.header, true);
                self.send_parts(&header, &[&data[..12], &tag, &data[12..]])
            }
            _ => self.send_parts(&outgoing_header(merged.header, false), &[data]),
        }
    }

    /// Sends `header` and then `parts` as one frame with one `sendmsg`.
    fn send_parts(
        &mut self,
        header: &[u8; VNET_HDR_LEN],
        parts: &[&[u8]],
    ) -> Result<(), TxRefusal> {
        let vector = |bytes: &[u8]| libc::iovec {
            iov_base: bytes.as_ptr() as *mut libc::c_void,
            iov_len: bytes.len(),
        };
        let mut iov = [vector(header), vector(&[]), vector(&[]), vector(&[])];
        let count = parts.len().min(iov.len() - 1);
        for (slot, bytes) in iov[1..].iter_mut().zip(&parts[..count]) {
            *slot = vector(bytes);
        }
        // SAFETY: an all-zero msghdr is a valid value of the C struct.
        let mut message: libc::msghdr = unsafe { std::mem::zeroed() };
        message.msg_iov = iov.as_mut_ptr();
        message.msg_iovlen = 1 + count;
        for _ in 0..64 {
            // SAFETY: the I/O vectors point at `header` and `parts`, all
            // live for the call; the kernel only reads them.
            let rc = unsafe { libc::sendmsg(self.fd.as_raw_fd(), &message, libc::MSG_DONTWAIT) };
            if rc >= 0 {
                return Ok(());
            }
            match io::Error::last_os_error().raw_os_error() {
                Some(libc::EAGAIN) | Some(libc::ENOBUFS) | Some(libc::EINTR) => {
                    std::hint::spin_loop()
                }
                // Too long for the device, or a header the kernel refuses.
                _ => return Err(TxRefusal::Oversize),
            }
        }
        Err(TxRefusal::RingFull)
    }
}

/// Frames gathered for one `sendmmsg`.
const TX_BATCH: usize = 256;
/// Longest frame the copying sender accepts (a VLAN-tagged 1500-byte MTU
/// frame fits; longer ones are refused by the device anyway).
const TX_MAX_FRAME: usize = 9216;

/// A `sendmmsg` sender on a socket that receives nothing. Its I/O vectors
/// point into a receive ring between `push` and `flush`, which
/// [`RxRing::forward`] keeps in that order.
pub struct TxBatch {
    fd: OwnedFd,
    iovecs: Box<[[libc::iovec; 3]]>,
    iovec_counts: Box<[usize]>,
    lengths: Box<[u32]>,
    tags: Box<[[u8; 4]]>,
    messages: Box<[libc::mmsghdr]>,
    len: usize,
    failures: FlushFailures,
}

// SAFETY: the raw pointers in `iovecs`/`messages` refer to this value's own
// boxes or to a receive ring the same thread holds; they are rebuilt for
// every batch and never followed after `flush`.
unsafe impl Send for TxBatch {}

impl TxBatch {
    pub fn open(interface: &str) -> Result<TxBatch, PortError> {
        let fd = send_socket(interface, SendPath::BypassQdisc)?;
        let empty_iovec = libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        };
        // SAFETY: an all-zero mmsghdr is a valid value of the C struct.
        let empty_message: libc::mmsghdr = unsafe { std::mem::zeroed() };
        Ok(TxBatch {
            fd,
            iovecs: vec![[empty_iovec; 3]; TX_BATCH].into_boxed_slice(),
            iovec_counts: vec![0; TX_BATCH].into_boxed_slice(),
            lengths: vec![0; TX_BATCH].into_boxed_slice(),
            tags: vec![[0; 4]; TX_BATCH].into_boxed_slice(),
            messages: vec![empty_message; TX_BATCH].into_boxed_slice(),
            len: 0,
            failures: FlushFailures::default(),
        })
    }

    fn push(&mut self, frame: &RxFrame<'_>) -> Result<(), TxRefusal> {
        let tagged = frame.vlan.is_some() && frame.data.len() >= 12;
        let len = frame.data.len() + if tagged { 4 } else { 0 };
        if len > TX_MAX_FRAME {
            return Err(TxRefusal::Oversize);
        }
        if self.len == TX_BATCH {
            self.send_pending();
        }
        let i = self.len;
        let (iovecs, count) = gather_frame(frame, &mut self.tags[i]);
        self.iovecs[i] = iovecs;
        self.iovec_counts[i] = count;
        self.lengths[i] = len as u32;
        self.len += 1;
        Ok(())
    }

    /// Sends what is gathered and returns what could not be sent since the
    /// previous flush.
    fn flush(&mut self) -> FlushFailures {
        self.send_pending();
        std::mem::take(&mut self.failures)
    }

    fn send_pending(&mut self) {
        let count = self.len;
        self.len = 0;
        for i in 0..count {
            let header = &mut self.messages[i].msg_hdr;
            header.msg_iov = self.iovecs[i].as_mut_ptr();
            header.msg_iovlen = self.iovec_counts[i];
        }
        let mut start = 0;
        let mut retries = 0;
        while start < count {
            // SAFETY: messages[start..count] are initialised headers whose
            // I/O vectors point at live frames (held receive slots) and
            // this value's tag buffers.
            let rc = unsafe {
                libc::sendmmsg(
                    self.fd.as_raw_fd(),
                    self.messages[start..count].as_mut_ptr(),
                    (count - start) as u32,
                    libc::MSG_DONTWAIT,
                )
            };
            if rc > 0 {
                start += rc as usize;
                continue;
            }
            match io::Error::last_os_error().raw_os_error() {
                Some(libc::EMSGSIZE) => {
                    self.failures.oversize += 1;
                    self.failures.bytes += u64::from(self.lengths[start]);
                    start += 1;
                }
                Some(libc::EAGAIN) | Some(libc::ENOBUFS) | Some(libc::EINTR) if retries < 64 => {
                    retries += 1;
                    std::hint::spin_loop();
                }
                _ => {
                    self.failures.busy += 1;
                    self.failures.bytes += u64::from(self.lengths[start]);
                    start += 1;
                }
            }
        }
    }
}

const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_GFLAGS: u32 = 0x25;
const ETHTOOL_GGRO: u32 = 0x2b;
const ETH_FLAG_LRO: u32 = 1 << 15;

#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

#[repr(C)]
struct InterfaceRequest {
    name: [libc::c_char; libc::IFNAMSIZ],
    data: *mut libc::c_void,
    _pad: [u8; 16],
}

/// Runs an ethtool request on `interface`: `command` is the C structure of
/// the command named in its first word, which the driver fills in. False
/// when the driver refuses it.
pub(crate) fn ethtool<T>(interface: &str, command: &mut T) -> bool {
    let Ok(fd) = packet_socket(interface) else {
        return false;
    };
    let mut request = InterfaceRequest {
        name: [0; libc::IFNAMSIZ],
        data: (command as *mut T).cast(),
        _pad: [0; 16],
    };
    for (slot, byte) in request
        .name
        .iter_mut()
        .zip(interface.bytes().take(libc::IFNAMSIZ - 1))
    {
        *slot = byte as libc::c_char;
    }
    // SAFETY: SIOCETHTOOL reads the name and `command` (live and writable
    // for the call, of the size its command word implies), and writes the
    // reply into it.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), SIOCETHTOOL, &mut request) };
    rc == 0
}

/// The receive offloads switched on for `interface` that merge frames (GRO,
/// LRO): a bridge would receive aggregates larger than the wire's frames.
/// Empty when none is on or the driver does not say.
pub fn merging_offloads(interface: &str) -> Vec<&'static str> {
    let query = |cmd: u32| -> Option<u32> {
        let mut value = EthtoolValue { cmd, data: 0 };
        ethtool(interface, &mut value).then_some(value.data)
    };
    let mut on = Vec::new();
    if query(ETHTOOL_GGRO).is_some_and(|v| v != 0) {
        on.push("gro");
    }
    if query(ETHTOOL_GFLAGS).is_some_and(|v| v & ETH_FLAG_LRO != 0) {
        on.push("lro");
    }
    on
}

/// What a wait on the receive rings saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// Frames may be ready (or the wait was interrupted).
    Ready,
    TimedOut,
    /// A socket reported an error (its interface went down or away); the
    /// error is cleared, so the next wait blocks again.
    Error,
}

/// Waits until one of `fds` has data or `timeout_ms` passes.
pub fn wait_readable(fds: &[RawFd], timeout_ms: i32) -> Readiness {
    let mut polls = [libc::pollfd {
        fd: -1,
        events: 0,
        revents: 0,
    }; 8];
    let count = fds.len().min(polls.len());
    for (poll, &fd) in polls.iter_mut().zip(&fds[..count]) {
        poll.fd = fd;
        poll.events = libc::POLLIN;
    }
    // SAFETY: `polls` holds `count` initialised pollfd entries.
    let rc = unsafe { libc::poll(polls.as_mut_ptr(), count as libc::nfds_t, timeout_ms) };
    if rc <= 0 {
        return if rc == 0 {
            Readiness::TimedOut
        } else {
            Readiness::Ready
        };
    }
    let mut error = false;
    for poll in &polls[..count] {
        if poll.revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0 {
            error = true;
            let mut value: libc::c_int = 0;
            let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
            // SAFETY: reading SO_ERROR into a live c_int clears the
            // socket's pending error, which poll would report forever.
            unsafe {
                libc::getsockopt(
                    poll.fd,
                    libc::SOL_SOCKET,
                    libc::SO_ERROR,
                    (&mut value as *mut libc::c_int).cast(),
                    &mut len,
                );
            }
        }
    }
    if error {
        Readiness::Error
    } else {
        Readiness::Ready
    }
}

#[repr(C)]
struct TpacketReq {
    tp_block_size: u32,
    tp_block_nr: u32,
    tp_frame_size: u32,
    tp_frame_nr: u32,
}

#[repr(C)]
struct TpacketReq3 {
    tp_block_size: u32,
    tp_block_nr: u32,
    tp_frame_size: u32,
    tp_frame_nr: u32,
    tp_retire_blk_tov: u32,
    tp_sizeof_priv: u32,
    tp_feature_req_word: u32,
}

#[repr(C)]
struct PacketMreq {
    mr_ifindex: i32,
    mr_type: libc::c_ushort,
    mr_alen: libc::c_ushort,
    mr_address: [u8; 8],
}

#[repr(C)]
#[derive(Default)]
struct TpacketStatsV3 {
    tp_packets: u32,
    tp_drops: u32,
    tp_freeze_q_cnt: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A virtio-net header as the kernel writes it for a GRO aggregate.
    fn gso_header(gso_type: u8, gso_size: u16) -> [u8; VNET_HDR_LEN] {
        let mut header = [0u8; VNET_HDR_LEN];
        header[1] = gso_type;
        header[4..6].copy_from_slice(&gso_size.to_ne_bytes());
        header
    }

    /// Ethernet (with `tags` VLAN tags) + IPv4 or IPv6 + TCP with
    /// `tcp_options` bytes of options, then `payload` bytes.
    fn tcp_frame(ipv6: bool, tags: usize, tcp_options: usize, payload: usize) -> Vec<u8> {
        let mut frame = vec![0u8; 12];
        for _ in 0..tags {
            frame.extend_from_slice(&[0x81, 0x00, 0x00, 0x05]);
        }
        if ipv6 {
            frame.extend_from_slice(&[0x86, 0xdd]);
            let mut ip = [0u8; 40];
            ip[0] = 0x60;
            ip[6] = 6;
            frame.extend_from_slice(&ip);
        } else {
            frame.extend_from_slice(&[0x08, 0x00]);
            let mut ip = [0u8; 20];
            ip[0] = 0x45;
            ip[9] = 6;
            frame.extend_from_slice(&ip);
        }
        let mut tcp = vec![0u8; 20 + tcp_options];
        tcp[12] = ((20 + tcp_options) as u8 / 4) << 4;
        frame.extend_from_slice(&tcp);
        frame.resize(frame.len() + payload, 0xab);
        frame
    }

    #[test]
    fn an_aggregate_counts_the_wire_frames_it_merged() {
        // 10 full segments of 1448 bytes and a last one of 100, each with
        // 14 + 20 + 32 bytes of headers (TCP timestamps).
        let frame = tcp_frame(false, 0, 12, 10 * 1448 + 100);
        let merged = Merged::new(gso_header(1, 1448), &frame);
        assert_eq!(merged.frames, 11);
        assert_eq!(merged.wire_bytes as usize, 10 * 1448 + 100 + 11 * 66);

        // IPv6 behind two VLAN tags, the ECN bit set, an exact multiple.
        let frame = tcp_frame(true, 2, 0, 4 * 1000);
        let merged = Merged::new(gso_header(4 | VIRTIO_NET_HDR_GSO_ECN, 1000), &frame);
        assert_eq!(merged.frames, 4);
        assert_eq!(merged.wire_bytes as usize, 4000 + 4 * (14 + 8 + 40 + 20));
    }

    #[test]
    fn an_aggregate_leaves_with_its_offsets_moved_past_a_restored_vlan_tag() {
        let mut received = gso_header(1, 1448);
        received[0] = VIRTIO_NET_HDR_F_NEEDS_CSUM | VIRTIO_NET_HDR_F_DATA_VALID;
        received[2..4].copy_from_slice(&66u16.to_ne_bytes());
        received[6..8].copy_from_slice(&34u16.to_ne_bytes());
        received[8..10].copy_from_slice(&16u16.to_ne_bytes());
        let field = |header: &[u8; VNET_HDR_LEN], at: usize| {
            u16::from_ne_bytes([header[at], header[at + 1]])
        };
        let untagged = outgoing_header(received, false);
        assert_eq!(untagged[0], VIRTIO_NET_HDR_F_NEEDS_CSUM);
        assert_eq!(untagged[1..], received[1..]);
        let tagged = outgoing_header(received, true);
        assert_eq!((field(&tagged, 2), field(&tagged, 6)), (70, 38));
        // The checksum's offset within the TCP header and the segment size
        // do not move.
        assert_eq!((field(&tagged, 8), field(&tagged, 4)), (16, 1448));
    }

    #[test]
    fn a_frame_without_segmentation_or_with_unknown_headers_counts_once() {
        let frame = tcp_frame(false, 0, 0, 3000);
        for header in [gso_header(0, 1448), gso_header(1, 0)] {
            let merged = Merged::new(header, &frame);
            assert_eq!((merged.frames, merged.wire_bytes), (1, frame.len() as u32));
        }
        // Not IP, and cut inside the headers: nothing to divide by.
        let mut arp = frame.clone();
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(Merged::new(gso_header(1, 100), &arp).frames, 1);
        assert_eq!(Merged::new(gso_header(1, 100), &frame[..40]).frames, 1);
        assert_eq!(Merged::new(gso_header(1, 100), &[]).frames, 1);
    }

    #[test]
    fn unknown_interface_is_named_in_the_error() {
        let error = interface_index("nsgd-no-such0").expect_err("no such interface");
        let text = error.to_string();
        assert!(
            text.starts_with("nsgd-no-such0: look up interface"),
            "{text}"
        );
    }

    #[test]
    fn completed_checksum_verifies_to_zero() {
        // A UDP/IPv4 datagram whose checksum field holds the pseudo-header
        // sum, as a stack offloading the checksum leaves it.
        let src = [10u8, 0, 0, 1];
        let dst = [10u8, 0, 0, 2];
        let mut udp = vec![
            0x9c, 0x40, 0x23, 0x28, 0, 13, 0, 0, b'h', b'e', b'l', b'l', b'o',
        ];
        let pseudo: u32 = u32::from(u16::from_be_bytes([src[0], src[1]]))
            + u32::from(u16::from_be_bytes([src[2], src[3]]))
            + u32::from(u16::from_be_bytes([dst[0], dst[1]]))
            + u32::from(u16::from_be_bytes([dst[2], dst[3]]))
            + 17
            + 13;
        let folded = ((pseudo & 0xffff) + (pseudo >> 16)) as u16;
        udp[6..8].copy_from_slice(&folded.to_be_bytes());
        let mut frame = vec![0u8; 34];
        frame.extend_from_slice(&udp);
        assert!(complete_checksum(&mut frame, 34, 6));
        // The receiver's check: pseudo header + segment sums to 0xffff.
        let mut sum = pseudo;
        for word in frame[34..].chunks(2) {
            let high = u32::from(word[0]) << 8;
            sum += high | word.get(1).map_or(0, |&b| u32::from(b));
        }
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        assert_eq!(sum, 0xffff);
        assert!(!complete_checksum(&mut frame, 46, 6), "field past the end");
    }

    #[test]
    fn interface_names_with_nul_are_refused() {
        assert!(interface_index("a\0b").is_err());
    }
}
