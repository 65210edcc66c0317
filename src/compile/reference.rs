//! The naive reference evaluator: a literal transcription of nsg-semantics.md
//! §5.3 over the policy as written — linear scans, membership tested address by
//! address, no precomputed sets. It exists only to check the compiled program
//! (differential tests); it is slow on purpose and shares no code with
//! `program`, `tags` or the classifier.

use std::net::IpAddr;

use ipnet::IpNet;

use super::flow::Flow;
use super::program::{Level, NamedEvaluation};
use crate::policy::{
    default_security_rules, Access, AddressMatch, Direction, NetworkInterface, Policy, PortMatch,
    Protocol, SecurityRule, Subnet, VirtualNetwork,
};

/// Who an address is, seen from the estate.
enum Party<'p> {
    Nic(&'p NetworkInterface, &'p VirtualNetwork, &'p Subnet),
    Unnamed(&'p VirtualNetwork, &'p Subnet),
}

/// The reference decision and its evaluations (same shape as `verify`'s).
pub fn evaluate(policy: &Policy, flow: &Flow) -> (Access, Vec<NamedEvaluation>) {
    let mut evaluations = Vec::new();
    for (address, direction) in [
        (flow.source(), Direction::Outbound),
        (flow.destination(), Direction::Inbound),
    ] {
        let Some(party) = find_party(policy, address) else {
            continue;
        };
        let (name, vnet, subnet, nic) = match &party {
            Party::Nic(nic, vnet, subnet) => (nic.name.clone(), *vnet, *subnet, Some(*nic)),
            Party::Unnamed(vnet, subnet) => (
                format!("{}/{}/{}", vnet.name, subnet.name, address),
                *vnet,
                *subnet,
                None,
            ),
        };
        let nic_nsg = nic.and_then(|n| n.network_security_group.as_deref());
        let subnet_nsg = subnet.network_security_group.as_deref();
        let order = match direction {
            Direction::Outbound => [(Level::Nic, nic_nsg), (Level::Subnet, subnet_nsg)],
            Direction::Inbound => [(Level::Subnet, subnet_nsg), (Level::Nic, nic_nsg)],
        };
        for (level, nsg_name) in order {
            let Some(nsg_name) = nsg_name else { continue };
            let Some(nsg) = policy.nsg(nsg_name) else {
                continue;
            };
            let mut rules: Vec<SecurityRule> = nsg
                .security_rules
                .iter()
                .chain(default_security_rules().iter())
                .filter(|r| r.direction == direction)
                .cloned()
                .collect();
            rules.sort_by_key(|r| r.priority);
            let Some(rule) = rules.iter().find(|r| rule_matches(policy, vnet, r, flow)) else {
                continue;
            };
            evaluations.push(NamedEvaluation {
                direction,
                nic: name.clone(),
                level,
                nsg: nsg.name.clone(),
                rule: rule.name.clone(),
                access: rule.access,
            });
            if rule.access == Access::Deny {
                return (Access::Deny, evaluations);
            }
        }
    }
    (Access::Allow, evaluations)
}

fn find_party(policy: &Policy, address: IpAddr) -> Option<Party<'_>> {
    for nic in &policy.nics {
        if nic.ip_addresses.contains(&address) {
            let (vnet, subnet) = policy.subnet(&nic.subnet)?;
            return Some(Party::Nic(nic, vnet, subnet));
        }
    }
    for vnet in &policy.vnets {
        for subnet in &vnet.subnets {
            if subnet.address_prefixes.iter().any(|p| p.contains(&address)) {
                return Some(Party::Unnamed(vnet, subnet));
            }
        }
    }
    None
}

fn rule_matches(policy: &Policy, vnet: &VirtualNetwork, rule: &SecurityRule, flow: &Flow) -> bool {
    let protocol_ok = match rule.protocol {
        Protocol::Any => true,
        Protocol::Icmp => flow.is_ipv4() && flow.protocol() == 1,
        other => other.number() == Some(flow.protocol()),
    };
    protocol_ok
        && address_matches(policy, vnet, &rule.source, flow.source())
        && port_matches(&rule.source_ports, flow, flow.source_port())
        && address_matches(policy, vnet, &rule.destination, flow.destination())
        && port_matches(&rule.destination_ports, flow, flow.destination_port())
}

