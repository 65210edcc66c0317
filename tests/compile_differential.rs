//! The compiled program against the naive reference evaluator, on random
//! estates (many VNets, peerings, ASGs, NSGs on subnets and NICs, overlapping
//! rules, every protocol, IPv4 and IPv6, port edges) and random flows: both
//! must agree on the decision and on every evaluation (NIC, level, NSG, rule).
//!
//! Each proptest case is one seed; the estate and its flows are derived from
//! it, so a failure prints a seed that reproduces it exactly.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use nsgd::compile::synthetic::SplitMix;
use nsgd::compile::{reference, Flow, Program};
use nsgd::policy::{
    Access, AddressMatch, Direction, NetworkInterface, NetworkSecurityGroup, Policy, PortMatch,
    Protocol, SecurityRule, Subnet, VirtualNetwork,
};
use proptest::prelude::*;

/// Cases × flows per case = flow checks per run (at least 100,000).
const CASES: u32 = 256;
const FLOWS_PER_CASE: usize = 400;

/// The library's splitmix64, with the few helpers the generator needs.
struct Rng(SplitMix);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(SplitMix(seed))
    }
    fn next(&mut self) -> u64 {
        self.0.next_u64()
    }
    fn below(&mut self, n: usize) -> usize {
        self.0.below(n)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.0.chance(percent)
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

fn net(text: &str) -> IpNet {
    text.parse().unwrap()
}

fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

fn v6(vnet: u16, subnet: u16, host: u16) -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(0xfd00, vnet, subnet, 0, 0, 0, 0, host))
}

const PORT_EDGES: [u16; 10] = [0, 1, 22, 53, 80, 443, 1023, 1024, 8080, 65535];
const PROTOCOLS: [u8; 10] = [6, 6, 17, 17, 1, 58, 50, 51, 47, 0];

struct Estate {
    policy: Policy,
    /// Addresses worth sending traffic from/to, per family.
    addresses_v4: Vec<IpAddr>,
    addresses_v6: Vec<IpAddr>,
}

fn random_ports(rng: &mut Rng) -> PortMatch {
    match rng.below(6) {
        0..=2 => PortMatch::Any,
        3 => PortMatch::Ranges(vec![(0, 65535)]),
        _ => {
            let count = 1 + rng.below(3);
            let ranges = (0..count)
                .map(|_| {
                    let a = if rng.chance(70) {
                        *rng.pick(&PORT_EDGES)
                    } else {
                        rng.next() as u16
                    };
                    let b = if rng.chance(50) {
                        a
                    } else {
                        *rng.pick(&PORT_EDGES)
                    };
                    (a.min(b), a.max(b))
                })
                .collect();
            PortMatch::Ranges(ranges)
        }
    }
}

fn random_prefix(rng: &mut Rng, ipv4: bool, estate_prefixes: &[IpNet], hosts: &[IpAddr]) -> IpNet {
    let family: Vec<&IpNet> = estate_prefixes
        .iter()
        .filter(|p| p.addr().is_ipv4() == ipv4)
        .collect();
    let family_hosts: Vec<&IpAddr> = hosts.iter().filter(|h| h.is_ipv4() == ipv4).collect();
    match rng.below(5) {
        0 if !family.is_empty() => *family[rng.below(family.len())],
        1 if !family_hosts.is_empty() => IpNet::from(*family_hosts[rng.below(family_hosts.len())]),
        2 if ipv4 => *rng.pick(&[
            net("0.0.0.0/0"),
            net("8.8.8.0/24"),
            net("192.168.0.0/16"),
            net("168.63.129.16/32"),
            net("10.0.0.0/8"),
        ]),
        2 => *rng.pick(&[
            net("::/0"),
            net("2001:db8::/32"),
            net("fd00::/16"),
            net("2000::/3"),
        ]),
        _ => {
            if ipv4 {
                let len = 8 + rng.below(25) as u8;
                IpNet::new(IpAddr::V4(Ipv4Addr::from(rng.next() as u32)), len)
                    .unwrap()
                    .trunc()
            } else {
                let len = 16 + rng.below(113) as u8;
                let high = ((rng.next() as u128) << 64) | rng.next() as u128;
                IpNet::new(IpAddr::V6(Ipv6Addr::from(high)), len)
                    .unwrap()
                    .trunc()
            }
        }
    }
}

