//! The validated estate: the intent a policy file expresses, with names still as
//! the user wrote them. `policy::load` produces it; `compile` turns it into lookup
//! tables. Every value here has passed validation, so later stages may rely on the
//! invariants each type documents.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

/// A whole estate, as one policy file describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// Extra or overridden service tags (`serviceTags`): tag name → prefixes.
    /// `VirtualNetwork` here *adds* prefixes to every VNet's set; `Internet` and
    /// `AzureLoadBalancer` *replace* the built-in definitions.
    pub service_tags: BTreeMap<String, Vec<IpNet>>,
    /// ASGs declared explicitly (`applicationSecurityGroups`); ASGs named by a
    /// NIC's membership list exist without being declared here.
    pub application_security_groups: Vec<String>,
    pub vnets: Vec<VirtualNetwork>,
    pub nics: Vec<NetworkInterface>,
    pub network_security_groups: Vec<NetworkSecurityGroup>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualNetwork {
    pub name: String,
    pub address_space: Vec<IpNet>,
    /// Names of peered VNets (non-transitive; validated to exist).
    pub peerings: Vec<String>,
    pub subnets: Vec<Subnet>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subnet {
    pub name: String,
    /// One or more prefixes (dual stack), each inside the VNet's address space.
    pub address_prefixes: Vec<IpNet>,
    /// Name of the NSG attached to the subnet (validated to exist).
    pub network_security_group: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkInterface {
    pub name: String,
    /// `<vnet>/<subnet>` (validated to exist).
    pub subnet: String,
    /// Each inside one of the subnet's prefixes; unique across the estate.
    pub ip_addresses: Vec<IpAddr>,
    pub network_security_group: Option<String>,
    pub application_security_groups: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkSecurityGroup {
    pub name: String,
    /// User rules in file order (not sorted). The six default rules are implicit.
    pub security_rules: Vec<SecurityRule>,
    /// Azure's `flushConnection`: re-evaluate live flows when rules change.
    pub flush_connection: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityRule {
    pub name: String,
    pub description: Option<String>,
    /// 100..=4096 for user rules; 65000.. for default rules.
    pub priority: u32,
    pub direction: Direction,
    pub access: Access,
    pub protocol: Protocol,
    pub source: AddressMatch,
    pub source_ports: PortMatch,
    pub destination: AddressMatch,
    pub destination_ports: PortMatch,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum Direction {
    Inbound,
    Outbound,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "Inbound",
            Direction::Outbound => "Outbound",
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum Access {
    Allow,
    Deny,
}

impl Access {
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Allow => "Allow",
            Access::Deny => "Deny",
        }
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rule's protocol field. `Any` (`*`) matches every IP protocol number;
/// `Icmp` matches IPv4 ICMP (1) only — ICMPv6 is matched by `Any` alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Any,
    Tcp,
    Udp,
    Icmp,
    Esp,
    Ah,
}

impl Protocol {
    /// The IP protocol number the rule matches, or `None` for `*`.
    pub fn number(self) -> Option<u8> {
        match self {
            Protocol::Any => None,
            Protocol::Tcp => Some(6),
            Protocol::Udp => Some(17),
            Protocol::Icmp => Some(1),
            Protocol::Esp => Some(50),
            Protocol::Ah => Some(51),
        }
    }

    /// Spelling in policy files and ARM exports.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Any => "*",
            Protocol::Tcp => "Tcp",
            Protocol::Udp => "Udp",
            Protocol::Icmp => "Icmp",
            Protocol::Esp => "Esp",
            Protocol::Ah => "Ah",
        }
    }

    /// Parses the policy spelling, case-insensitively (`TCP`, `tcp`, `Tcp`).
    pub fn parse(text: &str) -> Option<Protocol> {
        let lower = text.to_ascii_lowercase();
        Some(match lower.as_str() {
            "*" | "any" | "all" => Protocol::Any,
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            "icmp" => Protocol::Icmp,
            "esp" => Protocol::Esp,
            "ah" => Protocol::Ah,
            _ => return None,
        })
    }

    /// Protocols whose rules carry ports; the others must say `*`.
    pub fn has_ports(self) -> bool {
        matches!(self, Protocol::Any | Protocol::Tcp | Protocol::Udp)
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One side's address condition. Exactly one form per side (validated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddressMatch {
    /// `*`: every IPv4 and IPv6 address.
    Any,
    /// One service tag (`VirtualNetwork`, `Internet`, `AzureLoadBalancer`, or a
    /// tag defined under `serviceTags`), resolved per VNet at compile time.
    Tag(String),
    /// Addresses and CIDRs (single addresses are stored as /32 or /128). Never
    /// empty; one address family per rule.
    Prefixes(Vec<IpNet>),
    /// ASG names; matches the addresses of the member NICs.
    ApplicationSecurityGroups(Vec<String>),
}

/// One side's port condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortMatch {
    /// `*`. Also what a portless packet (ICMP, ESP, …) needs to match.
    Any,
    /// Inclusive ranges, `N` stored as `(N, N)`; never empty, each lo <= hi.
    Ranges(Vec<(u16, u16)>),
}

impl PortMatch {
    /// True when the ranges cover every port 0..=65535: Azure shows `*` as
    /// `0-65535`, so both spellings mean the same, portless packets included.
    pub fn covers_all(&self) -> bool {
        match self {
            PortMatch::Any => true,
            PortMatch::Ranges(ranges) => {
                let mut sorted = ranges.clone();
                sorted.sort_unstable();
                let mut next: u32 = 0;
                for (lo, hi) in sorted {
                    if u32::from(lo) > next {
                        return false;
                    }
                    next = next.max(u32::from(hi) + 1);
                }
                next > 65535
            }
        }
    }
}

/// The six default rules every NSG carries (nsg-semantics.md §3), with their
/// ARM names. They can be overridden by any user rule (priorities <= 4096).
pub fn default_security_rules() -> Vec<SecurityRule> {
    let rule = |name: &str,
                description: &str,
                priority: u32,
                direction: Direction,
                source: AddressMatch,
                destination: AddressMatch,
                access: Access| SecurityRule {
        name: name.to_string(),
        description: Some(description.to_string()),
        priority,
        direction,
        access,
        protocol: Protocol::Any,
        source,
        source_ports: PortMatch::Any,
        destination,
        destination_ports: PortMatch::Any,
    };
    let tag = |name: &str| AddressMatch::Tag(name.to_string());
    vec![
        rule(
            "AllowVnetInBound",
            "Allow inbound traffic from all VMs in VNET",
            65000,
            Direction::Inbound,
            tag("VirtualNetwork"),
            tag("VirtualNetwork"),
            Access::Allow,
        ),
        rule(
            "AllowAzureLoadBalancerInBound",
            "Allow inbound traffic from azure load balancer",
            65001,
            Direction::Inbound,
            tag("AzureLoadBalancer"),
            AddressMatch::Any,
            Access::Allow,
        ),
        rule(
            "DenyAllInBound",
            "Deny all inbound traffic",
            65500,
            Direction::Inbound,
            AddressMatch::Any,
            AddressMatch::Any,
            Access::Deny,
        ),
        rule(
            "AllowVnetOutBound",
            "Allow outbound traffic from all VMs to all VMs in VNET",
            65000,
            Direction::Outbound,
            tag("VirtualNetwork"),
            tag("VirtualNetwork"),
            Access::Allow,
        ),
        rule(
            "AllowInternetOutBound",
            "Allow outbound traffic from all VMs to Internet",
            65001,
            Direction::Outbound,
            AddressMatch::Any,
            tag("Internet"),
            Access::Allow,
        ),
        rule(
            "DenyAllOutBound",
            "Deny all outbound traffic",
            65500,
            Direction::Outbound,
            AddressMatch::Any,
            AddressMatch::Any,
            Access::Deny,
        ),
    ]
}

/// Built-in tag names that need no `serviceTags` entry.
pub const BUILTIN_TAGS: [&str; 3] = ["VirtualNetwork", "Internet", "AzureLoadBalancer"];

impl Policy {
    pub fn vnet(&self, name: &str) -> Option<&VirtualNetwork> {
        self.vnets.iter().find(|v| v.name == name)
    }

    pub fn nsg(&self, name: &str) -> Option<&NetworkSecurityGroup> {
        self.network_security_groups.iter().find(|n| n.name == name)
    }

    pub fn nic(&self, name: &str) -> Option<&NetworkInterface> {
        self.nics.iter().find(|n| n.name == name)
    }

    /// Resolves a `<vnet>/<subnet>` reference.
    pub fn subnet(&self, path: &str) -> Option<(&VirtualNetwork, &Subnet)> {
        let (vnet_name, subnet_name) = path.split_once('/')?;
        let vnet = self.vnet(vnet_name)?;
        let subnet = vnet.subnets.iter().find(|s| s.name == subnet_name)?;
        Some((vnet, subnet))
    }
}
