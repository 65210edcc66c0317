//! `nsgd replay`: decide every packet of captures through the stateful pipeline.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use crate::pipeline::{replay, ReplayOptions, ReplayReport};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Policy file (YAML or JSON).
    policy: PathBuf,
    /// pcap or pcapng captures (gzip-compressed too), replayed in order as one stream.
    #[arg(required = true)]
    captures: Vec<PathBuf>,
    /// Write the packets that passed to this pcap.
    #[arg(long)]
    allowed: Option<PathBuf>,
    /// Write the packets that were dropped to this pcap.
    #[arg(long)]
    denied: Option<PathBuf>,
    /// One JSON object per input packet, in capture order.
    #[arg(long)]
    verdicts: Option<PathBuf>,
    /// NSG flow log (version 2) records.
    #[arg(long = "flow-log")]
    flow_log: Option<PathBuf>,
    /// Print the summary as one JSON document.
    #[arg(long)]
    json: bool,
    /// Worker threads (default: available cores).
    #[arg(long)]
    workers: Option<usize>,
    #[command(flatten)]
    dataplane: super::DataplaneArgs,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let program = Arc::new(super::load_program(&args.policy)?);
    let mut options = ReplayOptions {
        allowed_output: args.allowed.clone(),
        denied_output: args.denied.clone(),
        verdicts_output: args.verdicts.clone(),
        flow_log_output: args.flow_log.clone(),
        progress: !args.json,
        ..ReplayOptions::default()
    };
    if let Some(workers) = args.workers {
        options.workers = workers.max(1);
    }
    args.dataplane.apply(&mut options.dataplane);
    options.dataplane.flow_log = args.flow_log.is_some();
    let report = replay(program, &args.captures, &options)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    Ok(ExitCode::SUCCESS)
}

fn list(counts: &std::collections::BTreeMap<String, u64>) -> String {
    let parts: Vec<String> = counts
        .iter()
        .map(|(reason, n)| format!("{reason} {n}"))
        .collect();
    if parts.is_empty() {
        "none".to_string()
    } else {
        parts.join(", ")
    }
}

pub fn print_report(report: &ReplayReport) {
    println!(
        "replayed {} capture(s): {} packets, {} bytes in {:.3} s ({:.2} M packets/s, {} worker{})",
        report.captures.len(),
        report.packets_in,
        report.bytes_in,
        report.elapsed_seconds,
        report.packets_per_second / 1e6,
        report.workers,
        if report.workers == 1 { "" } else { "s" }
    );
    print_traffic(report);
    if report.packets_not_written > 0 {
        println!(
            "  {} packets not written to the output pcaps: their link type differs from the file's (a pcap holds one)",
            report.packets_not_written
        );
    }
    for problem in &report.capture_problems {
        println!(
            "  capture {} ended early after {} packets: {}",
            problem.capture, problem.packets_read, problem.error
        );
    }
}

/// The verdict, flow and rule lines shared with `run`'s final summary.
pub fn print_traffic(report: &ReplayReport) {
    println!(
        "  allowed  {} packets ({})",
        report.packets_allowed,
        list(&report.allowed_by_reason)
    );
    println!(
        "  denied   {} packets ({})",
        report.packets_denied,
        list(&report.denied_by_reason)
    );
    if !report.invalid_by_reason.is_empty() {
        println!("  invalid  {}", list(&report.invalid_by_reason));
    }
    let flows = &report.flows;
    println!(
        "  flows    {} created, {} evicted ({} established), {} expired, {} live at the end",
        flows.created, flows.evicted, flows.evicted_established, flows.expired, flows.live_at_end
    );
    if !report.rule_hits.is_empty() {
        println!("  flows decided per rule:");
        for (nsg, rules) in &report.rule_hits {
            for (rule, hits) in rules {
                println!("    {nsg:<24} {rule:<40} {hits}");
            }
        }
    }
}
