//! `nsgd classbench`: a ClassBench rule set and trace through the classifier.

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// ClassBench rule file (plain or gzip).
    #[arg(long)]
    rules: PathBuf,
    /// Header trace (plain or gzip).
    #[arg(long)]
    trace: PathBuf,
    /// Expected first-match rule ids, one per trace line (plain or gzip).
    #[arg(long)]
    expected: PathBuf,
    /// Print one JSON object instead of the report.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let report = crate::classbench::run(&args.rules, &args.trace, &args.expected)?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!("rules:           {}", report.rules);
        println!("lookups:         {}", report.lookups);
        println!("mismatches:      {}", report.mismatches);
        for m in &report.first_mismatches {
            let id = |v: Option<u32>| v.map_or("none".to_string(), |v| v.to_string());
            println!(
                "  trace line {}: expected rule {}, got {}",
                m.line,
                id(m.expected),
                id(m.got)
            );
        }
        println!("build:           {:.1} ms", report.build_ms);
        println!(
            "tables:          {:.2} MiB ({:.1} bytes/rule)",
            report.table_bytes as f64 / (1024.0 * 1024.0),
            report.bytes_per_rule
        );
        println!("lookups/s:       {:.2} M", report.lookups_per_sec / 1e6);
    }
    Ok(if report.mismatches == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