/// `*` matches any packet; listed ports match only packets that have ports
/// (TCP, UDP) — unless the list covers every port, which Azure shows as `*`.
fn port_matches(ports: &PortMatch, flow: &Flow, port: u16) -> bool {
    match ports {
        PortMatch::Any => true,
        PortMatch::Ranges(ranges) => {
            if !flow.has_ports() {
                return (0..=65535u16).all(|p| ranges.iter().any(|&(lo, hi)| lo <= p && p <= hi));
            }
            ranges.iter().any(|&(lo, hi)| lo <= port && port <= hi)
        }
    }
}

fn address_matches(
    policy: &Policy,
    vnet: &VirtualNetwork,
    condition: &AddressMatch,
    address: IpAddr,
) -> bool {
    match condition {
        AddressMatch::Any => true,
        AddressMatch::Prefixes(prefixes) => prefixes.iter().any(|p| p.contains(&address)),
        AddressMatch::Tag(tag) => tag_contains(policy, vnet, tag, address),
        AddressMatch::ApplicationSecurityGroups(names) => policy.nics.iter().any(|nic| {
            nic.ip_addresses.contains(&address)
                && nic
                    .application_security_groups
                    .iter()
                    .any(|asg| names.contains(asg))
        }),
    }
}

fn listed(prefixes: &[&str], address: IpAddr) -> bool {
    prefixes
        .iter()
        .any(|p| p.parse::<IpNet>().is_ok_and(|net| net.contains(&address)))
}

fn user_tag(policy: &Policy, tag: &str) -> Option<Vec<IpNet>> {
    policy.service_tags.get(tag).cloned()
}

fn in_virtual_network(policy: &Policy, vnet: &VirtualNetwork, address: IpAddr) -> bool {
    if vnet.address_space.iter().any(|p| p.contains(&address)) {
        return true;
    }
    for other in &policy.vnets {
        let peered = (vnet.peerings.contains(&other.name) || other.peerings.contains(&vnet.name))
            && other.name != vnet.name;
        if peered && other.address_space.iter().any(|p| p.contains(&address)) {
            return true;
        }
    }
    if listed(&["168.63.129.16/32"], address) {
        return true;
    }
    user_tag(policy, "VirtualNetwork")
        .is_some_and(|extra| extra.iter().any(|p| p.contains(&address)))
}

fn tag_contains(policy: &Policy, vnet: &VirtualNetwork, tag: &str, address: IpAddr) -> bool {
    match tag {
        "VirtualNetwork" => in_virtual_network(policy, vnet, address),
        "Internet" => match user_tag(policy, "Internet") {
            Some(list) => list.iter().any(|p| p.contains(&address)),
            None => {
                let public = match address {
                    IpAddr::V4(_) => !listed(
                        &[
                            "0.0.0.0/8",
                            "10.0.0.0/8",
                            "100.64.0.0/10",
                            "127.0.0.0/8",
                            "169.254.0.0/16",
                            "172.16.0.0/12",
                            "192.0.2.0/24",
                            "192.168.0.0/16",
                            "198.18.0.0/15",
                            "224.0.0.0/3",
                        ],
                        address,
                    ),
                    IpAddr::V6(_) => listed(&["2000::/3"], address),
                };
                public && !in_virtual_network(policy, vnet, address)
            }
        },
        "AzureLoadBalancer" => match user_tag(policy, "AzureLoadBalancer") {
            Some(list) => list.iter().any(|p| p.contains(&address)),
            None => listed(&["168.63.129.16/32"], address),
        },
        other => {
            user_tag(policy, other).is_some_and(|list| list.iter().any(|p| p.contains(&address)))
        }
    }
}
