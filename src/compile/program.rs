//! The compiled estate: per (NSG, VNet, direction) a classifier over its rules,
//! per endpoint (declared NIC, or an undeclared address of a subnet) its
//! outbound and inbound chains, and the address → endpoint lookup. Immutable
//! once built; the dataplane shares it behind an `Arc` and swaps it on reload.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use ahash::AHashMap;
use smallvec::SmallVec;

use super::bitvector::{BitVectorClassifier, SetRule, TooManyClasses, NO_RULE};
use super::flow::Flow;
use super::resolved::ResolvedRule;
use super::tags::TagResolver;
use crate::policy::{default_security_rules, Access, Direction, Policy, Protocol};

/// Where in a chain an NSG sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Level {
    Nic,
    Subnet,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Nic => "nic",
            Level::Subnet => "subnet",
        }
    }
}

/// One NSG of a chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainStep {
    pub level: Level,
    /// Index into `Policy::network_security_groups`.
    pub nsg: u32,
    /// Index into [`Program::tables`].
    pub table: u32,
}

/// An NSG chain: at most two NSGs (NIC and subnet), in evaluation order.
pub type Chain = SmallVec<[ChainStep; 2]>;

/// Something traffic can be addressed to: a declared NIC, or the unnamed NIC
/// that stands for every undeclared address of a subnet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointKind {
    /// Index into `Policy::nics`.
    Nic(usize),
    /// Index into [`Program::subnets`].
    Unnamed(usize),
}

#[derive(Debug, Clone)]
pub struct Endpoint {
    pub kind: EndpointKind,
    /// Index into `Policy::vnets`: the context for tag resolution.
    pub vnet: usize,
    pub subnet: usize,
    pub outbound: Chain,
    pub inbound: Chain,
    /// Index into the program's chain classifiers; `None` for an empty chain.
    outbound_classifier: Option<u32>,
    inbound_classifier: Option<u32>,
}

impl Endpoint {
    pub fn chain(&self, direction: Direction) -> &Chain {
        match direction {
            Direction::Outbound => &self.outbound,
            Direction::Inbound => &self.inbound,
        }
    }

    fn classifier(&self, direction: Direction) -> Option<u32> {
        match direction {
            Direction::Outbound => self.outbound_classifier,
            Direction::Inbound => self.inbound_classifier,
        }
    }
}

/// A subnet of the estate, flattened.
#[derive(Debug, Clone)]
pub struct SubnetInfo {
    pub vnet: usize,
    /// `<vnet>/<subnet>`.
    pub path: String,
    pub nsg: Option<usize>,
    /// The endpoint standing for the subnet's undeclared addresses.
    pub unnamed_endpoint: usize,
}

/// The compiled rules of one NSG in one direction for NICs of one VNet.
#[derive(Debug, Clone)]
pub struct NsgTable {
    pub nsg: usize,
    pub vnet: usize,
    pub direction: Direction,
    /// User and default rules of the direction, by ascending priority. The
    /// classifier's rule ids are indices into this list.
    pub rules: Vec<ResolvedRule>,
}

impl NsgTable {
    fn set_rules_v4(&self) -> Vec<SetRule<'_, u32>> {
        self.rules
            .iter()
            .map(|rule| SetRule {
                protocol: rule.protocol.number(),
                source: &rule.source.v4,
                destination: &rule.destination.v4,
                source_port: &rule.source_ports,
                destination_port: &rule.destination_ports,
            })
            .collect()
    }

    /// `Icmp` is IPv4 ICMP only: such rules match no IPv6 packet.
    fn set_rules_v6(&self) -> Vec<SetRule<'_, u128>> {
        self.rules
            .iter()
            .map(|rule| SetRule {
                protocol: rule.protocol.number(),
                source: if rule.protocol == Protocol::Icmp {
                    &[]
                } else {
                    &rule.source.v6
                },
                destination: &rule.destination.v6,
                source_port: &rule.source_ports,
                destination_port: &rule.destination_ports,
            })
            .collect()
    }
}

