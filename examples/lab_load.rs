//! Load tool for the live lab (`scripts/lab.sh`): a connection-rate pair and
//! a UDP echo server, standard library only.
//!
//! ```sh
//! lab_load accept ADDR                          # accept and close at once, until killed
//! lab_load connect ADDR SECONDS [CONCURRENCY]   # connect, read to EOF, close; print the rate
//! lab_load udp-echo ADDR                        # echo every datagram back, until killed
//! ```
//!
//! `connect` prints one line: `connections=N seconds=S rate=R/s failures=F`.
//! The server closes first, so the TIME_WAIT state lands on the server side
//! and the client's ephemeral ports free up at once.

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
        _ => Err(
            "usage: lab_load accept ADDR | connect ADDR SECONDS [CONCURRENCY] | udp-echo ADDR"
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
    let seconds: f64 = seconds
        .parse()
        .map_err(|e| format!("bad SECONDS {seconds:?}: {e}"))?;
    let concurrency: usize = match concurrency {
        Some(text) => text
            .parse()
            .map_err(|e| format!("bad CONCURRENCY {text:?}: {e}"))?,
        None => DEFAULT_CONCURRENCY,
    };
    if !seconds.is_finite() || seconds <= 0.0 || concurrency == 0 {
        return Err("SECONDS and CONCURRENCY must be positive".into());
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
