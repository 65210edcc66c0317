//! Load tool for the live lab (`scripts/lab.sh`): a connection-rate pair and
//! a UDP echo server and a UDP flood; the standard library, and libc for sendmmsg.
//!
//! ```sh
//! lab_load accept ADDR                          # accept and close at once, until killed
//! lab_load connect ADDR SECONDS [CONCURRENCY]   # connect, read to EOF, close; print the rate
//! lab_load udp-echo ADDR                        # echo every datagram back, until killed
//! lab_load udp-flood ADDR SECONDS [PAYLOAD]     # send datagrams as fast as one core can
//! lab_load udp-sink ADDR                        # hold a UDP port open, never read
//! ```
//!
//! `connect` prints one line: `connections=N seconds=S rate=R/s failures=F`.
//! `udp-flood` prints `sent=N seconds=S rate=R/s errors=E`. It sends batches of
//! 64 datagrams per `sendmmsg` call (default payload 18 bytes: a 64-byte
//! frame on the wire), because iperf3's one write per datagram tops out near
//! 130 kpps on this machine and would measure itself, not the path.
//! The server closes first, so the TIME_WAIT state lands on the server side
//! and the client's ephemeral ports free up at once.

#![allow(unsafe_code)] // sendmmsg, for a flood fast enough to load the path

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

const ACCEPT_THREADS: usize = 4;
const DEFAULT_CONCURRENCY: usize = 4;
/// How long one connection attempt, or waiting for the server's FIN, may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(2);

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let outcome = match args.as_slice() {
        ["accept", addr] => accept(addr),
        ["connect", addr, seconds] => connect(addr, seconds, None),
        ["connect", addr, seconds, concurrency] => connect(addr, seconds, Some(concurrency)),
        ["udp-echo", addr] => udp_echo(addr),
        ["udp-sink", addr] => udp_sink(addr),
        ["udp-flood", addr, seconds] => udp_flood(addr, seconds, None),
        ["udp-flood", addr, seconds, payload] => udp_flood(addr, seconds, Some(payload)),
        _ => Err(
            "usage: lab_load accept ADDR | connect ADDR SECONDS [CONCURRENCY] \
             | udp-echo ADDR | udp-flood ADDR SECONDS [PAYLOAD] | udp-sink ADDR"
                .into(),
        ),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("lab_load: {error}");
            ExitCode::FAILURE
        }
    }
}

fn parse_seconds(text: &str) -> Result<f64> {
    match text.parse::<f64>() {
        Ok(seconds) if seconds.is_finite() && seconds > 0.0 => Ok(seconds),
        Ok(_) => Err(format!("SECONDS must be positive, not {text}").into()),
        Err(e) => Err(format!("bad SECONDS {text:?}: {e}").into()),
    }
}

fn parse_addr(addr: &str) -> Result<SocketAddr> {
    addr.parse()
        .map_err(|e| format!("bad address {addr:?} (want IP:PORT or [IPv6]:PORT): {e}").into())
}

/// Accepts on several threads and drops each connection at once.
fn accept(addr: &str) -> Result<()> {
    let listener = TcpListener::bind(parse_addr(addr)?)?;
    let workers: Vec<_> = (0..ACCEPT_THREADS)
        .map(|_| {
            let listener = listener.try_clone()?;
            Ok(thread::spawn(move || loop {
                match listener.accept() {
                    Ok((stream, _)) => drop(stream),
                    Err(error) => eprintln!("lab_load: accept: {error}"),
                }
            }))
        })
        .collect::<Result<_>>()?;
    for worker in workers {
        let _ = worker.join();
    }
    Ok(())
}

