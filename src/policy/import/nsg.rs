//! Reading one NSG and its rules from any export form into plain values, with
//! Azure's field names kept: protocol, direction and access normalised to their
//! canonical spelling, singular/plural fields settled, ASG ids reduced to names.
//! Also checks the exported default rules against Azure's six standard ones.
//! Cross-resource questions (does that ASG or subnet exist?) are not asked here.

use serde_json::{Map, Value};

use super::error::ImportError;
use super::json::{subnet_path, Node};
use super::{resource_name, Origin};
use crate::policy::model::{default_security_rules, AddressMatch, PortMatch, Protocol};

/// An NSG as read from one export.
#[derive(Debug, Clone)]
pub(crate) struct ParsedNsg {
    pub name: String,
    pub origin: Origin,
    pub flush_connection: bool,
    pub rules: Vec<ParsedRule>,
    /// `<vnet>/<subnet>` of the subnets the NSG says it is attached to.
    pub subnets: Vec<String>,
    /// Names of the NICs the NSG says it is attached to.
    pub network_interfaces: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParsedRule {
    pub name: String,
    pub description: Option<String>,
    pub priority: u64,
    pub direction: &'static str,
    pub access: &'static str,
    pub protocol: &'static str,
    pub source: Side,
    pub destination: Side,
}

/// One side (source or destination) of a rule.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Side {
    pub address: Option<Address>,
    pub ports: Option<OneOrMany>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Address {
    Prefixes(OneOrMany),
    ApplicationSecurityGroups(Vec<String>),
}

/// An Azure singular/plural field pair, settled to the form to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl ParsedNsg {
    pub fn read(node: &Node<'_>, warnings: &mut Vec<String>) -> Result<ParsedNsg, ImportError> {
        let name = resource_name(node)?;
        let flush_connection = match node.field("flushConnection") {
            Some(flag) => flag.boolean()?,
            None => false,
        };
        let mut rules = Vec::new();
        if let Some(list) = node.field("securityRules") {
            for rule in list.items()? {
                let mut rule = ParsedRule::read(&rule)?;
                if rule.settle_portless_ports(&name, warnings) {
                    rules.push(rule);
                }
            }
        }
        if let Some(list) = node.field("defaultSecurityRules") {
            let mut defaults = Vec::new();
            for rule in list.items()? {
                defaults.push(ParsedRule::read(&rule)?);
            }
            compare_default_rules(&name, node.source.file, &defaults, warnings);
        }
        let mut subnets = Vec::new();
        if let Some(list) = node.field("subnets") {
            for subnet in list.items()? {
                let id_node = subnet
                    .key("id")
                    .ok_or_else(|| subnet.invalid("expected a subnet reference with an `id`"))?;
                let id = id_node.string()?;
                subnets.push(subnet_path(&id).ok_or_else(|| {
                    id_node.invalid(format!(
                        "`{id}` is not a subnet id (…/virtualNetworks/<vnet>/subnets/<subnet>)"
                    ))
                })?);
            }
        }
        let network_interfaces = match node.field("networkInterfaces") {
            Some(list) => list.reference_names()?,
            None => Vec::new(),
        };
        Ok(ParsedNsg {
            name,
            origin: Origin::of(node),
            flush_connection,
            rules,
            subnets,
            network_interfaces,
        })
    }

    pub fn to_json(&self) -> Value {
        let mut out = Map::new();
        out.insert("name".into(), self.name.clone().into());
        if self.flush_connection {
            out.insert("flushConnection".into(), true.into());
        }
        out.insert(
            "securityRules".into(),
            self.rules.iter().map(ParsedRule::to_json).collect(),
        );
        Value::Object(out)
    }
}

