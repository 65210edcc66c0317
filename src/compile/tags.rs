//! Service tag and ASG resolution: what each address condition of a rule means
//! for a NIC of a given VNet (policy-format.md "Service tags").

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;

use super::address_set::AddressSet;
use crate::policy::{AddressMatch, Policy};

/// IPv4 blocks Azure leaves out of `Internet` (policy-format.md).
pub const INTERNET_EXCLUDED_V4: [&str; 10] = [
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
];

/// IPv6 `Internet` before the VNet's set is taken out: global unicast.
pub const INTERNET_V6: &str = "2000::/3";

/// The Azure host virtual IP: `AzureLoadBalancer`, and part of `VirtualNetwork`.
pub const AZURE_HOST_IP: &str = "168.63.129.16/32";

/// `items` in their order, each kept at its first place only.
fn without_repeats<T: Eq + std::hash::Hash + Copy>(items: Vec<T>) -> Vec<T> {
    let mut seen = std::collections::HashSet::new();
    items
        .into_iter()
        .filter(|item| seen.insert(*item))
        .collect()
}

fn parse_all(prefixes: &[&str]) -> Vec<IpNet> {
    prefixes
        .iter()
        .map(|p| p.parse().expect("built-in prefix constants are valid"))
        .collect()
}

/// What the built-in tags mean for the NICs of one VNet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VnetTags {
    pub virtual_network: AddressSet,
    pub internet: AddressSet,
    pub azure_load_balancer: AddressSet,
}

/// Resolves address conditions to address sets, per VNet context.
#[derive(Debug, Clone)]
pub struct TagResolver {
    per_vnet: Vec<VnetTags>,
    user_tags: HashMap<String, AddressSet>,
    asg_members: HashMap<String, AddressSet>,
    /// What the sets above are made of, as the policy lists them, for views
    /// (Azure's effective rules list address spaces, not their union).
    listings: Listings,
}

#[derive(Debug, Clone, Default)]
struct Listings {
    /// Per VNet: its address spaces, its peers', the host IP, the extras.
    virtual_network: Vec<Vec<IpNet>>,
    user_tags: HashMap<String, Vec<IpNet>>,
    asg_members: HashMap<String, Vec<IpAddr>>,
}

impl TagResolver {
    pub fn new(policy: &Policy) -> Self {
        let user_tags: HashMap<String, AddressSet> = policy
            .service_tags
            .iter()
            .map(|(name, prefixes)| (name.clone(), AddressSet::from_prefixes(prefixes)))
            .collect();
        let host = AddressSet::from_prefixes(&parse_all(&[AZURE_HOST_IP]));
        let vnet_extras = user_tags.get("VirtualNetwork").cloned().unwrap_or_default();
        let azure_load_balancer = user_tags
            .get("AzureLoadBalancer")
            .cloned()
            .unwrap_or_else(|| host.clone());
        let public_v4 = AddressSet::from_prefixes(&parse_all(&["0.0.0.0/0"])).difference(
            &AddressSet::from_prefixes(&parse_all(&INTERNET_EXCLUDED_V4)),
        );
        let public = public_v4.union(&AddressSet::from_prefixes(&parse_all(&[INTERNET_V6])));

        let mut listings = Listings {
            user_tags: policy.service_tags.clone().into_iter().collect(),
            ..Listings::default()
        };
        let per_vnet = policy
            .vnets
            .iter()
            .map(|vnet| {
                let mut prefixes: Vec<IpNet> = vnet.address_space.clone();
                for other in &policy.vnets {
                    let peered =
                        vnet.peerings.contains(&other.name) || other.peerings.contains(&vnet.name);
                    if peered && other.name != vnet.name {
                        prefixes.extend(other.address_space.iter().copied());
                    }
                }
                let virtual_network = AddressSet::from_prefixes(&prefixes)
                    .union(&host)
                    .union(&vnet_extras);
                let mut listed = prefixes;
                listed.extend(parse_all(&[AZURE_HOST_IP]));
                if let Some(extras) = listings.user_tags.get("VirtualNetwork") {
                    listed.extend(extras.iter().copied());
                }
                listings.virtual_network.push(without_repeats(listed));
                let internet = match user_tags.get("Internet") {
                    Some(set) => set.clone(),
                    None => public.difference(&virtual_network),
                };
                VnetTags {
                    virtual_network,
                    internet,
                    azure_load_balancer: azure_load_balancer.clone(),
                }
            })
            .collect();

        let mut members: HashMap<String, Vec<std::net::IpAddr>> = HashMap::new();
        for asg in &policy.application_security_groups {
            members.entry(asg.clone()).or_default();
        }
        for nic in &policy.nics {
            for asg in &nic.application_security_groups {
                members
                    .entry(asg.clone())
                    .or_default()
                    .extend(nic.ip_addresses.iter().copied());
            }
        }
        let asg_members = members
            .iter()
            .map(|(name, ips)| (name.clone(), AddressSet::from_addresses(ips)))
            .collect();
        listings.asg_members = members
            .into_iter()
            .map(|(name, ips)| (name, without_repeats(ips)))
            .collect();

        TagResolver {
            per_vnet,
            user_tags,
            asg_members,
            listings,
        }
    }

