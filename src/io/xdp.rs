//! AF_XDP receive: a port's frames taken straight from the driver's XDP hook
//! instead of through an AF_PACKET socket. A four-instruction XDP program
//! redirects every frame of the interface to an AF_XDP socket (copy mode:
//! veth offers no zero-copy), which lands it in a memory area (UMEM) shared
//! with nsgd; nsgd reads descriptors from the socket's receive ring and
//! hands the frame buffers back through the fill ring once the batch is
//! sent. No skb reaches the packet-socket layer on the receive side, which
//! is what an AF_PACKET ring pays per frame.
//!
//! Sending stays with the AF_PACKET senders of [`super::live`]: an AF_XDP
//! transmit ring in copy mode builds the same skb a TPACKET ring does.
//!
//! The program is attached through a BPF link owned by this port, so it is
//! detached when the port is dropped, even when nsgd is killed. Like the
//! rest of the live I/O, all `unsafe` here is raw syscalls and the rings
//! shared with the kernel.
#![allow(unsafe_code)]

use std::cell::Cell;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU32, Ordering};

use super::live::{
    add_promiscuous_membership, interface_index, packet_socket, read_option, write_option,
    FrameSource, Mapping, PortError, RxFrame, RxKernelStats,
};

const AF_XDP: libc::c_int = 44;
const SOL_XDP: libc::c_int = 283;
const XDP_MMAP_OFFSETS: libc::c_int = 1;
const XDP_RX_RING: libc::c_int = 2;
const XDP_UMEM_REG: libc::c_int = 4;
const XDP_UMEM_FILL_RING: libc::c_int = 5;
const XDP_UMEM_COMPLETION_RING: libc::c_int = 6;
const XDP_STATISTICS: libc::c_int = 7;
const XDP_COPY: u16 = 1 << 1;
const XDP_PGOFF_RX_RING: libc::off_t = 0;
const XDP_UMEM_PGOFF_FILL_RING: libc::off_t = 0x1_0000_0000;

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_MAP_TYPE_XSKMAP: u32 = 17;
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_XDP: u32 = 37;
const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;
const XDP_DROP: i32 = 1;
const BPF_FUNC_REDIRECT_MAP: i32 = 51;

const ETHTOOL_GCHANNELS: u32 = 0x3c;

/// Bytes of one UMEM frame: a 1514-byte frame (plus VLAN tags) after the
/// kernel's XDP headroom.
const FRAME_SIZE: u32 = 4096;
/// Frames in a port's UMEM, all of them in the fill ring at rest; also the
/// receive ring's size (powers of two).
const FRAMES: u32 = 4096;

/// Where the XDP program was attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XdpMode {
    /// In the driver, before any skb is built (veth, most NICs).
    Native,
    /// After the skb is built (any driver): works everywhere, gains less.
    Generic,
}

/// A port received through AF_XDP: the socket, its UMEM and rings, and the
/// XDP program that steers the interface's frames to it.
pub struct XdpRx {
    /// Dropped first: detaches the program before the socket goes.
    _link: OwnedFd,
    _program: OwnedFd,
    _map: OwnedFd,
    socket: OwnedFd,
    umem: Mapping,
    rx: Ring,
    fill: Ring,
    /// Keeps the interface promiscuous while the port is open.
    _promiscuous: Option<OwnedFd>,
    /// UMEM addresses of frames drained but not yet handed back to the fill
    /// ring: a sender may still point into them.
    held: Vec<u64>,
    /// Kernel drops already reported (the socket's counters only grow).
    drops_reported: Cell<u64>,
    mode: XdpMode,
    interface: String,
}

// SAFETY: the raw pointers in `Ring` refer to mappings owned by
// this value; the kernel's side is synchronised through the ring indices.
unsafe impl Send for XdpRx {}

