//! A deterministic generator of realistic NSG estates and flows, for
//! benchmarks and load tests: hub-and-spoke VNets, subnet and NIC NSGs with
//! hundreds of rules mixing tags, prefix lists, ASGs and port lists.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;

use super::flow::Flow;
use crate::policy::{
    Access, AddressMatch, Direction, NetworkInterface, NetworkSecurityGroup, Policy, PortMatch,
    Protocol, SecurityRule, Subnet, VirtualNetwork,
};

/// Shape of a generated estate.
#[derive(Debug, Clone, Copy)]
pub struct EstateShape {
    pub spokes: usize,
    pub subnets_per_vnet: usize,
    pub nics_per_subnet: usize,
    pub asgs: usize,
    /// User rules per subnet NSG (both directions together).
    pub subnet_nsg_rules: usize,
    /// User rules per NIC NSG; every NIC gets one when non-zero.
    pub nic_nsg_rules: usize,
    pub seed: u64,
}

impl Default for EstateShape {
    fn default() -> Self {
        EstateShape {
            spokes: 3,
            subnets_per_vnet: 3,
            nics_per_subnet: 16,
            asgs: 12,
            subnet_nsg_rules: 400,
            nic_nsg_rules: 100,
            seed: 7,
        }
    }
}

/// splitmix64: deterministic and dependency-free.
#[derive(Debug, Clone)]
pub struct SplitMix(pub u64);

impl SplitMix {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }
}

const SERVICE_PORTS: [u16; 16] = [
    22, 25, 53, 80, 123, 389, 443, 445, 1433, 3306, 3389, 5432, 5671, 6379, 8080, 9200,
];

fn v4net(a: u8, b: u8, c: u8, d: u8, len: u8) -> IpNet {
    IpNet::new(IpAddr::V4(Ipv4Addr::new(a, b, c, d)), len).expect("valid prefix length")
}

fn ports(rng: &mut SplitMix) -> PortMatch {
    match rng.below(4) {
        0 => PortMatch::Any,
        1 => {
            let p = SERVICE_PORTS[rng.below(SERVICE_PORTS.len())];
            PortMatch::Ranges(vec![(p, p)])
        }
        2 => {
            let count = 2 + rng.below(4);
            PortMatch::Ranges(
                (0..count)
                    .map(|_| {
                        let p = SERVICE_PORTS[rng.below(SERVICE_PORTS.len())];
                        (p, p)
                    })
                    .collect(),
            )
        }
        _ => {
            let lo = 1024 + rng.below(50_000) as u16;
            PortMatch::Ranges(vec![(lo, lo.saturating_add(rng.below(2000) as u16))])
        }
    }
}

/// A random external (internet) IPv4 prefix.
fn external_prefix(rng: &mut SplitMix) -> IpNet {
    let a = [13u8, 20, 40, 52, 104, 151, 185, 203][rng.below(8)];
    let len = [16u8, 20, 24, 28, 32][rng.below(5)];
    IpNet::new(
        IpAddr::V4(Ipv4Addr::new(
            a,
            rng.below(256) as u8,
            rng.below(256) as u8,
            rng.below(256) as u8,
        )),
        len,
    )
    .expect("valid prefix length")
    .trunc()
}

