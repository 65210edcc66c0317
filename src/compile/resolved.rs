//! A security rule with its names resolved for one VNet context: tags and ASGs
//! expanded to address sets, ports normalised. The classifier, the lints, the
//! effective-rules view and `verify --explain` all read this one form.

use std::net::IpAddr;

use super::address_set::AddressSet;
use super::classifier::NO_PORT;
use super::flow::{Flow, ICMP};
use super::tags::TagResolver;
use crate::policy::{Access, AddressMatch, Direction, PortMatch, Protocol, SecurityRule};

/// Inclusive port ranges within `0..=NO_PORT`, sorted and merged. A condition
/// covering all of 0..=65535 also covers [`NO_PORT`] (portless packets).
pub type PortSet = Vec<(u32, u32)>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedRule {
    pub name: String,
    /// One of the six built-in rules (named `defaultSecurityRules/…` in views).
    pub is_default: bool,
    pub priority: u32,
    pub direction: Direction,
    pub access: Access,
    pub protocol: Protocol,
    pub source: AddressSet,
    pub destination: AddressSet,
    pub source_ports: PortSet,
    pub destination_ports: PortSet,
    /// The rule as written, for views that show the unexpanded form.
    pub written: SecurityRule,
}

/// Which of a rule's five conditions a flow meets (`verify --explain`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldMatch {
    pub protocol: bool,
    pub source: bool,
    pub source_port: bool,
    pub destination: bool,
    pub destination_port: bool,
}

impl FieldMatch {
    pub fn all(&self) -> bool {
        self.protocol
            && self.source
            && self.source_port
            && self.destination
            && self.destination_port
    }

    /// Names of the conditions that failed, in field order.
    pub fn failed_fields(&self) -> Vec<&'static str> {
        let mut failed = Vec::new();
        for (ok, name) in [
            (self.protocol, "protocol"),
            (self.source, "source"),
            (self.source_port, "sourcePort"),
            (self.destination, "destination"),
            (self.destination_port, "destinationPort"),
        ] {
            if !ok {
                failed.push(name);
            }
        }
        failed
    }
}

pub fn port_set(ports: &PortMatch) -> PortSet {
    if ports.covers_all() {
        return vec![(0, NO_PORT)];
    }
    let PortMatch::Ranges(ranges) = ports else {
        return vec![(0, NO_PORT)];
    };
    let mut sorted: Vec<(u32, u32)> = ranges
        .iter()
        .map(|&(lo, hi)| (u32::from(lo), u32::from(hi)))
        .collect();
    sorted.sort_unstable();
    let mut merged: PortSet = Vec::with_capacity(sorted.len());
    for (lo, hi) in sorted {
        match merged.last_mut() {
            Some(last) if lo <= last.1 + 1 => last.1 = last.1.max(hi),
            _ => merged.push((lo, hi)),
        }
    }
    merged
}

fn ports_contain(ports: &PortSet, port: u32) -> bool {
    ports.iter().any(|&(lo, hi)| lo <= port && port <= hi)
}

impl ResolvedRule {
    pub fn resolve(
        rule: &SecurityRule,
        is_default: bool,
        vnet: usize,
        resolver: &TagResolver,
    ) -> Result<ResolvedRule, String> {
        Ok(ResolvedRule {
            name: rule.name.clone(),
            is_default,
            priority: rule.priority,
            direction: rule.direction,
            access: rule.access,
            protocol: rule.protocol,
            source: resolver.resolve(vnet, &rule.source)?,
            destination: resolver.resolve(vnet, &rule.destination)?,
            source_ports: port_set(&rule.source_ports),
            destination_ports: port_set(&rule.destination_ports),
            written: rule.clone(),
        })
    }

    /// Does the rule's protocol condition accept this packet? `Icmp` is IPv4
    /// ICMP only; ICMPv6 meets `*` rules alone.
    pub fn protocol_matches(&self, protocol: u8, is_ipv4: bool) -> bool {
        match self.protocol {
            Protocol::Any => true,
            Protocol::Icmp => is_ipv4 && protocol == ICMP,
            other => other.number() == Some(protocol),
        }
    }

    pub fn field_match(&self, flow: &Flow) -> FieldMatch {
        FieldMatch {
            protocol: self.protocol_matches(flow.protocol(), flow.is_ipv4()),
            source: self.source.contains(flow.source()),
            source_port: ports_contain(&self.source_ports, flow.source_port_key()),
            destination: self.destination.contains(flow.destination()),
            destination_port: ports_contain(&self.destination_ports, flow.destination_port_key()),
        }
    }

    pub fn matches(&self, flow: &Flow) -> bool {
        self.field_match(flow).all()
    }

    /// Whether the rule names an ASG on the side that is the evaluated NIC
    /// itself (destination when inbound, source when outbound).
    pub fn local_asgs(&self) -> Option<&[String]> {
        let local = match self.direction {
            Direction::Inbound => &self.written.destination,
            Direction::Outbound => &self.written.source,
        };
        match local {
            AddressMatch::ApplicationSecurityGroups(names) => Some(names),
            _ => None,
        }
    }

    /// Display name in Azure's effective-rules and IP-flow-verify style.
    pub fn arm_name(&self) -> String {
        if self.is_default {
            format!("defaultSecurityRules/{}", self.name)
        } else {
            format!("securityRules/{}", self.name)
        }
    }

    /// Whether `address` is on the side the rule treats as local.
    pub fn local_contains(&self, address: IpAddr) -> bool {
        match self.direction {
            Direction::Inbound => self.destination.contains(address),
            Direction::Outbound => self.source.contains(address),
        }
    }
}