impl XdpRx {
    /// Attaches to `interface`'s only receive queue. Refuses an interface
    /// with several queues: one socket per queue would split a flow's two
    /// directions between workers (their hash is not symmetric), and a
    /// queue without a socket would drop its frames unseen.
    pub fn open(interface: &str, promiscuous: bool) -> Result<XdpRx, PortError> {
        let index = interface_index(interface)?;
        let queues = receive_queues(interface);
        if queues > 1 {
            return Err(PortError {
                interface: interface.to_string(),
                step: "count receive queues",
                error: io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!(
                        "{queues} receive queues; AF_XDP mode takes one \
                         (`ethtool -L {interface} combined 1`), or use `--io packet`"
                    ),
                ),
            });
        }
        let error = |step: &'static str| PortError {
            interface: interface.to_string(),
            step,
            error: io::Error::last_os_error(),
        };
        // SAFETY: plain syscall; the result is checked before use.
        let raw = unsafe { libc::socket(AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(error("open AF_XDP socket"));
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let socket = unsafe { OwnedFd::from_raw_fd(raw) };
        let umem = Mapping::anonymous((FRAMES * FRAME_SIZE) as usize)
            .ok_or_else(|| error("allocate UMEM"))?;
        let registration = UmemReg {
            addr: umem.at(0) as u64,
            len: umem.len() as u64,
            chunk_size: FRAME_SIZE,
            headroom: 0,
            flags: 0,
            tx_metadata_len: 0,
        };
        write_option(raw, SOL_XDP, XDP_UMEM_REG, &registration)
            .map_err(|_| error("register UMEM"))?;
        write_option(raw, SOL_XDP, XDP_UMEM_FILL_RING, &FRAMES)
            .map_err(|_| error("size fill ring"))?;
        // A completion ring must exist to bind, though nothing is sent here.
        write_option(raw, SOL_XDP, XDP_UMEM_COMPLETION_RING, &64u32)
            .map_err(|_| error("size completion ring"))?;
        write_option(raw, SOL_XDP, XDP_RX_RING, &FRAMES).map_err(|_| error("size receive ring"))?;
        let offsets = read_option::<MmapOffsets>(raw, SOL_XDP, XDP_MMAP_OFFSETS)
            .ok_or_else(|| error("read ring offsets"))?;
        let rx = Ring::map(
            raw,
            &offsets.rx,
            FRAMES,
            16,
            XDP_PGOFF_RX_RING,
            Side::Consumer,
        )
        .ok_or_else(|| error("map receive ring"))?;
        let mut fill = Ring::map(
            raw,
            &offsets.fill,
            FRAMES,
            8,
            XDP_UMEM_PGOFF_FILL_RING,
            Side::Producer,
        )
        .ok_or_else(|| error("map fill ring"))?;
        let all: Vec<u64> = (0..u64::from(FRAMES))
            .map(|i| i * u64::from(FRAME_SIZE))
            .collect();
        fill.produce_addresses(&all);
        let address = SockaddrXdp {
            family: AF_XDP as u16,
            flags: XDP_COPY,
            ifindex: index,
            queue_id: 0,
            shared_umem_fd: 0,
        };
        // SAFETY: `address` is a valid sockaddr_xdp and its size is passed.
        let rc = unsafe {
            libc::bind(
                raw,
                (&address as *const SockaddrXdp).cast(),
                std::mem::size_of::<SockaddrXdp>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(error("bind AF_XDP socket"));
        }
        let map = bpf_fd(
            BPF_MAP_CREATE,
            &MapCreate {
                map_type: BPF_MAP_TYPE_XSKMAP,
                key_size: 4,
                value_size: 4,
                max_entries: 1,
                ..MapCreate::default()
            },
        )
        .map_err(|_| error("create XSK map"))?;
        let key = 0u32;
        let value = raw as u32;
        let update = MapUpdate {
            map_fd: map.as_raw_fd() as u32,
            _pad: 0,
            key: &key as *const u32 as u64,
            value: &value as *const u32 as u64,
            flags: 0,
        };
        bpf_call(BPF_MAP_UPDATE_ELEM, &update).map_err(|_| error("put socket in XSK map"))?;
        let program = load_program(map.as_raw_fd(), interface)?;
        let (link, mode) = attach(program.as_raw_fd(), index, interface)?;
        let promiscuous = if promiscuous {
            let fd = packet_socket(interface)?;
            add_promiscuous_membership(fd.as_raw_fd(), index, interface)?;
            Some(fd)
        } else {
            None
        };
        Ok(XdpRx {
            _link: link,
            _program: program,
            _map: map,
            socket,
            umem,
            rx,
            fill,
            _promiscuous: promiscuous,
            held: Vec::with_capacity(FRAMES as usize),
            drops_reported: Cell::new(0),
            mode,
            interface: interface.to_string(),
        })
    }

    pub fn interface(&self) -> &str {
        &self.interface
    }

    pub fn raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }

    /// Where the XDP program runs.
    pub fn mode(&self) -> XdpMode {
        self.mode
    }

    /// Frames the kernel dropped since the previous call: receive ring
    /// full, or no free UMEM frame (the worker did not keep up).
    pub fn kernel_stats(&self) -> RxKernelStats {
        let Some(stats) =
            read_option::<XdpStatistics>(self.socket.as_raw_fd(), SOL_XDP, XDP_STATISTICS)
        else {
            return RxKernelStats::default();
        };
        let total = stats.rx_dropped + stats.rx_ring_full;
        RxKernelStats {
            packets: 0,
            drops: total.saturating_sub(self.drops_reported.replace(total)),
        }
    }
}