fn random_side(
    rng: &mut Rng,
    ipv4: bool,
    tags: &[String],
    asgs: &[String],
    estate_prefixes: &[IpNet],
    hosts: &[IpAddr],
) -> AddressMatch {
    match rng.below(8) {
        0 | 1 => AddressMatch::Any,
        2 | 3 => AddressMatch::Tag(rng.pick(tags).clone()),
        4 if !asgs.is_empty() => {
            let count = 1 + rng.below(2);
            let names: BTreeSet<String> = (0..count).map(|_| rng.pick(asgs).clone()).collect();
            AddressMatch::ApplicationSecurityGroups(names.into_iter().collect())
        }
        _ => {
            let count = 1 + rng.below(3);
            AddressMatch::Prefixes(
                (0..count)
                    .map(|_| random_prefix(rng, ipv4, estate_prefixes, hosts))
                    .collect(),
            )
        }
    }
}

fn random_estate(seed: u64) -> Estate {
    let mut rng = Rng::new(seed);
    let vnet_count = 1 + rng.below(4);
    let dual_stack = rng.chance(60);
    let mut vnets = Vec::new();
    let mut nics = Vec::new();
    let mut estate_prefixes = Vec::new();
    let mut addresses_v4 = vec![
        v4(168, 63, 129, 16),
        v4(8, 8, 8, 8),
        v4(52, 1, 2, 3),
        v4(192, 168, 5, 5),
        v4(172, 31, 0, 1),
        v4(100, 64, 0, 1),
        v4(127, 0, 0, 1),
        v4(224, 0, 0, 5),
        v4(0, 0, 0, 0),
        v4(255, 255, 255, 255),
        v4(10, 200, 0, 1),
    ];
    let mut addresses_v6 = vec![
        IpAddr::V6("2001:db8::1".parse().unwrap()),
        IpAddr::V6("2606:4700::1111".parse().unwrap()),
        IpAddr::V6("fe80::1".parse().unwrap()),
        IpAddr::V6("::1".parse().unwrap()),
        IpAddr::V6("fd00:99::1".parse().unwrap()),
        IpAddr::V6(Ipv6Addr::from(u128::MAX)),
    ];
    let asg_names: Vec<String> = (0..4).map(|i| format!("Asg{i}")).collect();
    let mut asg_vnet: BTreeMap<String, usize> = BTreeMap::new();
    let nsg_count = 1 + rng.below(4);
    let nsg_names: Vec<String> = (0..nsg_count).map(|i| format!("nsg-{i}")).collect();
    let maybe_nsg = |rng: &mut Rng| -> Option<String> {
        if rng.chance(70) {
            Some(rng.pick(&nsg_names).clone())
        } else {
            None
        }
    };

    for v in 0..vnet_count {
        let mut address_space = vec![net(&format!("10.{v}.0.0/16"))];
        if rng.chance(30) {
            address_space.push(net(&format!("172.{}.0.0/16", 16 + v)));
        }
        if dual_stack {
            address_space.push(net(&format!("fd00:{v}::/48")));
        }
        estate_prefixes.extend(address_space.iter().copied());
        let mut subnets = Vec::new();
        let subnet_count = 1 + rng.below(3);
        for s in 0..subnet_count {
            let mut prefixes = vec![net(&format!("10.{v}.{s}.0/24"))];
            if dual_stack {
                prefixes.push(net(&format!("fd00:{v}:{s}::/64")));
            }
            estate_prefixes.extend(prefixes.iter().copied());
            // Undeclared addresses of the subnet.
            addresses_v4.push(v4(10, v as u8, s as u8, 200));
            addresses_v6.push(v6(v as u16, s as u16, 200));
            subnets.push(Subnet {
                name: format!("sn{s}"),
                address_prefixes: prefixes,
                network_security_group: maybe_nsg(&mut rng),
            });
            let nic_count = rng.below(4);
            for n in 0..nic_count {
                let mut ips = vec![v4(10, v as u8, s as u8, 4 + n as u8)];
                if dual_stack && rng.chance(70) {
                    ips.push(v6(v as u16, s as u16, 4 + n as u16));
                }
                addresses_v4.push(ips[0]);
                if ips.len() > 1 {
                    addresses_v6.push(ips[1]);
                }
                let mut asgs = Vec::new();
                for asg in &asg_names {
                    let home = *asg_vnet.entry(asg.clone()).or_insert(v);
                    if home == v && rng.chance(35) {
                        asgs.push(asg.clone());
                    }
                }
                nics.push(NetworkInterface {
                    name: format!("nic-{v}-{s}-{n}"),
                    subnet: format!("vnet{v}/sn{s}"),
                    ip_addresses: ips,
                    network_security_group: maybe_nsg(&mut rng),
                    application_security_groups: asgs,
                });
            }
        }
        vnets.push(VirtualNetwork {
            name: format!("vnet{v}"),
            address_space,
            peerings: Vec::new(),
            subnets,
        });
    }
    for (a, vnet) in vnets.iter_mut().enumerate() {
        for b in 0..vnet_count {
            if a != b && rng.chance(30) {
                vnet.peerings.push(format!("vnet{b}"));
            }
        }
    }

    let mut service_tags = BTreeMap::new();
    service_tags.insert(
        "OnPrem".to_string(),
        vec![net("192.168.0.0/16"), net("fd99::/16")],
    );
    if rng.chance(20) {
        service_tags.insert("VirtualNetwork".to_string(), vec![net("192.168.5.0/24")]);
    }
    if rng.chance(10) {
        service_tags.insert(
            "Internet".to_string(),
            vec![net("8.0.0.0/8"), net("2001:db8::/32")],
        );
    }
    if rng.chance(10) {
        service_tags.insert("AzureLoadBalancer".to_string(), vec![net("52.1.2.0/24")]);
    }
    let tags: Vec<String> = ["VirtualNetwork", "Internet", "AzureLoadBalancer", "OnPrem"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let declared_asgs: Vec<String> = asg_names.clone();
    let hosts: Vec<IpAddr> = addresses_v4.iter().chain(&addresses_v6).copied().collect();

    let mut groups = Vec::new();
    for name in &nsg_names {
        let rule_count = rng.below(14);
        let mut used: BTreeSet<(Direction, u32)> = BTreeSet::new();
        let mut rules = Vec::new();
        for r in 0..rule_count {
            let direction = if rng.chance(50) {
                Direction::Inbound
            } else {
                Direction::Outbound
            };
            let mut priority = 100 + rng.below(40) as u32 * 10;
            while !used.insert((direction, priority)) {
                priority += 1;
            }
            let protocol = *rng.pick(&[
                Protocol::Any,
                Protocol::Any,
                Protocol::Tcp,
                Protocol::Tcp,
                Protocol::Udp,
                Protocol::Icmp,
                Protocol::Esp,
                Protocol::Ah,
            ]);
            let ipv4 = !dual_stack || rng.chance(60);
            let source = random_side(
                &mut rng,
                ipv4,
                &tags,
                &declared_asgs,
                &estate_prefixes,
                &hosts,
            );
            let destination = random_side(
                &mut rng,
                ipv4,
                &tags,
                &declared_asgs,
                &estate_prefixes,
                &hosts,
            );
            let (source_ports, destination_ports) = if protocol.has_ports() {
                (random_ports(&mut rng), random_ports(&mut rng))
            } else {
                (PortMatch::Any, PortMatch::Any)
            };
            rules.push(SecurityRule {
                name: format!("r{r}"),
                description: None,
                priority,
                direction,
                access: if rng.chance(50) {
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
        groups.push(NetworkSecurityGroup {
            name: name.clone(),
            security_rules: rules,
            flush_connection: false,
        });
    }

    Estate {
        policy: Policy {
            service_tags,
            application_security_groups: declared_asgs,
            vnets,
            nics,
            network_security_groups: groups,
        },
        addresses_v4,
        addresses_v6,
    }
}

fn random_flow(rng: &mut Rng, estate: &Estate) -> Flow {
    let pool = if estate.addresses_v6.len() > 6 && rng.chance(35) {
        &estate.addresses_v6
    } else {
        &estate.addresses_v4
    };
    let source = *rng.pick(pool);
    let destination = *rng.pick(pool);
    let protocol = if rng.chance(95) {
        *rng.pick(&PROTOCOLS)
    } else {
        rng.next() as u8
    };
    let port = |rng: &mut Rng| {
        if rng.chance(70) {
            *rng.pick(&PORT_EDGES)
        } else {
            rng.next() as u16
        }
    };
    let source_port = port(rng);
    let destination_port = port(rng);
    Flow::new(protocol, source, source_port, destination, destination_port).unwrap()
}

fn check_seed(seed: u64) -> Result<(), TestCaseError> {
    let estate = random_estate(seed);
    let program = Program::compile(&estate.policy)
        .map_err(|e| TestCaseError::fail(format!("seed {seed}: compile failed: {e}")))?;
    let mut rng = Rng::new(seed ^ 0xA5A5_A5A5);
    for _ in 0..FLOWS_PER_CASE {
        let flow = random_flow(&mut rng, &estate);
        let verdict = program.evaluate(&flow);
        let compiled = (verdict.decision, program.describe(&flow, &verdict));
        let expected = reference::evaluate(&estate.policy, &flow);
        prop_assert_eq!(compiled, expected, "seed {} flow {}", seed, flow);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, ..ProptestConfig::default() })]

    #[test]
    fn compiled_program_agrees_with_reference(seed in any::<u64>()) {
        check_seed(seed)?;
    }
}

/// Seeds that once disagreed, kept as regressions.
#[test]
fn known_seeds_agree() {
    for seed in [0u64, 1, 2, 42, 0xDEAD_BEEF] {
        check_seed(seed).unwrap();
    }
}
