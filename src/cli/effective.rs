//! `nsgd effective`: a NIC's effective security rules.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::compile::effective::{effective_rules, EffectiveRule};
use crate::policy::Direction;

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum DirectionArg {
    Inbound,
    Outbound,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Policy file (YAML or JSON).
    policy: PathBuf,
    /// NIC name.
    #[arg(long)]
    nic: String,
    /// Only this direction (default: inbound then outbound).
    #[arg(long, value_enum, ignore_case = true)]
    direction: Option<DirectionArg>,
    /// Print the view as JSON (Azure's effective-security-rules shape, every
    /// prefix listed).
    #[arg(long)]
    json: bool,
}

/// Expanded prefixes shown per table cell; `--json` lists them all.
const SHOWN_PREFIXES: usize = 3;

fn address_cell(single: &str, asgs: &[String], expanded: &Option<Vec<String>>) -> String {
    let label = if !asgs.is_empty() {
        asgs.join(",")
    } else if single == "0.0.0.0/0" && expanded.is_none() {
        "*".to_string()
    } else {
        single.to_string()
    };
    let Some(prefixes) = expanded else {
        return label;
    };
    if prefixes.is_empty() {
        return format!("{label} = (nothing)");
    }
    let shown: Vec<&str> = prefixes
        .iter()
        .take(SHOWN_PREFIXES)
        .map(String::as_str)
        .collect();
    let more = if prefixes.len() > SHOWN_PREFIXES {
        format!(", … ({} prefixes)", prefixes.len())
    } else {
        String::new()
    };
    format!("{label} = {}{more}", shown.join(", "))
}

fn ports_cell(ranges: &[String]) -> String {
    let shown: Vec<String> = ranges
        .iter()
        .map(|range| match range.split_once('-') {
            Some(("0", "65535")) => "*".to_string(),
            Some((lo, hi)) if lo == hi => lo.to_string(),
            _ => range.clone(),
        })
        .collect();
    shown.join(",")
}

fn row(rule: &EffectiveRule) -> [String; 9] {
    let name = rule
        .name
        .rsplit_once('/')
        .map_or(rule.name.as_str(), |(_, n)| n)
        .to_string();
    let note = if rule.applies_to_nic {
        String::new()
    } else {
        "never applies here: NIC not in the ASG".to_string()
    };
    [
        rule.priority.to_string(),
        name,
        rule.access.as_str().to_string(),
        rule.protocol.to_string(),
        address_cell(
            &rule.source_address_prefix,
            &rule.source_application_security_groups,
            &rule.expanded_source_address_prefix,
        ),
        ports_cell(&rule.source_port_ranges),
        address_cell(
            &rule.destination_address_prefix,
            &rule.destination_application_security_groups,
            &rule.expanded_destination_address_prefix,
        ),
        ports_cell(&rule.destination_port_ranges),
        note,
    ]
}

fn print_table(rows: &[[String; 9]]) {
    let header = [
        "PRIO",
        "NAME",
        "ACCESS",
        "PROTO",
        "SOURCE",
        "SPORT",
        "DESTINATION",
        "DPORT",
        "",
    ];
    let mut widths = header.map(str::len);
    for cells in rows {
        for (width, cell) in widths.iter_mut().zip(cells) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: &[&str]| {
        let mut out = String::from(" ");
        for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
            let pad = width.saturating_sub(cell.chars().count());
            if i == 0 {
                out.push_str(&" ".repeat(pad));
                out.push_str(cell);
            } else {
                out.push_str("  ");
                out.push_str(cell);
                out.push_str(&" ".repeat(pad));
            }
        }
        println!("{}", out.trim_end());
    };
    line(&header);
    for cells in rows {
        let refs: Vec<&str> = cells.iter().map(String::as_str).collect();
        line(&refs);
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let program = super::load_program(&args.policy)?;
    let direction = args.direction.map(|d| match d {
        DirectionArg::Inbound => Direction::Inbound,
        DirectionArg::Outbound => Direction::Outbound,
    });
    let view = effective_rules(&program, &args.nic, direction)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&view)?);
        return Ok(ExitCode::SUCCESS);
    }
    if view.effective_network_security_groups.is_empty() {
        println!(
            "{}: no NSG on the NIC or its subnet: all traffic is allowed",
            view.nic
        );
    }
    let directions = match direction {
        Some(direction) => vec![direction],
        None => vec![Direction::Inbound, Direction::Outbound],
    };
    for direction in directions {
        for group in view.in_evaluation_order(direction) {
            println!(
                "{} {direction}: NSG {} ({}), evaluated in this order",
                view.nic, group.network_security_group.id, group.association
            );
            let rows: Vec<[String; 9]> = group.rules(direction).map(row).collect();
            print_table(&rows);
            println!();
        }
    }
    Ok(ExitCode::SUCCESS)
}