impl ParsedRule {
    pub fn read(node: &Node<'_>) -> Result<ParsedRule, ImportError> {
        node.object()?;
        let name = resource_name(node)?;
        let description = node.field("description").map(|d| d.string()).transpose()?;
        let priority_node = required(node, "priority")?;
        let priority = priority_node.unsigned()?;
        if priority > u64::from(u32::MAX) {
            return Err(priority_node.invalid(format!("priority {priority} is out of range")));
        }
        let direction_node = required(node, "direction")?;
        let direction = match direction_node.string()?.to_ascii_lowercase().as_str() {
            "inbound" => "Inbound",
            "outbound" => "Outbound",
            other => {
                return Err(direction_node.invalid(format!(
                    "direction `{other}` is neither Inbound nor Outbound"
                )))
            }
        };
        let access_node = required(node, "access")?;
        let access = match access_node.string()?.to_ascii_lowercase().as_str() {
            "allow" => "Allow",
            "deny" => "Deny",
            other => {
                return Err(
                    access_node.invalid(format!("access `{other}` is neither Allow nor Deny"))
                )
            }
        };
        let protocol_node = required(node, "protocol")?;
        let protocol_text = protocol_node.string()?;
        let protocol = Protocol::parse(&protocol_text)
            .ok_or_else(|| {
                protocol_node.invalid(format!(
                    "protocol `{protocol_text}` is not one of Tcp, Udp, Icmp, Esp, Ah, *"
                ))
            })?
            .as_str();
        Ok(ParsedRule {
            name,
            description,
            priority,
            direction,
            access,
            protocol,
            source: Side::read(node, "source")?,
            destination: Side::read(node, "destination")?,
        })
    }

    /// Azure takes port ranges on `Icmp`, `Esp` and `Ah` rules, where
    /// policy-format.md wants `*`. Ranges that cover every port mean `*`
    /// and are written so; a rule whose ports leave some out can never
    /// match a portless packet (nsg-semantics: a port condition matches one
    /// only when it covers every port), so it is left out, with a warning.
    /// Returns whether the rule is kept.
    pub(crate) fn settle_portless_ports(&mut self, nsg: &str, warnings: &mut Vec<String>) -> bool {
        if !matches!(self.protocol, "Icmp" | "Esp" | "Ah") {
            return true;
        }
        for side in [&mut self.source, &mut self.destination] {
            let Some(ports) = &side.ports else { continue };
            let items: Vec<&str> = match ports {
                OneOrMany::One(item) => vec![item.as_str()],
                OneOrMany::Many(items) => items.iter().map(String::as_str).collect(),
            };
            if covers_every_port(&items) {
                side.ports = Some(OneOrMany::One("*".to_string()));
            } else {
                warnings.push(format!(
                    "NSG `{nsg}`, rule `{}`: a `{}` rule with ports `{}` can never match \
                     (its packets have no ports); left out",
                    self.name,
                    self.protocol,
                    items.join(",")
                ));
                return false;
            }
        }
        true
    }

    /// The rule in policy-format.md's shape and field order.
    pub fn to_json(&self) -> Value {
        let mut out = Map::new();
        out.insert("name".into(), self.name.clone().into());
        if let Some(description) = &self.description {
            out.insert("description".into(), description.clone().into());
        }
        out.insert("priority".into(), self.priority.into());
        out.insert("direction".into(), self.direction.into());
        out.insert("access".into(), self.access.into());
        out.insert("protocol".into(), self.protocol.into());
        self.source.write("source", &mut out);
        self.destination.write("destination", &mut out);
        Value::Object(out)
    }

    /// Service tag names the rule uses (not `*`, not addresses).
    pub fn tags(&self) -> impl Iterator<Item = &str> {
        [&self.source, &self.destination]
            .into_iter()
            .filter_map(|side| match &side.address {
                Some(Address::Prefixes(OneOrMany::One(prefix))) if is_tag(prefix) => {
                    Some(prefix.as_str())
                }
                _ => None,
            })
    }

    pub fn application_security_groups_mut(&mut self) -> impl Iterator<Item = &mut String> {
        [&mut self.source, &mut self.destination]
            .into_iter()
            .filter_map(|side| match &mut side.address {
                Some(Address::ApplicationSecurityGroups(names)) => Some(names.iter_mut()),
                _ => None,
            })
            .flatten()
    }
}

impl Side {
    fn read(node: &Node<'_>, side: &str) -> Result<Side, ImportError> {
        let prefixes = one_or_many(
            node,
            &format!("{side}AddressPrefix"),
            &format!("{side}AddressPrefixes"),
        )?;
        let asg_key = format!("{side}ApplicationSecurityGroups");
        let asgs = match node.field(&asg_key) {
            Some(list) => {
                Some((list.reference_names()?, list)).filter(|(names, _)| !names.is_empty())
            }
            None => None,
        };
        let address = match (prefixes, asgs) {
            (Some(_), Some((_, list))) => {
                return Err(list.invalid(format!(
                    "the rule gives both address prefixes and application security groups \
                     for its {side}; Azure allows only one of them"
                )))
            }
            (Some(OneOrMany::One(prefix)), None) => {
                Some(Address::Prefixes(OneOrMany::One(normalise_tag(prefix))))
            }
            (Some(many), None) => Some(Address::Prefixes(many)),
            (None, Some((names, _))) => Some(Address::ApplicationSecurityGroups(names)),
            (None, None) => None,
        };
        let ports = one_or_many(
            node,
            &format!("{side}PortRange"),
            &format!("{side}PortRanges"),
        )?;
        Ok(Side { address, ports })
    }

