//! `nsgd check`: validate, summarise, lint.

use std::path::PathBuf;
use std::process::ExitCode;

use serde::Serialize;

use crate::compile::lint::{lint, Finding, Severity};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Policy file (YAML or JSON).
    policy: PathBuf,
    /// Print the summary and findings as one JSON object.
    #[arg(long)]
    json: bool,
    /// Exit non-zero on warnings too, not only on errors.
    #[arg(long)]
    deny_warnings: bool,
}

#[derive(Serialize)]
struct Summary {
    vnets: usize,
    subnets: usize,
    nics: usize,
    application_security_groups: usize,
    network_security_groups: usize,
    security_rules: usize,
    compiled_tables: usize,
    classifier_entries: usize,
    table_bytes: usize,
    compile_ms: f64,
}

#[derive(Serialize)]
struct Report<'a> {
    policy: String,
    valid: bool,
    summary: Summary,
    findings: &'a [Finding],
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let program = super::load_program(&args.policy)?;
    let policy = program.policy();
    let stats = program.stats();
    let mut asgs: std::collections::BTreeSet<&String> =
        policy.application_security_groups.iter().collect();
    asgs.extend(
        policy
            .nics
            .iter()
            .flat_map(|n| n.application_security_groups.iter()),
    );
    let summary = Summary {
        vnets: policy.vnets.len(),
        subnets: program.subnets().len(),
        nics: policy.nics.len(),
        application_security_groups: asgs.len(),
        network_security_groups: policy.network_security_groups.len(),
        security_rules: policy
            .network_security_groups
            .iter()
            .map(|n| n.security_rules.len())
            .sum(),
        compiled_tables: stats.tables,
        classifier_entries: stats.classifier_rules,
        table_bytes: stats.table_bytes,
        compile_ms: stats.compile_time.as_secs_f64() * 1e3,
    };
    let findings = lint(&program);
    let warnings = findings
        .iter()
        .filter(|f| f.severity == Severity::Warning)
        .count();
    if args.json {
        let report = Report {
            policy: args.policy.display().to_string(),
            valid: true,
            summary,
            findings: &findings,
        };
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{}: valid", args.policy.display());
        println!(
            "  {} VNets, {} subnets, {} NICs, {} ASGs, {} NSGs, {} rules (+{} default)",
            summary.vnets,
            summary.subnets,
            summary.nics,
            summary.application_security_groups,
            summary.network_security_groups,
            summary.security_rules,
            summary.network_security_groups * 6
        );
        println!(
            "  compiled: {} chain tables, {} rule entries, {:.1} KiB, {:.2} ms",
            summary.compiled_tables,
            summary.classifier_entries,
            summary.table_bytes as f64 / 1024.0,
            summary.compile_ms
        );
        if findings.is_empty() {
            println!("  no findings");
        }
        for finding in &findings {
            println!("{finding}");
        }
    }
    Ok(if args.deny_warnings && warnings > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