/// Builds the estate. Names are stable for a given shape.
pub fn realistic_estate(shape: &EstateShape) -> Policy {
    let mut rng = SplitMix(shape.seed);
    let asg_names: Vec<String> = (0..shape.asgs).map(|i| format!("asg-{i}")).collect();
    let mut vnets = Vec::new();
    let mut nics = Vec::new();
    let mut groups = Vec::new();
    let mut vnet_prefixes = Vec::new();
    for v in 0..=shape.spokes {
        let name = if v == 0 {
            "hub".to_string()
        } else {
            format!("spoke-{v}")
        };
        let space = v4net(10, v as u8, 0, 0, 16);
        vnet_prefixes.push(space);
        let peerings = if v == 0 {
            (1..=shape.spokes).map(|s| format!("spoke-{s}")).collect()
        } else {
            vec!["hub".to_string()]
        };
        let mut subnets = Vec::new();
        for s in 0..shape.subnets_per_vnet {
            let nsg_name = format!("{name}-sn{s}-nsg");
            subnets.push(Subnet {
                name: format!("sn{s}"),
                address_prefixes: vec![v4net(10, v as u8, s as u8, 0, 24)],
                network_security_group: Some(nsg_name.clone()),
            });
            groups.push(NetworkSecurityGroup {
                name: nsg_name,
                security_rules: Vec::new(),
                flush_connection: false,
            });
            for n in 0..shape.nics_per_subnet {
                let nic_name = format!("{name}-sn{s}-nic{n}");
                let nsg = if shape.nic_nsg_rules > 0 {
                    groups.push(NetworkSecurityGroup {
                        name: format!("{nic_name}-nsg"),
                        security_rules: Vec::new(),
                        flush_connection: false,
                    });
                    Some(format!("{nic_name}-nsg"))
                } else {
                    None
                };
                // ASGs are per VNet (Azure requires members in one VNet).
                let asgs_here: Vec<String> = asg_names
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| i % (shape.spokes + 1) == v)
                    .map(|(_, a)| a.clone())
                    .collect();
                let membership = if asgs_here.is_empty() {
                    Vec::new()
                } else {
                    vec![asgs_here[rng.below(asgs_here.len())].clone()]
                };
                nics.push(NetworkInterface {
                    name: nic_name,
                    subnet: format!("{name}/sn{s}"),
                    ip_addresses: vec![IpAddr::V4(Ipv4Addr::new(
                        10,
                        v as u8,
                        s as u8,
                        4 + n as u8,
                    ))],
                    network_security_group: nsg,
                    application_security_groups: membership,
                });
            }
        }
        vnets.push(VirtualNetwork {
            name,
            address_space: vec![space],
            peerings,
            subnets,
        });
    }

    let mut service_tags = BTreeMap::new();
    service_tags.insert(
        "OnPrem".to_string(),
        vec![v4net(192, 168, 0, 0, 16), v4net(172, 20, 0, 0, 14)],
    );
    service_tags.insert(
        "Storage.WestEurope".to_string(),
        (0..40).map(|_| external_prefix(&mut rng)).collect(),
    );
    let tags = [
        "Internet",
        "VirtualNetwork",
        "OnPrem",
        "Storage.WestEurope",
        "AzureLoadBalancer",
    ];

    for group in &mut groups {
        let count = if group.name.contains("-nic") {
            shape.nic_nsg_rules
        } else {
            shape.subnet_nsg_rules
        };
        for r in 0..count {
            let direction = if r % 3 == 2 {
                Direction::Outbound
            } else {
                Direction::Inbound
            };
            let priority = 100 + (r as u32 / 3) * 3 + (r as u32 % 3);
            let protocol =
                [Protocol::Tcp, Protocol::Tcp, Protocol::Udp, Protocol::Any][rng.below(4)];
            let side = |rng: &mut SplitMix| match rng.below(6) {
                0 => AddressMatch::Any,
                1 => AddressMatch::Tag(tags[rng.below(tags.len())].to_string()),
                2 if !asg_names.is_empty() => {
                    AddressMatch::ApplicationSecurityGroups(vec![asg_names
                        [rng.below(asg_names.len())]
                    .clone()])
                }
                3 => {
                    let v = rng.below(vnet_prefixes.len());
                    AddressMatch::Prefixes(vec![v4net(
                        10,
                        v as u8,
                        rng.below(shape.subnets_per_vnet) as u8,
                        0,
                        24,
                    )])
                }
                _ => AddressMatch::Prefixes(
                    (0..1 + rng.below(6))
                        .map(|_| external_prefix(rng))
                        .collect(),
                ),
            };
            let mut source = side(&mut rng);
            let mut destination = side(&mut rng);
            // Azure: ASGs on both sides must be of one VNet; keep it simple.
            if matches!(source, AddressMatch::ApplicationSecurityGroups(_))
                && matches!(destination, AddressMatch::ApplicationSecurityGroups(_))
            {
                destination = AddressMatch::Any;
            }
            if let (AddressMatch::Prefixes(_), AddressMatch::Prefixes(_)) = (&source, &destination)
            {
                if rng.chance(50) {
                    source = AddressMatch::Any;
                }
            }
            let (source_ports, destination_ports) = if protocol.has_ports() {
                (
                    if rng.chance(90) {
                        PortMatch::Any
                    } else {
                        ports(&mut rng)
                    },
                    ports(&mut rng),
                )
            } else {
                (PortMatch::Any, PortMatch::Any)
            };
            group.security_rules.push(SecurityRule {
                name: format!("rule-{r}"),
                description: None,
                priority,
                direction,
                access: if rng.chance(60) {
                    Access::Allow
                } else {
                    Access::Deny
                },
                protocol,
                source,
                source_ports,
                destination,
                destination_ports,
            });
        }
    }

    Policy {
        service_tags,
        application_security_groups: asg_names,
        vnets,
        nics,
        network_security_groups: groups,
    }
}

/// Flows between NICs of the estate (both chains apply), with some from and
/// to the internet, and service ports mixed with ephemeral ones.
pub fn realistic_flows(policy: &Policy, count: usize, seed: u64) -> Vec<Flow> {
    let mut rng = SplitMix(seed);
    let addresses: Vec<IpAddr> = policy
        .nics
        .iter()
        .flat_map(|n| n.ip_addresses.iter().copied())
        .collect();
    let mut flows = Vec::with_capacity(count);
    while flows.len() < count && !addresses.is_empty() {
        let nic_a = addresses[rng.below(addresses.len())];
        let nic_b = addresses[rng.below(addresses.len())];
        let outside = IpAddr::V4(Ipv4Addr::from(rng.next_u64() as u32));
        let (source, destination) = match rng.below(10) {
            0 => (outside, nic_b),
            1 => (nic_a, outside),
            _ => (nic_a, nic_b),
        };
        let protocol = [6u8, 6, 6, 17, 17, 1][rng.below(6)];
        let destination_port = if rng.chance(70) {
            SERVICE_PORTS[rng.below(SERVICE_PORTS.len())]
        } else {
            rng.next_u64() as u16
        };
        let source_port = 1024 + (rng.next_u64() % 64_000) as u16;
        if let Ok(flow) = Flow::new(protocol, source, source_port, destination, destination_port) {
            flows.push(flow);
        }
    }
    flows
}
