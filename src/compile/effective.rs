//! A NIC's effective security rules, in the shape of Azure's
//! `az network nic list-effective-nsg` (nsg-semantics.md §9.3): one entry per
//! NSG in evaluation order, each rule normalised (ports as ranges, `*` as
//! `0.0.0.0/0`, `Any` as `All`) with tags and ASGs expanded to prefixes.

use std::collections::BTreeMap;

use serde::Serialize;

use super::address_set::AddressSet;
use super::classifier::NO_PORT;
use super::program::{Level, Program};
use super::resolved::{PortSet, ResolvedRule};
use crate::policy::{AddressMatch, Direction, Protocol};

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
    pub direction: Direction,
    pub effective_security_rules: Vec<EffectiveRule>,
    /// Tag → the prefixes it stands for at this NIC.
    pub tag_map: BTreeMap<String, Vec<String>>,
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

fn port_strings(ports: &PortSet) -> Vec<String> {
    ports
        .iter()
        .map(|&(lo, hi)| format!("{}-{}", lo, hi.min(NO_PORT - 1)))
        .collect()
}

struct SideView {
    single: String,
    list: Vec<String>,
    asgs: Vec<String>,
    expanded: Option<Vec<String>>,
}

fn side_view(written: &AddressMatch, resolved: &AddressSet) -> SideView {
    let expanded = || {
        Some(
            resolved
                .to_prefixes()
                .iter()
                .map(|p| p.to_string())
                .collect(),
        )
    };
    match written {
        AddressMatch::Any => SideView {
            single: "0.0.0.0/0".to_string(),
            list: vec!["0.0.0.0/0".to_string()],
            asgs: Vec::new(),
            expanded: None,
        },
        AddressMatch::Tag(tag) => SideView {
            single: tag.clone(),
            list: vec![tag.clone()],
            asgs: Vec::new(),
            expanded: expanded(),
        },
        AddressMatch::Prefixes(prefixes) => {
            let list: Vec<String> = prefixes.iter().map(|p| p.to_string()).collect();
            SideView {
                single: list.first().cloned().unwrap_or_default(),
                list,
                asgs: Vec::new(),
                expanded: None,
            }
        }
        AddressMatch::ApplicationSecurityGroups(names) => SideView {
            single: String::new(),
            list: Vec::new(),
            asgs: names.clone(),
            expanded: expanded(),
        },
    }
}

fn effective_rule(rule: &ResolvedRule, applies_to_nic: bool) -> EffectiveRule {
    let source = side_view(&rule.written.source, &rule.source);
    let destination = side_view(&rule.written.destination, &rule.destination);
    let source_ports = port_strings(&rule.source_ports);
    let destination_ports = port_strings(&rule.destination_ports);
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

/// The effective rules of a NIC: inbound chain (subnet NSG, NIC NSG) then
/// outbound chain (NIC NSG, subnet NSG), or only the direction asked for.
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
    let directions: Vec<Direction> = match direction {
        Some(d) => vec![d],
        None => vec![Direction::Inbound, Direction::Outbound],
    };
    let mut groups = Vec::new();
    for direction in directions {
        for step in endpoint.chain(direction) {
            let table = &program.tables()[step.table as usize];
            let mut tag_map = BTreeMap::new();
            let rules = table
                .rules
                .iter()
                .map(|rule| {
                    for (written, resolved) in [
                        (&rule.written.source, &rule.source),
                        (&rule.written.destination, &rule.destination),
                    ] {
                        if let AddressMatch::Tag(tag) = written {
                            tag_map.entry(tag.clone()).or_insert_with(|| {
                                resolved
                                    .to_prefixes()
                                    .iter()
                                    .map(|p| p.to_string())
                                    .collect()
                            });
                        }
                    }
                    let applies = rule.local_asgs().is_none_or(|asgs| {
                        nic.application_security_groups
                            .iter()
                            .any(|a| asgs.contains(a))
                    });
                    effective_rule(rule, applies)
                })
                .collect();
            groups.push(EffectiveNsg {
                network_security_group: NsgReference {
                    id: program.nsg_name(step.nsg).to_string(),
                },
                association: match step.level {
                    Level::Subnet => "subnet",
                    Level::Nic => "networkInterface",
                },
                direction,
                effective_security_rules: rules,
                tag_map,
            });
        }
    }
    Ok(EffectiveView {
        nic: nic_name.to_string(),
        effective_network_security_groups: groups,
    })
}
