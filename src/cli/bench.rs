//! `nsgd bench`: end-to-end replay throughput on generated captures.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::pipeline::bench::{run_bench, BenchOptions, RealCapture};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Estate whose traffic is generated and judged.
    #[arg(long, default_value = "configs/hub-spoke.yaml")]
    policy: PathBuf,
    /// Packets per generated capture.
    #[arg(long, default_value_t = 1_000_000)]
    packets: u64,
    /// Worker counts to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    workers: Vec<usize>,
    /// Runs per figure (the best is kept).
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Keep the generated captures in this folder.
    #[arg(long)]
    keep: Option<PathBuf>,
    /// Print the figures as JSON.
    #[arg(long)]
    json: bool,
    /// Also replay this real capture (repeated by --real-times) through --real-policy.
    #[arg(long, default_value = "../shared/pcaps/real-lan-1h.pcap")]
    real: PathBuf,
    #[arg(long = "real-policy", default_value = "configs/lan-lab.yaml")]
    real_policy: PathBuf,
    #[arg(long = "real-times", default_value_t = 16)]
    real_times: usize,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let policy = match crate::policy::load(&args.policy) {
        Ok(policy) => policy,
        Err(errors) => {
            for error in errors.iter() {
                eprintln!("{error}");
            }
            anyhow::bail!("{}: {} error(s)", args.policy.display(), errors.len());
        }
    };
    // The real capture is optional: skipped (with a note) when absent.
    let real_capture = match (args.real.exists(), crate::policy::load(&args.real_policy)) {
        (true, Ok(real_policy)) => Some(RealCapture {
            capture: args.real.clone(),
            policy: real_policy,
            times: args.real_times,
        }),
        _ => {
            eprintln!(
                "note: {} or {} not usable: no real-capture figure",
                args.real.display(),
                args.real_policy.display()
            );
            None
        }
    };
    let options = BenchOptions {
        packets: args.packets,
        worker_counts: args.workers.clone(),
        repeats: args.repeats,
        directory: args.keep.clone(),
        real_capture,
    };
    let json = args.json;
    let report = run_bench(&policy, &options, |line| {
        if !json {
            eprintln!("{line}");
        }
    })?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<12} {:>7} {:>10} {:>8} {:>12} {:>14}",
        "capture", "workers", "packets", "seconds", "M packets/s", "M new flows/s"
    );
    for f in &report.figures {
        println!(
            "{:<20} {:>7} {:>10} {:>8.3} {:>12.2} {:>14.3}",
            f.capture,
            f.workers,
            f.packets,
            f.seconds,
            f.packets_per_second / 1e6,
            f.new_flows_per_second / 1e6
        );
    }
    // How much more the most workers do than one, per capture.
    for one in report.figures.iter().filter(|f| f.workers == 1) {
        let most = report
            .figures
            .iter()
            .filter(|f| f.capture == one.capture)
            .max_by_key(|f| f.workers);
        if let Some(most) = most.filter(|most| most.workers > 1) {
            println!(
                "{}: {} workers replay {:.2}x as fast as 1",
                one.capture,
                most.workers,
                most.packets_per_second / one.packets_per_second.max(1e-9)
            );
        }
    }
    match report.tcpdump_seconds {
        Some(seconds) => {
            let nsgd_best = report
                .figures
                .iter()
                .filter(|f| f.capture == "established")
                .map(|f| f.seconds)
                .fold(f64::MAX, f64::min);
            println!(
                "tcpdump (BPF '{}', no state, no rules): {:.3} s on the established capture; nsgd is {:.2}x its speed",
                report.tcpdump_filter,
                seconds,
                seconds / nsgd_best
            );
        }
        None => println!("tcpdump is not installed: no comparison (apt-get install tcpdump)"),
    }
    Ok(ExitCode::SUCCESS)
}