    fn write(&self, side: &str, out: &mut Map<String, Value>) {
        match &self.address {
            Some(Address::Prefixes(OneOrMany::One(prefix))) => {
                out.insert(format!("{side}AddressPrefix"), prefix.clone().into());
            }
            Some(Address::Prefixes(OneOrMany::Many(prefixes))) => {
                out.insert(format!("{side}AddressPrefixes"), prefixes.clone().into());
            }
            Some(Address::ApplicationSecurityGroups(names)) => {
                out.insert(
                    format!("{side}ApplicationSecurityGroups"),
                    names.clone().into(),
                );
            }
            None => {}
        }
        match &self.ports {
            Some(OneOrMany::One(range)) => {
                out.insert(format!("{side}PortRange"), range.clone().into());
            }
            Some(OneOrMany::Many(ranges)) => {
                out.insert(format!("{side}PortRanges"), ranges.clone().into());
            }
            None => {}
        }
    }
}

/// Whether port items (`*`, `N`, `LO-HI`) together cover 0-65535.
fn covers_every_port(items: &[&str]) -> bool {
    let mut ranges: Vec<(u32, u32)> = Vec::new();
    for item in items {
        let item = item.trim();
        if item == "*" {
            return true;
        }
        let (lo, hi) = item.split_once('-').unwrap_or((item, item));
        match (lo.trim().parse::<u32>(), hi.trim().parse::<u32>()) {
            (Ok(lo), Ok(hi)) if lo <= hi => ranges.push((lo, hi)),
            // Malformed: the loader will say what is wrong with it.
            _ => return false,
        }
    }
    ranges.sort_unstable();
    let mut next = 0u32;
    for (lo, hi) in ranges {
        if lo > next {
            return false;
        }
        next = next.max(hi + 1);
    }
    next > 65535
}

fn required<'a>(node: &Node<'a>, key: &str) -> Result<Node<'a>, ImportError> {
    node.field(key)
        .ok_or_else(|| node.invalid(format!("the rule has no `{key}`")))
}

/// Settles an Azure singular/plural pair: the singular when only it is set
/// (PowerShell writes it as a list, which may hold several items), the plural
/// when it is non-empty. Both set is accepted only when they agree.
pub(crate) fn one_or_many(
    node: &Node<'_>,
    singular: &str,
    plural: &str,
) -> Result<Option<OneOrMany>, ImportError> {
    // An empty string means "not set" (exports and tools write `""` next
    // to the field that is).
    let present = |field: &Node<'_>| -> Result<Vec<String>, ImportError> {
        Ok(field
            .strings()?
            .into_iter()
            .filter(|item| !item.trim().is_empty())
            .collect())
    };
    let one = match node.field(singular) {
        Some(field) => Some((present(&field)?, field)).filter(|(items, _)| !items.is_empty()),
        None => None,
    };
    let many = match node.field(plural) {
        Some(field) => Some(present(&field)?).filter(|items| !items.is_empty()),
        None => None,
    };
    Ok(match (one, many) {
        (None, None) => None,
        (Some((mut items, _)), None) if items.len() == 1 => items.pop().map(OneOrMany::One),
        (Some((items, _)), None) => Some(OneOrMany::Many(items)),
        (None, Some(items)) => Some(OneOrMany::Many(items)),
        (Some((one, field)), Some(many)) => {
            if one.iter().all(|item| many.contains(item)) {
                Some(OneOrMany::Many(many))
            } else {
                return Err(field.invalid(format!(
                    "both `{singular}` and `{plural}` are set, with different values; \
                     Azure allows only one of them"
                )));
            }
        }
    })
}

/// Whether a singular address value names a service tag (`Storage`,
/// `Sql.WestEurope`). Malformed addresses are not tags: the policy loader
/// reports them.
pub(crate) fn is_tag(prefix: &str) -> bool {
    prefix.starts_with(|c: char| c.is_ascii_alphabetic())
        && !prefix.contains(['/', ':'])
        && prefix.parse::<std::net::IpAddr>().is_err()
}