/// Opens connections back to back on CONCURRENCY threads for SECONDS.
fn connect(addr: &str, seconds: &str, concurrency: Option<&&str>) -> Result<()> {
    let addr = parse_addr(addr)?;
    let seconds = parse_seconds(seconds)?;
    let concurrency: usize = match concurrency {
        Some(text) => text
            .parse()
            .map_err(|e| format!("bad CONCURRENCY {text:?}: {e}"))?,
        None => DEFAULT_CONCURRENCY,
    };
    if concurrency == 0 {
        return Err("CONCURRENCY must be positive".into());
    }
    let connections = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(seconds);
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (connections, failures) = (Arc::clone(&connections), Arc::clone(&failures));
            thread::spawn(move || {
                while Instant::now() < deadline {
                    let counter = if one_connection(addr).is_ok() {
                        &connections
                    } else {
                        &failures
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for worker in workers {
        let _ = worker.join();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let connections = connections.load(Ordering::Relaxed);
    println!(
        "connections={connections} seconds={elapsed:.3} rate={:.0}/s failures={}",
        connections as f64 / elapsed,
        failures.load(Ordering::Relaxed)
    );
    Ok(())
}

/// Connect, read until the server's EOF, close.
fn one_connection(addr: SocketAddr) -> std::io::Result<()> {
    let mut stream = TcpStream::connect_timeout(&addr, STEP_TIMEOUT)?;
    stream.set_read_timeout(Some(STEP_TIMEOUT))?;
    let mut buf = [0u8; 64];
    while stream.read(&mut buf)? > 0 {}
    Ok(())
}

/// Sends every datagram back to where it came from.
fn udp_echo(addr: &str) -> Result<()> {
    let socket = UdpSocket::bind(parse_addr(addr)?)?;
    let mut buf = vec![0u8; 65536];
    loop {
        let (len, peer) = socket.recv_from(&mut buf)?;
        if let Err(error) = socket.send_to(&buf[..len], peer) {
            eprintln!("lab_load: send to {peer}: {error}");
        }
    }
}

/// Holds a UDP port open without reading: datagrams that reach it are
/// counted by the kernel (`Udp: InDatagrams`, then `RcvbufErrors` once the
/// buffer is full) at the least cost to the receiving core, and nothing
/// answers with ICMP port unreachable.
fn udp_sink(addr: &str) -> Result<()> {
    let _socket = UdpSocket::bind(parse_addr(addr)?)?;
    loop {
        thread::park();
    }
}

const FLOOD_BATCH: usize = 64;

/// Sends fixed-size datagrams on one connected socket, FLOOD_BATCH per
/// system call, until SECONDS have passed. A full socket buffer (ENOBUFS)
/// is counted as an error and retried, as a flood would.
fn udp_flood(addr: &str, seconds: &str, payload: Option<&&str>) -> Result<()> {
    let addr = parse_addr(addr)?;
    let seconds = parse_seconds(seconds)?;
    let payload: usize = match payload {
        Some(text) => text
            .parse()
            .map_err(|e| format!("bad PAYLOAD {text:?}: {e}"))?,
        None => 18,
    };
    if payload > 1472 {
        return Err("PAYLOAD must fit one 1500-byte IPv4 packet (at most 1472)".into());
    }
    let local: SocketAddr = if addr.is_ipv4() {
        "0.0.0.0:0".parse()?
    } else {
        "[::]:0".parse()?
    };
    let socket = UdpSocket::bind(local)?;
    socket.connect(addr)?;
    let data = vec![0x5au8; payload];
    let mut iov = [libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    }];
    // SAFETY: an all-zero mmsghdr is valid (null name, no control data).
    let mut messages: [libc::mmsghdr; FLOOD_BATCH] = unsafe { std::mem::zeroed() };
    for message in &mut messages {
        message.msg_hdr.msg_iov = iov.as_mut_ptr();
        message.msg_hdr.msg_iovlen = 1;
    }
    let fd = std::os::fd::AsRawFd::as_raw_fd(&socket);
    let (mut sent, mut errors) = (0u64, 0u64);
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(seconds);
    while Instant::now() < deadline {
        for _ in 0..64 {
            // SAFETY: every header points at `iov`, which points at `data`;
            // both outlive the call, and the kernel only reads them.
            let result =
                unsafe { libc::sendmmsg(fd, messages.as_mut_ptr(), FLOOD_BATCH as u32, 0) };
            if result < 0 {
                errors += 1;
            } else {
                sent += result as u64;
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "sent={sent} seconds={elapsed:.3} rate={:.0}/s errors={errors}",
        sent as f64 / elapsed
    );
    Ok(())
}