impl FrameSource for XdpRx {
    fn drain_held(
        &mut self,
        max_frames: usize,
        mut each: impl FnMut(RxFrame<'_>),
    ) -> Option<usize> {
        let ready = self.rx.ready().min(max_frames as u32);
        if ready == 0 {
            return None;
        }
        for i in 0..ready {
            let (address, len) = self.rx.descriptor(i);
            self.held.push(address);
            let (start, len) = (address as usize, len as usize);
            if start
                .checked_add(len)
                .is_none_or(|end| end > self.umem.len())
            {
                // Never written by a sane kernel; skipped rather than read.
                continue;
            }
            each(RxFrame {
                data: self.umem.slice(start, len),
                wire_len: len as u32,
                vlan: None,
                checksum_pending: false,
                checksum_completed: false,
                merged: None,
            });
        }
        self.rx.consume(ready);
        Some(ready as usize)
    }

    fn release_held(&mut self) {
        // The fill ring holds every UMEM frame, so there is always room for
        // the ones handed back.
        self.fill.produce_addresses(&self.held);
        self.held.clear();
    }
}

/// The interface's receive queues (ETHTOOL_GCHANNELS), 1 where the driver
/// does not say.
fn receive_queues(interface: &str) -> u32 {
    #[repr(C)]
    #[derive(Default)]
    struct Channels {
        cmd: u32,
        max_rx: u32,
        max_tx: u32,
        max_other: u32,
        max_combined: u32,
        rx_count: u32,
        tx_count: u32,
        other_count: u32,
        combined_count: u32,
    }
    let mut channels = Channels {
        cmd: ETHTOOL_GCHANNELS,
        ..Channels::default()
    };
    match super::live::ethtool(interface, &mut channels) {
        true => (channels.rx_count + channels.combined_count).max(1),
        false => 1,
    }
}

/// The XDP program: `return bpf_redirect_map(&map, ctx->rx_queue_index,
/// XDP_DROP)`. A frame with no socket on its queue is dropped: never passed
/// to the host's stack unjudged.
fn load_program(map_fd: RawFd, interface: &str) -> Result<OwnedFd, PortError> {
    let instructions: [u64; 6] = [
        // r2 = *(u32 *)(r1 + 16): xdp_md.rx_queue_index
        instruction(0x61, 2, 1, 16, 0),
        // r1 = map (a 16-byte load of the map's descriptor)
        instruction(0x18, 1, 1, 0, map_fd),
        instruction(0, 0, 0, 0, 0),
        // r3 = XDP_DROP: the action when the map has no socket for the queue
        instruction(0xb7, 3, 0, 0, XDP_DROP),
        instruction(0x85, 0, 0, 0, BPF_FUNC_REDIRECT_MAP),
        // exit
        instruction(0x95, 0, 0, 0, 0),
    ];
    let license = c"Dual MIT/GPL";
    let mut log = vec![0u8; 4096];
    let mut name = [0u8; 16];
    name[..8].copy_from_slice(b"nsgd_xsk");
    let load = ProgLoad {
        prog_type: BPF_PROG_TYPE_XDP,
        insn_cnt: instructions.len() as u32,
        insns: instructions.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 1,
        log_size: log.len() as u32,
        log_buf: log.as_mut_ptr() as u64,
        prog_name: name,
        expected_attach_type: BPF_XDP,
        ..ProgLoad::default()
    };
    bpf_fd(BPF_PROG_LOAD, &load).map_err(|source| {
        let verifier =
            String::from_utf8_lossy(&log[..log.iter().position(|&b| b == 0).unwrap_or(0)])
                .trim()
                .to_string();
        PortError {
            interface: interface.to_string(),
            step: "load XDP program",
            error: if verifier.is_empty() {
                source
            } else {
                io::Error::new(source.kind(), format!("{source}; verifier: {verifier}"))
            },
        }
    })
}

/// Attaches the program in the driver if it can, else generically.
fn attach(program: RawFd, index: u32, interface: &str) -> Result<(OwnedFd, XdpMode), PortError> {
    let mut last = io::Error::from(io::ErrorKind::Unsupported);
    for (flags, mode) in [
        (XDP_FLAGS_DRV_MODE, XdpMode::Native),
        (XDP_FLAGS_SKB_MODE, XdpMode::Generic),
    ] {
        let create = LinkCreate {
            prog_fd: program as u32,
            target_ifindex: index,
            attach_type: BPF_XDP,
            flags,
            ..LinkCreate::default()
        };
        match bpf_fd(BPF_LINK_CREATE, &create) {
            Ok(link) => return Ok((link, mode)),
            // Another program already holds the hook: trying the other mode
            // would only hide that.
            Err(error) if error.raw_os_error() == Some(libc::EBUSY) => {
                return Err(PortError {
                    interface: interface.to_string(),
                    step: "attach XDP program",
                    error: io::Error::new(
                        error.kind(),
                        format!("{error}: another XDP program is attached"),
                    ),
                })
            }
            Err(error) => last = error,
        }
    }
    Err(PortError {
        interface: interface.to_string(),
        step: "attach XDP program",
        error: last,
    })
}

/// One eBPF instruction as the kernel reads it (little-endian layout).
const fn instruction(code: u8, dst: u8, src: u8, offset: i16, immediate: i32) -> u64 {
    (code as u64)
        | (((dst & 0xf) | ((src & 0xf) << 4)) as u64) << 8
        | ((offset as u16) as u64) << 16
        | ((immediate as u32) as u64) << 32
}

fn bpf_call<T>(command: libc::c_long, attributes: &T) -> io::Result<libc::c_long> {
    // SAFETY: `attributes` is a live, fully initialised `union bpf_attr`
    // prefix of the size passed; every pointer inside it is live too.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            command,
            attributes as *const T,
            std::mem::size_of::<T>(),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc)
}