/// The classifier of one chain: the rules of each of its NSG tables as one
/// segment, so one lookup answers every NSG of the chain.
#[derive(Debug, Clone)]
struct ChainClassifier {
    v4: BitVectorClassifier<u32>,
    v6: BitVectorClassifier<u128>,
}

impl ChainClassifier {
    fn build(tables: &[&NsgTable]) -> Result<ChainClassifier, TooManyClasses> {
        let v4_rules: Vec<Vec<SetRule<'_, u32>>> =
            tables.iter().map(|t| t.set_rules_v4()).collect();
        let v6_rules: Vec<Vec<SetRule<'_, u128>>> =
            tables.iter().map(|t| t.set_rules_v6()).collect();
        let v4_segments: Vec<&[SetRule<'_, u32>]> = v4_rules.iter().map(Vec::as_slice).collect();
        let v6_segments: Vec<&[SetRule<'_, u128>]> = v6_rules.iter().map(Vec::as_slice).collect();
        Ok(ChainClassifier {
            v4: BitVectorClassifier::build_segments(&v4_segments)?,
            v6: BitVectorClassifier::build_segments(&v6_segments)?,
        })
    }

    /// Per segment, the index of the first matching rule ([`NO_RULE`] if none).
    #[inline]
    fn first_matches(&self, flow: &Flow, out: &mut [u32]) {
        match (flow.source(), flow.destination()) {
            (IpAddr::V4(source), IpAddr::V4(destination)) => self.v4.first_matches(
                flow.protocol(),
                u32::from(source),
                u32::from(destination),
                flow.source_port_key(),
                flow.destination_port_key(),
                out,
            ),
            (IpAddr::V6(source), IpAddr::V6(destination)) => self.v6.first_matches(
                flow.protocol(),
                u128::from(source),
                u128::from(destination),
                flow.source_port_key(),
                flow.destination_port_key(),
                out,
            ),
            // `Flow::new` refuses mixed families.
            _ => out.fill(NO_RULE),
        }
    }

    fn rule_count(&self) -> usize {
        self.v4.rule_count() + self.v6.rule_count()
    }

    fn table_bytes(&self) -> usize {
        self.v4.table_bytes() + self.v6.table_bytes()
    }
}

/// One NSG's decision on a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Evaluation {
    pub direction: Direction,
    pub endpoint: u32,
    pub level: Level,
    pub nsg: u32,
    pub table: u32,
    /// Index into the table's `rules`.
    pub rule: u32,
    pub access: Access,
}

/// The decision on a flow and the evaluations that led to it, outbound side
/// first, stopping after the first deny. Fits inline: no allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub decision: Access,
    pub evaluations: SmallVec<[Evaluation; 4]>,
}

impl Verdict {
    /// The evaluation that decided: the deny, or the last allow (the NSG that
    /// NSG flow logs credit). `None` when no NSG applied.
    pub fn deciding(&self) -> Option<&Evaluation> {
        self.evaluations.last()
    }
}

/// A compile-time failure, naming what could not be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{location}: {message}")]
pub struct CompileError {
    pub location: String,
    pub message: String,
}

/// All compile errors of a policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct CompileErrors(pub Vec<CompileError>);

impl fmt::Display for CompileErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

/// Sizes and timing of a compilation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CompileStats {
    pub tables: usize,
    pub classifier_rules: usize,
    pub table_bytes: usize,
    pub endpoints: usize,
    pub compile_time: Duration,
}

#[derive(Debug, Clone)]
pub struct Program {
    policy: Policy,
    resolver: TagResolver,
    tables: Vec<NsgTable>,
    chain_classifiers: Vec<ChainClassifier>,
    /// First rule slot of each table (see [`Program::rule_slot`]).
    rule_slot_base: Vec<u32>,
    endpoints: Vec<Endpoint>,
    subnets: Vec<SubnetInfo>,
    nic_v4: AHashMap<u32, u32>,
    nic_v6: AHashMap<u128, u32>,
    /// Subnet ranges sorted by start (subnets never overlap): (lo, hi, endpoint).
    subnet_v4: Vec<(u32, u32, u32)>,
    subnet_v6: Vec<(u128, u128, u32)>,
    stats: CompileStats,
}

