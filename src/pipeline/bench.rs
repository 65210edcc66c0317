//! `nsgd bench`: end-to-end replay throughput on generated captures — packets
//! per second on mostly established traffic for several worker counts, new
//! flows per second under a SYN flood — and, where tcpdump is installed, the
//! time tcpdump takes to filter the same capture with a BPF expression. The
//! replays write no outputs, so they take the parallel scan (see
//! `pipeline::scan`), as `nsgd replay` does without `--allowed`, `--denied`
//! or `--verdicts`.

use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use super::{replay, ReplayOptions};
use crate::compile::Program;
use crate::io::{generate, GenerateOptions, PcapWriter, TimestampPrecision, LINKTYPE_ETHERNET};
use crate::policy::Policy;

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub packets: u64,
    pub worker_counts: Vec<usize>,
    /// Runs per measurement; the best is reported (the machine is shared).
    pub repeats: usize,
    /// Where the generated captures go (kept); a temporary folder if `None`.
    pub directory: Option<PathBuf>,
    /// A real capture replayed `times` times in a row through its own
    /// policy (small real frames, mostly established flows).
    pub real_capture: Option<RealCapture>,
}

/// A real capture for `nsgd bench` (e.g. ../shared/pcaps/real-lan-1h.pcap
/// through configs/lan-lab.yaml, repeated to a million packets).
#[derive(Debug, Clone)]
pub struct RealCapture {
    pub capture: PathBuf,
    pub policy: Policy,
    pub times: usize,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            packets: 1_000_000,
            worker_counts: vec![1, 2],
            repeats: 3,
            directory: None,
            real_capture: None,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ReplayFigure {
    pub capture: String,
    pub workers: usize,
    pub packets: u64,
    pub seconds: f64,
    pub packets_per_second: f64,
    pub new_flows_per_second: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub figures: Vec<ReplayFigure>,
    /// Seconds tcpdump took to filter the established capture, if installed.
    pub tcpdump_seconds: Option<f64>,
    pub tcpdump_filter: &'static str,
    pub tcpdump_command: String,
}

/// The BPF filter tcpdump runs for comparison (stateless, no rules).
pub const TCPDUMP_FILTER: &str = "tcp port 80 or tcp port 443 or udp port 53 or icmp";

fn write_capture(policy: &Policy, path: &Path, options: &GenerateOptions) -> anyhow::Result<()> {
    let file = std::fs::File::create(path)?;
    let mut writer = PcapWriter::new(
        BufWriter::with_capacity(1 << 20, file),
        LINKTYPE_ETHERNET,
        TimestampPrecision::Nanoseconds,
    )?;
    generate(policy, options, &mut writer)?;
    let file = writer
        .finish()?
        .into_inner()
        .map_err(|error| error.into_error())?;
    // Written back before any replay, which otherwise shares the machine
    // with the kernel writing hundreds of megabytes of dirty pages.
    file.sync_all()?;
    Ok(())
}

/// Generates the captures and measures; `progress` hears what is going on.
pub fn run_bench(
    policy: &Policy,
    options: &BenchOptions,
    mut progress: impl FnMut(&str),
) -> anyhow::Result<BenchReport> {
    let program = Arc::new(Program::compile(policy)?);
    let temporary = options.directory.is_none();
    let directory = options
        .directory
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("nsgd-bench-{}", std::process::id())));
    std::fs::create_dir_all(&directory)?;
    let established = directory.join("established.pcap");
    let flood = directory.join("syn-flood.pcap");
    progress(&format!(
        "generating {} packets of mostly established traffic",
        options.packets
    ));
    write_capture(
        policy,
        &established,
        &GenerateOptions {
            flows: options.packets / 20 + 1,
            packets: Some(options.packets),
            random_fraction: 0.1,
            flows_per_second: 2_000,
            ..GenerateOptions::default()
        },
    )?;
    progress(&format!(
        "generating {} packets of SYN flood",
        options.packets
    ));
    write_capture(
        policy,
        &flood,
        &GenerateOptions {
            flows: 1_000,
            packets: Some(options.packets),
            syn_flood_rate: 0.99,
            flows_per_second: 2_000,
            ..GenerateOptions::default()
        },
    )?;

    let mut runs: Vec<(String, Arc<Program>, Vec<PathBuf>)> = vec![
        (
            "established".to_string(),
            Arc::clone(&program),
            vec![established.clone()],
        ),
        (
            "syn-flood".to_string(),
            Arc::clone(&program),
            vec![flood.clone()],
        ),
    ];
    if let Some(real) = &options.real_capture {
        let name = real
            .capture
            .file_stem()
            .map_or("real".to_string(), |s| s.to_string_lossy().to_string());
        runs.push((
            format!("{name} x{}", real.times),
            Arc::new(Program::compile(&real.policy)?),
            vec![real.capture.clone(); real.times.max(1)],
        ));
    }
    let mut figures = Vec::new();
    for (name, program, captures) in &runs {
        for &workers in &options.worker_counts {
            let mut best: Option<ReplayFigure> = None;
            for _ in 0..options.repeats.max(1) {
                let replay_options = ReplayOptions {
                    workers,
                    ..ReplayOptions::default()
                };
                let report = replay(Arc::clone(program), captures, &replay_options)?;
                let figure = ReplayFigure {
                    capture: name.to_string(),
                    workers,
                    packets: report.packets_in,
                    seconds: report.elapsed_seconds,
                    packets_per_second: report.packets_per_second,
                    new_flows_per_second: report.flows.created as f64
                        / report.elapsed_seconds.max(1e-9),
                };
                if best.as_ref().is_none_or(|b| figure.seconds < b.seconds) {
                    best = Some(figure);
                }
            }
            if let Some(best) = best {
                progress(&format!(
                    "{name}, {workers} worker(s): {:.2} M packets/s, {:.2} M new flows/s",
                    best.packets_per_second / 1e6,
                    best.new_flows_per_second / 1e6
                ));
                figures.push(best);
            }
        }
    }

    let tcpdump_command = format!(
        "tcpdump -r {} -w /dev/null '{TCPDUMP_FILTER}'",
        established.display()
    );
    let mut tcpdump_seconds = None;
    if Command::new("tcpdump").arg("--version").output().is_ok() {
        let mut best = f64::MAX;
        for _ in 0..options.repeats.max(1) {
            let started = Instant::now();
            let status = Command::new("tcpdump")
                .args(["-q", "-r"])
                .arg(&established)
                .args(["-w", "/dev/null", TCPDUMP_FILTER])
                .stderr(std::process::Stdio::null())
                .status()?;
            if status.success() {
                best = best.min(started.elapsed().as_secs_f64());
            }
        }
        if best < f64::MAX {
            tcpdump_seconds = Some(best);
        }
    }
    if temporary {
        let _ = std::fs::remove_dir_all(&directory);
    }
    Ok(BenchReport {
        figures,
        tcpdump_seconds,
        tcpdump_filter: TCPDUMP_FILTER,
        tcpdump_command,
    })
}
