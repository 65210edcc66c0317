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

/// One problem that makes a policy invalid, for `--json`.
#[derive(Serialize)]
struct Problem {
    file: String,
    /// Where in the document (`networkSecurityGroups[1].securityRules[3].priority`);
    /// empty for the document as a whole or a compile error.
    path: String,
    line: Option<usize>,
    column: Option<usize>,
    message: String,
}

#[derive(Serialize)]
struct InvalidReport {
    policy: String,
    valid: bool,
    errors: Vec<Problem>,
}

/// `--json` on an invalid policy: the errors as one JSON object, exit 1.
fn print_invalid(
    policy: &std::path::Path,
    failure: super::LoadFailure,
) -> anyhow::Result<ExitCode> {
    let file = policy.display().to_string();
    let errors = match failure {
        super::LoadFailure::Policy(errors) => errors
            .into_vec()
            .into_iter()
            .map(|e| Problem {
                file: e.file,
                path: e.path,
                line: e.line,
                column: e.column,
                message: e.message,
            })
            .collect(),
        super::LoadFailure::Compile(errors) => errors
            .0
            .iter()
            .map(|e| Problem {
                file: file.clone(),
                path: String::new(),
                line: None,
                column: None,
                message: e.to_string(),
            })
            .collect(),
    };
    let report = InvalidReport {
        policy: file,
        valid: false,
        errors,
    };
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(ExitCode::from(1))
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let program = if args.json {
        match super::try_load_program(&args.policy) {
            Ok(program) => program,
            Err(failure) => return print_invalid(&args.policy, failure),
        }
    } else {
        super::load_program(&args.policy)?
    };
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