fn bpf_fd<T>(command: libc::c_long, attributes: &T) -> io::Result<OwnedFd> {
    let fd = bpf_call(command, attributes)?;
    // SAFETY: these commands return a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Which end of a ring nsgd holds.
#[derive(Clone, Copy)]
enum Side {
    Producer,
    Consumer,
}

/// One of the socket's single-producer, single-consumer rings: the kernel
/// produces into the receive ring, we into the fill ring.
struct Ring {
    map: Mapping,
    producer: *const AtomicU32,
    consumer: *const AtomicU32,
    descriptors: *mut u8,
    mask: u32,
    entry_size: usize,
    /// Our side's index (the consumer's for the receive ring, the
    /// producer's for the fill ring), published after each batch.
    local: u32,
}

impl Ring {
    fn map(
        fd: RawFd,
        offsets: &RingOffsets,
        entries: u32,
        entry_size: usize,
        page_offset: libc::off_t,
        side: Side,
    ) -> Option<Ring> {
        let len = offsets.desc as usize + entries as usize * entry_size;
        let map = Mapping::of_socket(fd, len, page_offset)?;
        let (producer, consumer, descriptors) = (
            map.at(offsets.producer as usize) as *const AtomicU32,
            map.at(offsets.consumer as usize) as *const AtomicU32,
            map.at(offsets.desc as usize),
        );
        let mut ring = Ring {
            map,
            producer,
            consumer,
            descriptors,
            mask: entries - 1,
            entry_size,
            local: 0,
        };
        // Both start at zero, but do not assume it.
        ring.local = match side {
            Side::Consumer => ring.consumer().load(Ordering::Relaxed),
            Side::Producer => ring.producer().load(Ordering::Relaxed),
        };
        Some(ring)
    }

    fn producer(&self) -> &AtomicU32 {
        // SAFETY: points into the live mapping, aligned by the kernel.
        unsafe { &*self.producer }
    }

    fn consumer(&self) -> &AtomicU32 {
        // SAFETY: as `producer`.
        unsafe { &*self.consumer }
    }

    /// Descriptors the kernel has published and we have not consumed.
    fn ready(&self) -> u32 {
        self.producer()
            .load(Ordering::Acquire)
            .wrapping_sub(self.local)
    }

    /// The `i`th ready receive descriptor: UMEM address and length.
    fn descriptor(&self, i: u32) -> (u64, u32) {
        let slot = (self.local.wrapping_add(i) & self.mask) as usize * self.entry_size;
        debug_assert!(slot + 12 <= self.map.len());
        // SAFETY: `slot` is a descriptor inside the mapping that the kernel
        // published (acquire load in `ready`) and will not rewrite until
        // we consume it. struct xdp_desc: addr u64, len u32, options u32.
        unsafe {
            let at = self.descriptors.add(slot);
            (
                std::ptr::read_unaligned(at as *const u64),
                std::ptr::read_unaligned(at.add(8) as *const u32),
            )
        }
    }

    fn consume(&mut self, count: u32) {
        self.local = self.local.wrapping_add(count);
        self.consumer().store(self.local, Ordering::Release);
    }

    /// Puts UMEM addresses into the fill ring; the caller guarantees room
    /// (the ring is as large as the UMEM).
    fn produce_addresses(&mut self, addresses: &[u64]) {
        for &address in addresses {
            let slot = (self.local & self.mask) as usize * self.entry_size;
            debug_assert!(slot + 8 <= self.map.len());
            // SAFETY: `slot` is inside the mapping and, with every UMEM
            // frame accounted for, not yet published to the kernel.
            unsafe {
                std::ptr::write_unaligned(self.descriptors.add(slot) as *mut u64, address);
            }
            self.local = self.local.wrapping_add(1);
        }
        self.producer().store(self.local, Ordering::Release);
    }
}

#[repr(C)]
#[derive(Default)]
struct RingOffsets {
    producer: u64,
    consumer: u64,
    desc: u64,
    flags: u64,
}

#[repr(C)]
#[derive(Default)]
struct MmapOffsets {
    rx: RingOffsets,
    tx: RingOffsets,
    fill: RingOffsets,
    completion: RingOffsets,
}

#[repr(C)]
struct UmemReg {
    addr: u64,
    len: u64,
    chunk_size: u32,
    headroom: u32,
    flags: u32,
    tx_metadata_len: u32,
}

#[repr(C)]
struct SockaddrXdp {
    family: u16,
    flags: u16,
    ifindex: u32,
    queue_id: u32,
    shared_umem_fd: u32,
}

#[repr(C)]
#[derive(Default)]
struct XdpStatistics {
    rx_dropped: u64,
    rx_invalid_descs: u64,
    tx_invalid_descs: u64,
    rx_ring_full: u64,
    rx_fill_ring_empty_descs: u64,
    tx_ring_empty_descs: u64,
}

#[repr(C)]
#[derive(Default)]
struct MapCreate {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; 16],
}

