//! `nsgd run`: bridge two interfaces inline and enforce the policy on
//! everything that crosses, until SIGINT or SIGTERM. SIGHUP (or `--watch`)
//! reloads the policy; a policy with errors is rejected and the old one stays
//! in force.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::io::live::{merging_offloads, RxLayout, TxMode};
use crate::pipeline::live::{prometheus, status_line, Bridge, LiveOptions, LiveReport, RxIo};
use crate::telemetry::flow_log::FlowLogWriter;
use crate::telemetry::metrics::MetricsServer;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Policy file (YAML or JSON).
    policy: PathBuf,
    /// An interface to bridge; give exactly two (`--port eth1 --port eth2`).
    #[arg(long = "port", required = true, num_args = 1)]
    ports: Vec<String>,
    /// Worker threads, each with its own rings on both ports (PACKET_FANOUT
    /// by flow hash). One suits a two-core machine that also runs traffic.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    #[command(flatten)]
    dataplane: super::DataplaneArgs,
    /// Re-check live flows against a reloaded policy (default: allowed flows
    /// keep their decision, as Azure's do).
    #[arg(long = "reevaluate-on-reload")]
    reevaluate_on_reload: bool,
    /// Reload the policy when its file changes (as well as on SIGHUP).
    #[arg(long)]
    watch: bool,
    /// Print counters every this many seconds on standard error.
    #[arg(long = "stats-interval")]
    stats_interval: Option<f64>,
    /// Serve Prometheus metrics on this address (e.g. 127.0.0.1:9464).
    #[arg(long)]
    metrics: Option<String>,
    /// Write NSG flow log (version 2) records to this file: each minute's
    /// records once the minute is over, the rest at exit.
    #[arg(long = "flow-log")]
    flow_log: Option<PathBuf>,
    /// Print the final counters as one JSON document.
    #[arg(long)]
    json: bool,
    /// Receive ring layout: `frames` (TPACKET_V2, each frame handed over at
    /// once) or `blocks` (TPACKET_V3, frames packed in blocks).
    #[arg(long = "rx-ring", default_value = "frames", value_parser = ["frames", "blocks"])]
    rx_ring: String,
    /// Receive ring block size, KiB (a block is handed over when full or
    /// after the block timeout: smaller blocks mean lower latency).
    #[arg(long = "rx-block-kib", default_value_t = 64)]
    rx_block_kib: u32,
    /// How frames are received: `packet` (AF_PACKET rings, any interface,
    /// any number of workers) or `xdp` (an XDP program hands each port's
    /// frames to an AF_XDP socket: one worker, single-queue ports; needs
    /// CAP_BPF and CAP_IPC_LOCK as well).
    #[arg(long = "rx", default_value = "packet", value_parser = ["packet", "xdp"])]
    rx: String,
    /// How allowed frames are sent: `ring` (a TPACKET_V2 transmit ring, one
    /// `send` per batch) or `copy` (`sendmmsg` straight from the receive
    /// ring, the kernel copying each frame).
    #[arg(long = "tx", default_value = "ring", value_parser = ["ring", "copy"])]
    tx: String,
    /// Send every frame on its own: do not merge runs of a stream's frames
    /// for the kernel to cut back into the very same frames (GSO).
    #[arg(long = "no-coalesce")]
    no_coalesce: bool,
    /// Microseconds an idle worker keeps polling its rings before sleeping
    /// (0: sleep at once; more: lower latency, more CPU).
    #[arg(long = "spin-us", default_value_t = 0)]
    spin_us: u64,
    /// Receive ring blocks per port and worker.
    #[arg(long = "rx-blocks", default_value_t = 256)]
    rx_blocks: u32,
}