impl Program {
    /// Compiles a validated policy. An unvalidated one may yield errors for
    /// dangling names; nothing here panics on them.
    pub fn compile(policy: &Policy) -> Result<Program, CompileErrors> {
        let started = Instant::now();
        let mut errors = Vec::new();
        let resolver = TagResolver::new(policy);
        let nsg_index: HashMap<&str, usize> = policy
            .network_security_groups
            .iter()
            .enumerate()
            .map(|(i, nsg)| (nsg.name.as_str(), i))
            .collect();
        let lookup_nsg = |name: &Option<String>,
                          location: String,
                          errors: &mut Vec<CompileError>|
         -> Option<usize> {
            let name = name.as_ref()?;
            let found = nsg_index.get(name.as_str()).copied();
            if found.is_none() {
                errors.push(CompileError {
                    location,
                    message: format!("network security group `{name}` is not defined"),
                });
            }
            found
        };

        let mut subnets = Vec::new();
        for (vnet_index, vnet) in policy.vnets.iter().enumerate() {
            for (subnet_index, subnet) in vnet.subnets.iter().enumerate() {
                let nsg = lookup_nsg(
                    &subnet.network_security_group,
                    format!("vnets[{vnet_index}].subnets[{subnet_index}].networkSecurityGroup"),
                    &mut errors,
                );
                subnets.push(SubnetInfo {
                    vnet: vnet_index,
                    path: format!("{}/{}", vnet.name, subnet.name),
                    nsg,
                    unnamed_endpoint: 0,
                });
            }
        }
        let subnet_by_path: HashMap<String, usize> = subnets
            .iter()
            .enumerate()
            .map(|(i, s)| (s.path.clone(), i))
            .collect();

        let mut tables: Vec<NsgTable> = Vec::new();
        let mut table_index: HashMap<(usize, usize, Direction), u32> = HashMap::new();
        let mut table_for = |nsg: usize,
                             vnet: usize,
                             direction: Direction,
                             errors: &mut Vec<CompileError>|
         -> Option<u32> {
            if let Some(&index) = table_index.get(&(nsg, vnet, direction)) {
                return Some(index);
            }
            match build_table(policy, &resolver, nsg, vnet, direction) {
                Ok(table) => {
                    let index = tables.len() as u32;
                    tables.push(table);
                    table_index.insert((nsg, vnet, direction), index);
                    Some(index)
                }
                Err(error) => {
                    errors.push(error);
                    None
                }
            }
        };

        let mut endpoints = Vec::new();
        let mut chains = |nic_nsg: Option<usize>,
                          subnet_nsg: Option<usize>,
                          vnet: usize,
                          errors: &mut Vec<CompileError>| {
            let mut outbound = Chain::new();
            let mut inbound = Chain::new();
            for (level, nsg) in [(Level::Nic, nic_nsg), (Level::Subnet, subnet_nsg)] {
                if let Some(nsg) = nsg {
                    if let Some(table) = table_for(nsg, vnet, Direction::Outbound, errors) {
                        outbound.push(ChainStep {
                            level,
                            nsg: nsg as u32,
                            table,
                        });
                    }
                }
            }
            for (level, nsg) in [(Level::Subnet, subnet_nsg), (Level::Nic, nic_nsg)] {
                if let Some(nsg) = nsg {
                    if let Some(table) = table_for(nsg, vnet, Direction::Inbound, errors) {
                        inbound.push(ChainStep {
                            level,
                            nsg: nsg as u32,
                            table,
                        });
                    }
                }
            }
            (outbound, inbound)
        };

        for (subnet_index, subnet) in subnets.iter_mut().enumerate() {
            let (outbound, inbound) = chains(None, subnet.nsg, subnet.vnet, &mut errors);
            subnet.unnamed_endpoint = endpoints.len();
            endpoints.push(Endpoint {
                kind: EndpointKind::Unnamed(subnet_index),
                vnet: subnet.vnet,
                subnet: subnet_index,
                outbound,
                inbound,
                outbound_classifier: None,
                inbound_classifier: None,
            });
        }

        let mut nic_v4 = AHashMap::new();
        let mut nic_v6 = AHashMap::new();
        for (nic_index, nic) in policy.nics.iter().enumerate() {
            let Some(&subnet_index) = subnet_by_path.get(&nic.subnet) else {
                errors.push(CompileError {
                    location: format!("nics[{nic_index}].subnet"),
                    message: format!("subnet `{}` is not defined", nic.subnet),
                });
                continue;
            };
            let nic_nsg = lookup_nsg(
                &nic.network_security_group,
                format!("nics[{nic_index}].networkSecurityGroup"),
                &mut errors,
            );
            let subnet = &subnets[subnet_index];
            let (outbound, inbound) = chains(nic_nsg, subnet.nsg, subnet.vnet, &mut errors);
            let endpoint = endpoints.len() as u32;
            endpoints.push(Endpoint {
                kind: EndpointKind::Nic(nic_index),
                vnet: subnet.vnet,
                subnet: subnet_index,
                outbound,
                inbound,
                outbound_classifier: None,
                inbound_classifier: None,
            });
            for address in &nic.ip_addresses {
                match address {
                    IpAddr::V4(a) => nic_v4.insert(u32::from(*a), endpoint),
                    IpAddr::V6(a) => nic_v6.insert(u128::from(*a), endpoint),
                };
            }
        }

        let mut subnet_v4 = Vec::new();
        let mut subnet_v6 = Vec::new();
        for (vnet_index, vnet) in policy.vnets.iter().enumerate() {
            for subnet in &vnet.subnets {
                let path = format!("{}/{}", policy.vnets[vnet_index].name, subnet.name);
                let endpoint = subnets[subnet_by_path[&path]].unnamed_endpoint as u32;
                let set = super::address_set::AddressSet::from_prefixes(&subnet.address_prefixes);
                subnet_v4.extend(set.v4.iter().map(|&(lo, hi)| (lo, hi, endpoint)));
                subnet_v6.extend(set.v6.iter().map(|&(lo, hi)| (lo, hi, endpoint)));
            }
        }
        subnet_v4.sort_unstable();
        subnet_v6.sort_unstable();

        if !errors.is_empty() {
            return Err(CompileErrors(errors));
        }
        let mut chain_classifiers: Vec<ChainClassifier> = Vec::new();
        let mut chain_index: HashMap<Vec<u32>, u32> = HashMap::new();
        for endpoint in &mut endpoints {
            for direction in [Direction::Outbound, Direction::Inbound] {
                let steps: Vec<u32> = endpoint.chain(direction).iter().map(|s| s.table).collect();
                if steps.is_empty() {
                    continue;
                }
                let index = match chain_index.get(&steps) {
                    Some(&index) => index,
                    None => {
                        let chain_tables: Vec<&NsgTable> =
                            steps.iter().map(|&t| &tables[t as usize]).collect();
                        let classifier =
                            ChainClassifier::build(&chain_tables).map_err(|error| {
                                let names: Vec<&str> = chain_tables
                                    .iter()
                                    .map(|t| policy.network_security_groups[t.nsg].name.as_str())
                                    .collect();
                                CompileErrors(vec![CompileError {
                                    location: format!(
                                        "networkSecurityGroups ({})",
                                        names.join(", ")
                                    ),
                                    message: format!(
                                        "the {direction} rules cannot be compiled: {error}"
                                    ),
                                }])
                            })?;
                        let index = chain_classifiers.len() as u32;
                        chain_classifiers.push(classifier);
                        chain_index.insert(steps, index);
                        index
                    }
                };
                match direction {
                    Direction::Outbound => endpoint.outbound_classifier = Some(index),
                    Direction::Inbound => endpoint.inbound_classifier = Some(index),
                }
            }
        }
        let stats = CompileStats {
            tables: chain_classifiers.len(),
            classifier_rules: chain_classifiers
                .iter()
                .map(ChainClassifier::rule_count)
                .sum(),
            table_bytes: chain_classifiers
                .iter()
                .map(ChainClassifier::table_bytes)
                .sum(),
            endpoints: endpoints.len(),
            compile_time: started.elapsed(),
        };
        let mut rule_slot_base = Vec::with_capacity(tables.len());
        let mut next_slot = 0u32;
        for table in &tables {
            rule_slot_base.push(next_slot);
            next_slot += table.rules.len() as u32;
        }
        Ok(Program {
            policy: policy.clone(),
            resolver,
            tables,
            chain_classifiers,
            rule_slot_base,
            endpoints,
            subnets,
            nic_v4,
            nic_v6,
            subnet_v4,
            subnet_v6,
            stats,
        })
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }
    pub fn resolver(&self) -> &TagResolver {
        &self.resolver
    }
    pub fn tables(&self) -> &[NsgTable] {
        &self.tables
    }
    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }
    pub fn subnets(&self) -> &[SubnetInfo] {
        &self.subnets
    }
    pub fn stats(&self) -> CompileStats {
        self.stats
    }

    /// The endpoint an address belongs to: a declared NIC, else the unnamed
    /// NIC of the subnet containing it, else none (outside the estate).
    #[inline]
    pub fn endpoint_of(&self, address: IpAddr) -> Option<u32> {
        match address {
            IpAddr::V4(a) => {
                let a = u32::from(a);
                self.nic_v4
                    .get(&a)
                    .copied()
                    .or_else(|| find_range(&self.subnet_v4, a))
            }
            IpAddr::V6(a) => {
                let a = u128::from(a);
                self.nic_v6
                    .get(&a)
                    .copied()
                    .or_else(|| find_range(&self.subnet_v6, a))
            }
        }
    }

    /// Endpoint index of a declared NIC, by name.
    pub fn nic_endpoint(&self, name: &str) -> Option<u32> {
        self.endpoints
            .iter()
            .position(
                |e| matches!(e.kind, EndpointKind::Nic(i) if self.policy.nics[i].name == name),
            )
            .map(|i| i as u32)
    }

    /// Decides a flow: the outbound chain of the source's endpoint, then the
    /// inbound chain of the destination's; the first deny ends it.
    #[inline]
    pub fn evaluate(&self, flow: &Flow) -> Verdict {
        let mut evaluations = SmallVec::new();
        for (address, direction) in [
            (flow.source(), Direction::Outbound),
            (flow.destination(), Direction::Inbound),
        ] {
            let Some(endpoint) = self.endpoint_of(address) else {
                continue;
            };
            let endpoint_info = &self.endpoints[endpoint as usize];
            let Some(classifier) = endpoint_info.classifier(direction) else {
                continue;
            };
            let steps = endpoint_info.chain(direction);
            let mut first = [NO_RULE; 2];
            self.chain_classifiers[classifier as usize]
                .first_matches(flow, &mut first[..steps.len()]);
            for (step, &found) in steps.iter().zip(&first) {
                let table = &self.tables[step.table as usize];
                // Every table ends with DenyAll, which matches everything, so
                // NO_RULE cannot occur; answering DenyAll keeps this total.
                let rule = if found == NO_RULE {
                    table.rules.len() as u32 - 1
                } else {
                    found
                };
                let access = table.rules[rule as usize].access;
                evaluations.push(Evaluation {
                    direction,
                    endpoint,
                    level: step.level,
                    nsg: step.nsg,
                    table: step.table,
                    rule,
                    access,
                });
                if access == Access::Deny {
                    return Verdict {
                        decision: Access::Deny,
                        evaluations,
                    };
                }
            }
        }
        Verdict {
            decision: Access::Allow,
            evaluations,
        }
    }

    /// The name `verify` shows for an endpoint: the NIC's name, or
    /// `<vnet>/<subnet>/<address>` for an undeclared address.
    pub fn endpoint_name(&self, endpoint: u32, address: IpAddr) -> String {
        match self.endpoints[endpoint as usize].kind {
            EndpointKind::Nic(nic) => self.policy.nics[nic].name.clone(),
            EndpointKind::Unnamed(subnet) => format!("{}/{}", self.subnets[subnet].path, address),
        }
    }

    /// A dense id for every (table, rule) pair, for per-rule counters:
    /// `0..total_rule_slots()`.
    #[inline]
    pub fn rule_slot(&self, table: u32, rule: u32) -> usize {
        self.rule_slot_base[table as usize] as usize + rule as usize
    }

    pub fn total_rule_slots(&self) -> usize {
        self.tables.iter().map(|t| t.rules.len()).sum()
    }

    pub fn nsg_name(&self, nsg: u32) -> &str {
        &self.policy.network_security_groups[nsg as usize].name
    }

    pub fn rule(&self, evaluation: &Evaluation) -> &ResolvedRule {
        &self.tables[evaluation.table as usize].rules[evaluation.rule as usize]
    }

    /// The evaluations with names, as `verify` reports them.
    pub fn describe(&self, flow: &Flow, verdict: &Verdict) -> Vec<NamedEvaluation> {
        verdict
            .evaluations
            .iter()
            .map(|evaluation| {
                let address = match evaluation.direction {
                    Direction::Outbound => flow.source(),
                    Direction::Inbound => flow.destination(),
                };
                NamedEvaluation {
                    direction: evaluation.direction,
                    nic: self.endpoint_name(evaluation.endpoint, address),
                    level: evaluation.level,
                    nsg: self.nsg_name(evaluation.nsg).to_string(),
                    rule: self.rule(evaluation).name.clone(),
                    access: evaluation.access,
                }
            })
            .collect()
    }
}