#[repr(C)]
struct MapUpdate {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

#[repr(C)]
#[derive(Default)]
struct ProgLoad {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

#[repr(C)]
#[derive(Default)]
struct LinkCreate {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
    _rest: [u64; 4],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instructions_are_encoded_as_the_kernel_reads_them() {
        // r2 = *(u32 *)(r1 + 16): code 0x61, dst 2, src 1, off 16.
        assert_eq!(
            instruction(0x61, 2, 1, 16, 0).to_le_bytes(),
            [0x61, 0x12, 16, 0, 0, 0, 0, 0]
        );
        // r3 = 1.
        assert_eq!(
            instruction(0xb7, 3, 0, 0, 1).to_le_bytes(),
            [0xb7, 0x03, 0, 0, 1, 0, 0, 0]
        );
        // A negative offset and immediate keep their two's complement.
        assert_eq!(
            instruction(0x05, 0, 0, -1, -2).to_le_bytes(),
            [0x05, 0x00, 0xff, 0xff, 0xfe, 0xff, 0xff, 0xff]
        );
    }

    #[test]
    fn kernel_structures_have_their_c_sizes() {
        assert_eq!(std::mem::size_of::<SockaddrXdp>(), 16);
        assert_eq!(std::mem::size_of::<UmemReg>(), 32);
        assert_eq!(std::mem::size_of::<MmapOffsets>(), 128);
        assert_eq!(std::mem::size_of::<XdpStatistics>(), 48);
        assert_eq!(std::mem::size_of::<MapUpdate>(), 32);
    }
}