/// How often the control loop looks at signals, the policy file and timers.
const TICK: Duration = Duration::from_millis(100);

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let [port_a, port_b] = args.ports.as_slice() else {
        anyhow::bail!(
            "give exactly two --port interfaces (got {})",
            args.ports.len()
        );
    };
    let program = Arc::new(super::load_program(&args.policy)?);
    let mut options = LiveOptions::new(port_a, port_b);
    options.workers = args.workers.max(1);
    options.ring.rx_block_size = args.rx_block_kib.clamp(4, 1 << 16).next_power_of_two() * 1024;
    options.ring.rx_blocks = args.rx_blocks.max(2);
    options.spin = Duration::from_micros(args.spin_us);
    options.coalesce = !args.no_coalesce;
    options.tx_mode = if args.tx == "ring" {
        TxMode::Ring
    } else {
        TxMode::Copy
    };
    options.rx_io = if args.rx == "xdp" {
        RxIo::Xdp
    } else {
        RxIo::Packet
    };
    options.ring.rx_layout = if args.rx_ring == "blocks" {
        RxLayout::Blocks
    } else {
        RxLayout::Frames
    };
    args.dataplane.apply(&mut options.dataplane);
    options.dataplane.pass_neighbour_discovery = options.dataplane.pass_non_ip;
    options.dataplane.reevaluate_on_reload = args.reevaluate_on_reload;
    options.dataplane.flow_log = args.flow_log.is_some();

    let stop = Arc::new(AtomicBool::new(false));
    let hangup = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .context("cannot install signal handlers")?;
    }
    signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&hangup))
        .context("cannot install signal handlers")?;

    for port in [port_a, port_b] {
        let merging = merging_offloads(port);
        // XDP runs before GRO: an AF_XDP port never sees an aggregate.
        if merging.is_empty() || options.rx_io == RxIo::Xdp {
            continue;
        }
        if options.ring.rx_layout == RxLayout::Blocks {
            eprintln!(
                "nsgd run: warning: {port} merges received frames ({}), which --rx-ring blocks cannot send on: aggregates larger than the MTU will be dropped as oversize; use the default ring or turn it off: ethtool -K {port} {}",
                merging.join(", "),
                merging.iter().map(|o| format!("{o} off")).collect::<Vec<_>>().join(" ")
            );
        } else {
            eprintln!(
                "nsgd run: {port} merges received frames ({}): each aggregate is judged once and cut back into wire-size frames on the way out",
                merging.join(", ")
            );
        }
    }
    // Outputs first: a bad path fails before anything forwards.
    let mut flow_log = match &args.flow_log {
        Some(path) => Some(
            FlowLogWriter::create(path)
                .with_context(|| format!("cannot write {}", path.display()))?,
        ),
        None => None,
    };
    let bridge = Arc::new(Bridge::start(program, options)?);
    let metrics = match &args.metrics {
        Some(address) => {
            let source = Arc::clone(&bridge);
            let server = MetricsServer::start(address, move || prometheus(&source.report()))
                .with_context(|| format!("cannot serve metrics on {address}"))?;
            eprintln!("nsgd run: metrics on http://{}/metrics", server.address());
            Some(server)
        }
        None => None,
    };
    eprintln!(
        "nsgd run: forwarding between {port_a} and {port_b} ({} worker{}, receiving through {}, policy {})",
        args.workers.max(1),
        if args.workers > 1 { "s" } else { "" },
        bridge.receive_path(),
        args.policy.display()
    );

    let mut watched = args.watch.then(|| file_stamp(&args.policy));
    let mut last_stats = Instant::now();
    let mut previous: Option<LiveReport> = None;
    while !stop.load(Ordering::Acquire) {
        std::thread::sleep(TICK);
        if !bridge.is_running() {
            let why = bridge
                .failure()
                .unwrap_or_else(|| "a worker stopped unexpectedly".to_string());
            let report = bridge.report();
            print_summary(&report);
            anyhow::bail!("{why}; not forwarding");
        }
        let mut reload = hangup.swap(false, Ordering::AcqRel);
        if let Some(stamp) = &mut watched {
            let now = file_stamp(&args.policy);
            if now != *stamp {
                *stamp = now;
                reload = true;
            }
        }
        if reload {
            match super::load_program(&args.policy) {
                Ok(program) => {
                    bridge.reload(Arc::new(program));
                    eprintln!(
                        "nsgd run: reloaded {} (generation {})",
                        args.policy.display(),
                        bridge.report().policy_generation
                    );
                }
                Err(error) => {
                    bridge.note_rejected_reload();
                    eprintln!(
                        "nsgd run: reload rejected, the previous policy stays in force: {error:#}"
                    );
                }
            }
        }
        if let Some(seconds) = args.stats_interval {
            let elapsed = last_stats.elapsed();
            if elapsed.as_secs_f64() >= seconds {
                last_stats = Instant::now();
                let report = bridge.report();
                eprintln!(
                    "nsgd run: {}",
                    status_line(&report, previous.as_ref(), elapsed.as_secs_f64())
                );
                previous = Some(report);
            }
        }
        if let (Some(writer), Some(path)) = (&mut flow_log, &args.flow_log) {
            writer.add(bridge.take_flow_events());
            // Workers hand events over every 100 ms: a minute is complete
            // a second after it ends.
            let settled = std::time::SystemTime::now() - Duration::from_secs(1);
            let now_ns = settled
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            writer
                .write_completed(now_ns)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
    }

    // The metrics endpoint holds the other reference to the bridge.
    drop(metrics);
    let bridge = Arc::try_unwrap(bridge)
        .map_err(|_| anyhow::anyhow!("the bridge is still shared at shutdown"))?;
    let (report, events) = bridge.stop();
    if let (Some(mut writer), Some(path)) = (flow_log, &args.flow_log) {
        writer.add(events);
        writer
            .finish()
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_summary(&report);
    }
    Ok(ExitCode::SUCCESS)
}

/// What identifies a version of the policy file (missing file: `None`).
fn file_stamp(path: &Path) -> Option<(std::time::SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

fn print_summary(report: &LiveReport) {
    let traffic = &report.traffic;
    println!(
        "nsgd run: stopped after {:.1} s: {} packets, {} bytes ({} reload{} applied, {} rejected)",
        traffic.elapsed_seconds,
        traffic.packets_in,
        traffic.bytes_in,
        report.reloads,
        if report.reloads == 1 { "" } else { "s" },
        report.reloads_rejected
    );
    super::replay::print_traffic(traffic);
    for port in &report.ports {
        let c = &port.counters;
        println!(
            "  port {:<10} rx {} (merged aggregates {}) tx {} (coalesced {}) kernel-drops {} tx-busy {} oversize {} checksums completed {} unfinished {}",
            port.interface,
            c.received,
            c.merged,
            c.sent,
            c.coalesced,
            c.kernel_drops,
            c.transmit_busy,
            c.oversize,
            c.checksum_completed,
            c.checksum_unfinished
        );
    }
}