/// An evaluation with its endpoint, NSG and rule named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedEvaluation {
    pub direction: Direction,
    pub nic: String,
    pub level: Level,
    pub nsg: String,
    pub rule: String,
    pub access: Access,
}

fn find_range<T: Ord + Copy>(ranges: &[(T, T, u32)], value: T) -> Option<u32> {
    let index = ranges.partition_point(|&(lo, _, _)| lo <= value);
    if index == 0 {
        return None;
    }
    let (_, hi, endpoint) = ranges[index - 1];
    (value <= hi).then_some(endpoint)
}

fn build_table(
    policy: &Policy,
    resolver: &TagResolver,
    nsg: usize,
    vnet: usize,
    direction: Direction,
) -> Result<NsgTable, CompileError> {
    let group = &policy.network_security_groups[nsg];
    let mut rules = Vec::new();
    let user = group
        .security_rules
        .iter()
        .enumerate()
        .filter(|(_, rule)| rule.direction == direction)
        .map(|(i, rule)| {
            (
                rule,
                false,
                format!("networkSecurityGroups[{nsg}].securityRules[{i}]"),
            )
        });
    let defaults = default_security_rules();
    let builtin = defaults
        .iter()
        .filter(|rule| rule.direction == direction)
        .map(|rule| {
            (
                rule,
                true,
                format!("networkSecurityGroups[{nsg}] (default rule {})", rule.name),
            )
        });
    for (rule, is_default, location) in user.chain(builtin) {
        let resolved = ResolvedRule::resolve(rule, is_default, vnet, resolver)
            .map_err(|message| CompileError { location, message })?;
        rules.push(resolved);
    }
    rules.sort_by_key(|r| r.priority);

    Ok(NsgTable {
        nsg,
        vnet,
        direction,
        rules,
    })
}
