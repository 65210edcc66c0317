//! A NIC's effective security rules, in the shape of Azure's
//! `az network nic list-effective-nsg` (nsg-semantics.md §9.3): one entry per
//! associated NSG (subnet first, as inbound evaluates), its rules normalised
//! (each port item as a range, `*` as `0.0.0.0/0`, `Any` as `All`) with tags
//! and ASGs expanded to the prefixes they list, and `tagMap` a string
//! holding the JSON map of tag to prefixes, as Azure returns it.

use std::collections::BTreeMap;

use ipnet::IpNet;
use serde::Serialize;

use super::program::{Level, Program};
use super::resolved::ResolvedRule;
use super::tags::TagResolver;
use crate::policy::{AddressMatch, Direction, PortMatch, Protocol};

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EffectiveView {
    pub nic: String,
    pub effective_network_security_groups: Vec<EffectiveNsg>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EffectiveNsg {
    pub network_security_group: NsgReference,
    /// `subnet` or `networkInterface`, as Azure names the association.
    pub association: &'static str,
    /// Inbound rules by priority, then outbound (each carries its direction).
    pub effective_security_rules: Vec<EffectiveRule>,
    /// A JSON object as a string, as Azure returns it: tag → the prefixes it
    /// stands for at this NIC, for every tag the rules name.
    pub tag_map: String,
}

impl EffectiveNsg {
    /// The entry's rules of one direction, by priority.
    pub fn rules(&self, direction: Direction) -> impl Iterator<Item = &EffectiveRule> {
        self.effective_security_rules
            .iter()
            .filter(move |rule| rule.direction == direction)
    }
}

impl EffectiveView {
    /// The entries in the order `direction` evaluates them (inbound: subnet
    /// then NIC; outbound: NIC then subnet).
    pub fn in_evaluation_order(&self, direction: Direction) -> Vec<&EffectiveNsg> {
        let mut entries: Vec<&EffectiveNsg> =
            self.effective_network_security_groups.iter().collect();
        if direction == Direction::Outbound {
            entries.reverse();
        }
        entries
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct NsgReference {
    pub id: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EffectiveRule {
    pub name: String,
    pub protocol: &'static str,
    pub source_port_range: String,
    pub destination_port_range: String,
    pub source_port_ranges: Vec<String>,
    pub destination_port_ranges: Vec<String>,
    pub source_address_prefix: String,
    pub source_address_prefixes: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub source_application_security_groups: Vec<String>,
    pub expanded_source_address_prefix: Option<Vec<String>>,
    pub destination_address_prefix: String,
    pub destination_address_prefixes: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub destination_application_security_groups: Vec<String>,
    pub expanded_destination_address_prefix: Option<Vec<String>>,
    pub access: crate::policy::Access,
    pub priority: u32,
    pub direction: Direction,
    /// False when the rule names, on this NIC's side, an ASG the NIC is not
    /// in: it can never match here (nsgd addition; Azure omits such rules).
    pub applies_to_nic: bool,
}

/// `Any` is shown as `All` in effective views.
fn protocol_name(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::Any => "All",
        other => other.as_str(),
    }
}

/// Each port item as written, as a range (`80` → `80-80`, `*` → `0-65535`).
fn port_strings(ports: &PortMatch) -> Vec<String> {
    match ports {
        PortMatch::Any => vec!["0-65535".to_string()],
        PortMatch::Ranges(ranges) => ranges.iter().map(|(lo, hi)| format!("{lo}-{hi}")).collect(),
    }
}

struct SideView {
    single: String,
    list: Vec<String>,
    asgs: Vec<String>,
    expanded: Option<Vec<String>>,
}

fn prefix_strings(prefixes: &[IpNet]) -> Vec<String> {
    prefixes.iter().map(IpNet::to_string).collect()
}

fn side_view(written: &AddressMatch, listing: Option<Vec<IpNet>>) -> SideView {
    let expanded = listing.as_deref().map(prefix_strings);
    match written {
        AddressMatch::Any => SideView {
            single: "0.0.0.0/0".to_string(),
            list: vec!["0.0.0.0/0".to_string()],
            asgs: Vec::new(),
            expanded,
        },
        AddressMatch::Tag(tag) => SideView {
            single: tag.clone(),
            list: vec![tag.clone()],
            asgs: Vec::new(),
            expanded,
        },
        AddressMatch::Prefixes(prefixes) => {
            let list = prefix_strings(prefixes);
            SideView {
                single: list.first().cloned().unwrap_or_default(),
                list,
                asgs: Vec::new(),
                expanded,
            }
        }
        AddressMatch::ApplicationSecurityGroups(names) => SideView {
            single: String::new(),
            list: Vec::new(),
            asgs: names.clone(),
            expanded,
        },
    }
}

fn effective_rule(
    rule: &ResolvedRule,
    tags: &TagResolver,
    vnet: usize,
    applies_to_nic: bool,
) -> EffectiveRule {
    let written = &rule.written;
    let source = side_view(&written.source, tags.listing(vnet, &written.source));
    let destination = side_view(
        &written.destination,
        tags.listing(vnet, &written.destination),
    );
    let source_ports = port_strings(&written.source_ports);
    let destination_ports = port_strings(&written.destination_ports);
    EffectiveRule {
        name: rule.arm_name(),
        protocol: protocol_name(rule.protocol),
        source_port_range: source_ports.first().cloned().unwrap_or_default(),
        destination_port_range: destination_ports.first().cloned().unwrap_or_default(),
        source_port_ranges: source_ports,
        destination_port_ranges: destination_ports,
        source_address_prefix: source.single,
        source_address_prefixes: source.list,
        source_application_security_groups: source.asgs,
        expanded_source_address_prefix: source.expanded,
        destination_address_prefix: destination.single,
        destination_address_prefixes: destination.list,
        destination_application_security_groups: destination.asgs,
        expanded_destination_address_prefix: destination.expanded,
        access: rule.access,
        priority: rule.priority,
        direction: rule.direction,
        applies_to_nic,
    }
}

/// Why `effective` could not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EffectiveError {
    #[error("no NIC named `{0}` in the policy (NICs: {1})")]
    UnknownNic(String, String),
}

/// The effective rules of a NIC: one entry per associated NSG (the subnet's,
/// then the NIC's), with the rules of both directions or only the one asked
/// for.
pub fn effective_rules(
    program: &Program,
    nic_name: &str,
    direction: Option<Direction>,
) -> Result<EffectiveView, EffectiveError> {
    let policy = program.policy();
    let Some(endpoint_index) = program.nic_endpoint(nic_name) else {
        let known: Vec<&str> = policy.nics.iter().map(|n| n.name.as_str()).collect();
        return Err(EffectiveError::UnknownNic(
            nic_name.to_string(),
            known.join(", "),
        ));
    };
    let endpoint = &program.endpoints()[endpoint_index as usize];
    let nic = policy
        .nic(nic_name)
        .expect("nic_endpoint found it, so the NIC exists");
    let tags = program.resolver();
    let directions: Vec<Direction> = match direction {
        Some(d) => vec![d],
        None => vec![Direction::Inbound, Direction::Outbound],
    };
    let mut groups = Vec::new();
    // Both chains hold the same associations; the inbound one is in
    // subnet-then-NIC order.
    for association in endpoint.chain(Direction::Inbound) {
        let mut tag_map = BTreeMap::new();
        let mut rules = Vec::new();
        for &direction in &directions {
            let Some(step) = endpoint
                .chain(direction)
                .iter()
                .find(|step| step.level == association.level)
            else {
                continue;
            };
            let table = &program.tables()[step.table as usize];
            for rule in &table.rules {
                for side in [&rule.written.source, &rule.written.destination] {
                    if let AddressMatch::Tag(tag) = side {
                        tag_map.entry(tag.clone()).or_insert_with(|| {
                            prefix_strings(&tags.listing(endpoint.vnet, side).unwrap_or_default())
                        });
                    }
                }
                let applies = rule.local_asgs().is_none_or(|asgs| {
                    nic.application_security_groups
                        .iter()
                        .any(|a| asgs.contains(a))
                });
                rules.push(effective_rule(rule, tags, endpoint.vnet, applies));
            }
        }
        groups.push(EffectiveNsg {
            network_security_group: NsgReference {
                id: program.nsg_name(association.nsg).to_string(),
            },
            association: match association.level {
                Level::Subnet => "subnet",
                Level::Nic => "networkInterface",
            },
            effective_security_rules: rules,
            tag_map: serde_json::to_string(&tag_map)
                .expect("a map of strings to string lists always serialises"),
        });
    }
    Ok(EffectiveView {
        nic: nic_name.to_string(),
        effective_network_security_groups: groups,
    })
}
