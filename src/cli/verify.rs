//! `nsgd verify`: decide single flows or a CSV flow list.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use serde::Serialize;

use crate::compile::{Flow, Program, Verdict};
use crate::policy::Access;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Policy file (YAML or JSON).
    policy: PathBuf,
    /// A flow, e.g. 'tcp 10.0.1.4:5000 -> 10.1.2.4:1433' (repeatable).
    #[arg(long = "flow", value_name = "FLOW")]
    flows: Vec<String>,
    /// CSV flow list (header protocol,src_ip,src_port,dst_ip,dst_port[,expected]); `-` reads stdin.
    #[arg(long = "flows", value_name = "FILE", conflicts_with = "flows")]
    flow_file: Option<PathBuf>,
    /// One JSON object per flow, one per line.
    #[arg(long)]
    json: bool,
    /// Add, per NSG, why each higher-priority rule did not match.
    #[arg(long)]
    explain: bool,
}

#[derive(Serialize)]
struct JsonVerdict<'a> {
    decision: Access,
    evaluations: Vec<JsonEvaluation<'a>>,
}

#[derive(Serialize)]
struct JsonEvaluation<'a> {
    direction: crate::policy::Direction,
    nic: String,
    level: &'static str,
    nsg: &'a str,
    rule: &'a str,
    access: Access,
    #[serde(rename = "notMatched", skip_serializing_if = "Option::is_none")]
    not_matched: Option<Vec<NotMatched<'a>>>,
}

/// A higher-priority rule that did not match, and which fields failed.
#[derive(Serialize)]
struct NotMatched<'a> {
    rule: &'a str,
    priority: u32,
    failed: Vec<&'static str>,
}

fn explanation<'a>(
    program: &'a Program,
    flow: &Flow,
    table: u32,
    rule: u32,
) -> Vec<NotMatched<'a>> {
    let table = &program.tables()[table as usize];
    table.rules[..rule as usize]
        .iter()
        .map(|r| NotMatched {
            rule: &r.name,
            priority: r.priority,
            failed: r.field_match(flow).failed_fields(),
        })
        .collect()
}

fn json_verdict<'a>(
    program: &'a Program,
    flow: &Flow,
    verdict: &Verdict,
    explain: bool,
) -> JsonVerdict<'a> {
    let evaluations = verdict
        .evaluations
        .iter()
        .map(|e| {
            let address = match e.direction {
                crate::policy::Direction::Outbound => flow.source(),
                crate::policy::Direction::Inbound => flow.destination(),
            };
            JsonEvaluation {
                direction: e.direction,
                nic: program.endpoint_name(e.endpoint, address),
                level: e.level.as_str(),
                nsg: program.nsg_name(e.nsg),
                rule: &program.rule(e).name,
                access: e.access,
                not_matched: explain.then(|| explanation(program, flow, e.table, e.rule)),
            }
        })
        .collect();
    JsonVerdict {
        decision: verdict.decision,
        evaluations,
    }
}

fn write_human(
    out: &mut impl Write,
    program: &Program,
    flow: &Flow,
    verdict: &Verdict,
    explain: bool,
) -> std::io::Result<()> {
    writeln!(out, "{flow}: {}", verdict.decision)?;
    if verdict.evaluations.is_empty() {
        let in_estate = [flow.source(), flow.destination()]
            .into_iter()
            .any(|address| program.endpoint_of(address).is_some());
        let why = if in_estate {
            "no NSG on either end's NIC or subnet (a level without an NSG allows)"
        } else {
            "neither end is in a subnet of the estate"
        };
        writeln!(out, "  no NSG applies: {why}")?;
    }
    let view = json_verdict(program, flow, verdict, explain);
    for e in &view.evaluations {
        writeln!(
            out,
            "  {:<8}  {:<24}  {:<6}  {:<20}  {:<32}  {}",
            e.direction.as_str(),
            e.nic,
            e.level,
            e.nsg,
            e.rule,
            e.access
        )?;
        if let Some(not_matched) = &e.not_matched {
            for n in not_matched {
                writeln!(
                    out,
                    "      skipped {:>5} {:<32} {} did not match",
                    n.priority,
                    n.rule,
                    n.failed.join(", ")
                )?;
            }
        }
    }
    Ok(())
}

/// Parses the CSV header; returns whether an `expected` column follows.
fn parse_header(line: &str) -> Option<bool> {
    let columns: Vec<String> = line
        .split(',')
        .map(|c| c.trim().to_ascii_lowercase())
        .collect();
    let base = ["protocol", "src_ip", "src_port", "dst_ip", "dst_port"];
    if columns.len() >= 5 && columns[..5].iter().zip(base).all(|(c, b)| c == b) {
        match columns.get(5).map(String::as_str) {
            None => Some(false),
            Some("expected") if columns.len() == 6 => Some(true),
            _ => None,
        }
    } else {
        None
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.flows.is_empty() && args.flow_file.is_none() {
        bail!("give a flow with --flow 'tcp 10.0.1.4:5000 -> 10.1.2.4:1433' or a CSV list with --flows FILE");
    }
    let program = super::load_program(&args.policy)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let emit = |out: &mut std::io::BufWriter<_>, flow: &Flow| -> anyhow::Result<Access> {
        let verdict = program.evaluate(flow);
        if args.json {
            serde_json::to_writer(
                &mut *out,
                &json_verdict(&program, flow, &verdict, args.explain),
            )?;
            out.write_all(b"\n")?;
        } else {
            write_human(out, &program, flow, &verdict, args.explain)?;
        }
        Ok(verdict.decision)
    };

    for text in &args.flows {
        let flow: Flow = text
            .parse()
            .with_context(|| format!("bad --flow `{text}`"))?;
        emit(&mut out, &flow)?;
    }

    let mut bad_lines = 0usize;
    let mut mismatches = 0usize;
    if let Some(path) = &args.flow_file {
        let reader = super::open_input(path)?;
        let mut expect_column: Option<bool> = None;
        for (number, line) in reader.lines().enumerate() {
            let line = line
                .with_context(|| format!("{}: cannot read line {}", path.display(), number + 1))?;
            let trimmed = line.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            if expect_column.is_none() {
                if let Some(has_expected) = parse_header(trimmed) {
                    expect_column = Some(has_expected);
                    continue;
                }
                expect_column = Some(false);
            }
            let (flow_text, expected) = if expect_column == Some(true) {
                match trimmed.rsplit_once(',') {
                    Some((flow, expected)) => (flow, Some(expected.trim())),
                    None => (trimmed, None),
                }
            } else {
                (trimmed, None)
            };
            let flow = match Flow::from_csv_line(flow_text) {
                Ok(flow) => flow,
                Err(error) => {
                    eprintln!("{}:{}: {error}", path.display(), number + 1);
                    bad_lines += 1;
                    continue;
                }
            };
            let decision = emit(&mut out, &flow)?;
            if let Some(expected) = expected {
                if !expected.eq_ignore_ascii_case(decision.as_str()) {
                    eprintln!(
                        "{}:{}: {flow}: expected {expected}, got {decision}",
                        path.display(),
                        number + 1
                    );
                    mismatches += 1;
                }
            }
        }
    }
    out.flush()?;
    if bad_lines > 0 || mismatches > 0 {
        eprintln!(
            "nsgd: {bad_lines} unreadable flow line(s), {mismatches} flow(s) not as expected"
        );
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}