/// Classic-era spellings ARM still accepts, and the built-in tags in any case,
/// mapped to the names nsgd knows.
fn normalise_tag(prefix: String) -> String {
    let builtin = match prefix.to_ascii_lowercase().as_str() {
        "virtualnetwork" | "virtual_network" => "VirtualNetwork",
        "internet" => "Internet",
        "azureloadbalancer" | "azure_loadbalancer" => "AzureLoadBalancer",
        _ => return prefix,
    };
    builtin.to_string()
}

/// Warns when an export's default rules are not Azure's six: nsgd always
/// applies the standard ones, so a difference means the export disagrees with
/// what nsgd will evaluate.
fn compare_default_rules(
    nsg: &str,
    file: &str,
    exported: &[ParsedRule],
    warnings: &mut Vec<String>,
) {
    let standard = default_security_rules();
    for expected in &standard {
        match exported
            .iter()
            .find(|rule| rule.name.eq_ignore_ascii_case(&expected.name))
        {
            None => warnings.push(format!(
                "{file}: NSG {nsg} lacks the default rule {}; nsgd applies Azure's six \
                 standard default rules regardless",
                expected.name
            )),
            Some(rule) => {
                let expected_fields = [
                    ("priority", u64::from(expected.priority).to_string()),
                    ("direction", expected.direction.as_str().to_string()),
                    ("access", expected.access.as_str().to_string()),
                    ("protocol", expected.protocol.as_str().to_string()),
                    ("source", standard_address(&expected.source)),
                    ("sourcePorts", standard_ports(&expected.source_ports)),
                    ("destination", standard_address(&expected.destination)),
                    (
                        "destinationPorts",
                        standard_ports(&expected.destination_ports),
                    ),
                ];
                let actual_fields = [
                    rule.priority.to_string(),
                    rule.direction.to_string(),
                    rule.access.to_string(),
                    rule.protocol.to_string(),
                    exported_address(&rule.source),
                    exported_ports(&rule.source),
                    exported_address(&rule.destination),
                    exported_ports(&rule.destination),
                ];
                let differences: Vec<String> = expected_fields
                    .iter()
                    .zip(&actual_fields)
                    .filter(|((_, want), got)| !want.eq_ignore_ascii_case(got))
                    .map(|((field, want), got)| format!("{field} {got} (standard: {want})"))
                    .collect();
                if !differences.is_empty() {
                    warnings.push(format!(
                        "{file}: NSG {nsg}: the default rule {} differs from Azure's standard \
                         one: {}; nsgd applies the standard rule",
                        expected.name,
                        differences.join(", ")
                    ));
                }
            }
        }
    }
    for rule in exported {
        if !standard
            .iter()
            .any(|s| s.name.eq_ignore_ascii_case(&rule.name))
        {
            warnings.push(format!(
                "{file}: NSG {nsg} has an unknown default rule {}; it is ignored (nsgd applies \
                 Azure's six standard default rules)",
                rule.name
            ));
        }
    }
}

fn standard_address(address: &AddressMatch) -> String {
    match address {
        AddressMatch::Any => "*".to_string(),
        AddressMatch::Tag(tag) => tag.clone(),
        other => format!("{other:?}"),
    }
}

fn standard_ports(ports: &PortMatch) -> String {
    match ports {
        PortMatch::Any => "*".to_string(),
        PortMatch::Ranges(ranges) => format!("{ranges:?}"),
    }
}

fn exported_address(side: &Side) -> String {
    match &side.address {
        Some(Address::Prefixes(OneOrMany::One(prefix)))
            if prefix == "0.0.0.0/0" || prefix == "::/0" =>
        {
            "*".to_string()
        }
        Some(Address::Prefixes(OneOrMany::One(prefix))) => prefix.clone(),
        Some(Address::Prefixes(OneOrMany::Many(prefixes))) => prefixes.join(","),
        Some(Address::ApplicationSecurityGroups(names)) => names.join(","),
        None => "(none)".to_string(),
    }
}

fn exported_ports(side: &Side) -> String {
    match &side.ports {
        Some(OneOrMany::One(range)) if range == "0-65535" => "*".to_string(),
        Some(OneOrMany::One(range)) => range.clone(),
        Some(OneOrMany::Many(ranges)) => ranges.join(","),
        None => "(none)".to_string(),
    }
}