    /// The prefixes a tag or ASG condition stands for at NICs of `vnet`, as
    /// the policy lists them: address spaces one by one, ASG members as
    /// host prefixes. `Internet` is a complement and is listed as the
    /// fewest prefixes covering it. `None` for `*` and plain prefixes,
    /// which stand for themselves.
    pub fn listing(&self, vnet: usize, condition: &AddressMatch) -> Option<Vec<IpNet>> {
        match condition {
            AddressMatch::Any | AddressMatch::Prefixes(_) => None,
            AddressMatch::Tag(name) => {
                Some(match (name.as_str(), self.listings.user_tags.get(name)) {
                    ("VirtualNetwork", _) => self.listings.virtual_network[vnet].clone(),
                    (_, Some(listed)) => listed.clone(),
                    ("AzureLoadBalancer", None) => parse_all(&[AZURE_HOST_IP]),
                    (_, None) => self
                        .tag(vnet, name)
                        .map(AddressSet::to_prefixes)
                        .unwrap_or_default(),
                })
            }
            AddressMatch::ApplicationSecurityGroups(names) => {
                let members = names
                    .iter()
                    .filter_map(|name| self.listings.asg_members.get(name))
                    .flatten()
                    .map(|&address| IpNet::from(address))
                    .collect();
                Some(without_repeats(members))
            }
        }
    }

    pub fn vnet_tags(&self, vnet: usize) -> &VnetTags {
        &self.per_vnet[vnet]
    }

    /// The addresses of one tag for NICs of `vnet`; `None` if the tag is unknown.
    pub fn tag(&self, vnet: usize, name: &str) -> Option<&AddressSet> {
        let tags = &self.per_vnet[vnet];
        match name {
            "VirtualNetwork" => Some(&tags.virtual_network),
            "Internet" => Some(&tags.internet),
            "AzureLoadBalancer" => Some(&tags.azure_load_balancer),
            other => self.user_tags.get(other),
        }
    }

    /// Member addresses of an ASG; `None` if no NIC or declaration names it.
    pub fn asg(&self, name: &str) -> Option<&AddressSet> {
        self.asg_members.get(name)
    }

    /// The addresses an address condition matches for NICs of `vnet`.
    /// Unknown names (possible only in unvalidated policies) are reported.
    pub fn resolve(&self, vnet: usize, condition: &AddressMatch) -> Result<AddressSet, String> {
        match condition {
            AddressMatch::Any => Ok(AddressSet::everything()),
            AddressMatch::Prefixes(prefixes) => Ok(AddressSet::from_prefixes(prefixes)),
            AddressMatch::Tag(name) => self
                .tag(vnet, name)
                .cloned()
                .ok_or_else(|| format!("service tag `{name}` is not defined")),
            AddressMatch::ApplicationSecurityGroups(names) => {
                let mut set = AddressSet::empty();
                for name in names {
                    let members = self.asg(name).ok_or_else(|| {
                        format!("application security group `{name}` is not defined")
                    })?;
                    set = set.union(members);
                }
                Ok(set)
            }
        }
    }
}
