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
    #[arg(long, value_enum)]
    direction: Option<DirectionArg>,
    /// Print the view as JSON (Azure's effective-security-rules shape).
    #[arg(long)]
    json: bool,
}

/// At most this many expanded prefixes per cell in the table view.
const SHOWN_PREFIXES: usize = 4;

fn address_cell(single: &str, asgs: &[String], expanded: &Option<Vec<String>>) -> String {
    let label = if asgs.is_empty() {
        single.to_string()
    } else {
        asgs.join(",")
    };
    match expanded {
        None => label,
        Some(prefixes) => {
            let mut shown: Vec<&str> = prefixes
                .iter()
                .take(SHOWN_PREFIXES)
                .map(String::as_str)
                .collect();
            if prefixes.is_empty() {
                shown.push("(none)");
            }
            let more = prefixes.len().saturating_sub(SHOWN_PREFIXES);
            let tail = if more > 0 {
                format!(" +{more} more")
            } else {
                String::new()
            };
            format!("{label}: {}{tail}", shown.join(" "))
        }
    }
}

fn ports_cell(ranges: &[String]) -> String {
    if ranges.len() == 1 && ranges[0] == "0-65535" {
        "*".to_string()
    } else {
        ranges.join(",")
    }
}

fn print_rule(rule: &EffectiveRule) {
    let note = if rule.applies_to_nic {
        ""
    } else {
        "  (never applies: NIC not in the ASG)"
    };
    println!(
        "  {:>5}  {:<40}  {:<5}  {:<4}  {:<30}  {:<11}  {:<30}  {:<11}{note}",
        rule.priority,
        rule.name,
        rule.access.as_str(),
        rule.protocol,
        address_cell(
            &rule.source_address_prefix,
            &rule.source_application_security_groups,
            &rule.expanded_source_address_prefix
        ),
        ports_cell(&rule.source_port_ranges),
        address_cell(
            &rule.destination_address_prefix,
            &rule.destination_application_security_groups,
            &rule.expanded_destination_address_prefix
        ),
        ports_cell(&rule.destination_port_ranges),
    );
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
    for group in &view.effective_network_security_groups {
        println!(
            "{} {} — NSG {} ({})",
            view.nic, group.direction, group.network_security_group.id, group.association
        );
        println!(
            "  {:>5}  {:<40}  {:<5}  {:<4}  {:<30}  {:<11}  {:<30}  {:<11}",
            "PRIO", "NAME", "ACCESS", "PROTO", "SOURCE", "SPORTS", "DESTINATION", "DPORTS"
        );
        for rule in &group.effective_security_rules {
            print_rule(rule);
        }
        println!();
    }
    Ok(ExitCode::SUCCESS)
}
