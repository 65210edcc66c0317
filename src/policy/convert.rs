//! Strict conversion of the document tree into the raw estate: every field
//! checked for type and spelling (unknown fields are errors), every value
//! parsed, and every check that needs only one object (a rule's sides, ports,
//! address families, names) applied. Cross-object checks (uniqueness,
//! references, containment, overlaps, estate-wide limits) are `validate`'s job;
//! the raw objects keep the document positions that job needs.
//!
//! A broken field is reported once and left out (`None`), so later checks skip
//! what depends on it instead of cascading.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use ipnet::IpNet;

use super::document::{Node, NodeKind, Position, Resolved};
use super::error::Collector;
use super::model::{
    Access, AddressMatch, Direction, PortMatch, Protocol, SecurityRule, BUILTIN_TAGS,
};

/// Longest name of a rule, NSG, VNet, subnet, NIC or ASG.
pub const MAX_NAME_LEN: usize = 80;
/// Longest rule description.
pub const MAX_DESCRIPTION_LEN: usize = 140;
/// Addresses plus port ranges on one side of one rule.
pub const MAX_ITEMS_PER_SIDE: usize = 4000;
/// ASGs named on one side of one rule.
pub const MAX_ASGS_PER_SIDE: usize = 10;
/// ASGs one NIC may belong to.
pub const MAX_ASGS_PER_NIC: usize = 20;

/// Where something is in the document.
#[derive(Debug, Clone)]
pub(crate) struct Loc {
    pub path: String,
    pub position: Position,
}

#[derive(Debug, Clone)]
pub(crate) struct Spanned<T> {
    pub value: T,
    pub loc: Loc,
}

#[derive(Debug, Default)]
pub(crate) struct RawPolicy {
    pub service_tags: BTreeMap<String, Vec<IpNet>>,
    /// Explicitly declared ASGs.
    pub asgs: Vec<Spanned<String>>,
    pub vnets: Vec<RawVnet>,
    pub nics: Vec<RawNic>,
    pub nsgs: Vec<RawNsg>,
    pub nsgs_loc: Option<Loc>,
}

#[derive(Debug)]
pub(crate) struct RawVnet {
    pub loc: Loc,
    pub name: Option<Spanned<String>>,
    pub address_space: Vec<Spanned<IpNet>>,
    /// False when an address space entry was broken or missing.
    pub address_space_ok: bool,
    pub peerings: Vec<Spanned<String>>,
    pub subnets: Vec<RawSubnet>,
}

#[derive(Debug)]
pub(crate) struct RawSubnet {
    pub name: Option<Spanned<String>>,
    pub prefixes: Vec<Spanned<IpNet>>,
    pub prefixes_ok: bool,
    pub nsg: Option<Spanned<String>>,
}

#[derive(Debug)]
pub(crate) struct RawNic {
    pub name: Option<Spanned<String>>,
    pub subnet: Option<Spanned<String>>,
    pub ips: Vec<Spanned<IpAddr>>,
    pub nsg: Option<Spanned<String>>,
    pub asgs: Vec<Spanned<String>>,
}

#[derive(Debug)]
pub(crate) struct RawNsg {
    pub loc: Loc,
    pub name: Option<Spanned<String>>,
    pub rules: Vec<RawRule>,
    pub rules_loc: Option<Loc>,
    pub flush_connection: bool,
}

#[derive(Debug)]
pub(crate) struct RawRule {
    pub loc: Loc,
    pub name: Option<Spanned<String>>,
    pub priority: Option<Spanned<u32>>,
    pub direction: Option<Direction>,
    pub source_asgs: Vec<Spanned<String>>,
    pub destination_asgs: Vec<Spanned<String>>,
    /// The whole rule, when every field converted.
    pub rule: Option<SecurityRule>,
}

const TOP_FIELDS: &[&str] = &[
    "serviceTags",
    "applicationSecurityGroups",
    "vnets",
    "nics",
    "networkSecurityGroups",
];
const VNET_FIELDS: &[&str] = &["name", "addressSpace", "peerings", "subnets"];
const SUBNET_FIELDS: &[&str] = &[
    "name",
    "addressPrefix",
    "addressPrefixes",
    "networkSecurityGroup",
];
const NIC_FIELDS: &[&str] = &[
    "name",
    "subnet",
    "ipAddresses",
    "networkSecurityGroup",
    "applicationSecurityGroups",
];
const NSG_FIELDS: &[&str] = &["name", "securityRules", "flushConnection"];
const ASG_FIELDS: &[&str] = &["name"];
const RULE_FIELDS: &[&str] = &[
    "name",
    "description",
    "priority",
    "direction",
    "access",
    "protocol",
    "sourceAddressPrefix",
    "sourceAddressPrefixes",
    "sourceApplicationSecurityGroups",
    "sourcePortRange",
    "sourcePortRanges",
    "destinationAddressPrefix",
    "destinationAddressPrefixes",
    "destinationApplicationSecurityGroups",
    "destinationPortRange",
    "destinationPortRanges",
];

fn child_path(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

fn index_path(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}

/// The fields of one mapping, after the unknown ones were reported.
struct Fields<'n> {
    path: String,
    position: Position,
    entries: &'n [(super::document::Key, Node)],
}

impl<'n> Fields<'n> {
    fn get(&self, name: &str) -> Option<&'n Node> {
        self.entries
            .iter()
            .find(|(k, _)| k.text == name)
            .map(|(_, v)| v)
    }

    /// An optional field; an explicit null counts as absent (exports write them).
    fn optional(&self, name: &str) -> Option<&'n Node> {
        self.get(name).filter(|n| match &n.kind {
            NodeKind::Scalar(s) => s.resolve() != Resolved::Null,
            _ => true,
        })
    }

    fn path(&self, name: &str) -> String {
        child_path(&self.path, name)
    }

    fn loc(&self) -> Loc {
        Loc {
            path: self.path.clone(),
            position: self.position,
        }
    }
}

/// The closest allowed name, for "did you mean" hints.
fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let distance = |a: &str, b: &str| -> usize {
        let a: Vec<char> = a.to_ascii_lowercase().chars().collect();
        let b: Vec<char> = b.to_ascii_lowercase().chars().collect();
        let mut row: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.iter().enumerate() {
            let mut previous = row[0];
            row[0] = i + 1;
            for (j, cb) in b.iter().enumerate() {
                let cost = usize::from(ca != cb);
                let next = (row[j + 1] + 1).min(row[j] + 1).min(previous + cost);
                previous = row[j + 1];
                row[j + 1] = next;
            }
        }
        row[b.len()]
    };
    if word.chars().count() > 64 {
        return None;
    }
    candidates
        .iter()
        .map(|c| (distance(word, c), *c))
        .filter(|(d, c)| *d <= 3.max(c.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Checks a resource name: at most 80 letters, digits, `.`, `-`, `_`, starting
/// with a letter or digit and ending with a letter, digit or `_`.
pub(crate) fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the name is empty".into());
    }
    let length = name.chars().count();
    if length > MAX_NAME_LEN {
        return Err(format!(
            "the name is {length} characters long; at most {MAX_NAME_LEN} are allowed"
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
    {
        return Err(format!(
            "the name `{name}` contains `{}`; names may contain only letters, digits, `.`, `-` and `_`",
            bad.escape_debug()
        ));
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(format!(
            "the name `{name}` must start with a letter or digit"
        ));
    }
    if !name.ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!(
            "the name `{name}` must end with a letter, digit or `_`"
        ));
    }
    Ok(())
}

/// One parsed address item.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum AddressItem {
    Any,
    Net(IpNet),
    /// A name shaped like a service tag (not yet looked up).
    Tag(String),
}

/// Parses `*`, an address, a CIDR prefix (network address only) or a tag name.
pub(crate) fn parse_address(text: &str) -> Result<AddressItem, String> {
    if text == "*" {
        return Ok(AddressItem::Any);
    }
    if text.is_empty() {
        return Err("the address is empty".into());
    }
    if let Some((address, length)) = text.split_once('/') {
        let address: IpAddr = address
            .parse()
            .map_err(|_| format!("`{text}` is not a valid CIDR prefix (bad address part)"))?;
        let max = if address.is_ipv4() { 32 } else { 128 };
        let length: u8 = length
            .parse()
            .ok()
            .filter(|l| *l <= max && !length.starts_with('+'))
            .ok_or_else(|| {
                format!("`{text}` is not a valid CIDR prefix (the length must be 0..={max})")
            })?;
        let net = IpNet::new(address, length)
            .map_err(|_| format!("`{text}` is not a valid CIDR prefix"))?;
        let network = net.trunc();
        if network != net {
            return Err(format!(
                "`{text}` has host bits set; a prefix must be a network address: use `{network}`"
            ));
        }
        return Ok(AddressItem::Net(network));
    }
    if let Ok(address) = text.parse::<IpAddr>() {
        return Ok(AddressItem::Net(IpNet::from(address)));
    }
    if let Some((a, b)) = text.split_once('-') {
        if a.trim().parse::<IpAddr>().is_ok() && b.trim().parse::<IpAddr>().is_ok() {
            return Err(format!(
                "`{text}` is an address range; NSG rules take single addresses and CIDR \
                 prefixes only (hyphenated ranges are Azure Firewall syntax)"
            ));
        }
    }
    if text.contains([',', ' ', ';']) {
        return Err(format!(
            "`{text}` holds several items; give one address, prefix or tag per entry"
        ));
    }
    let tag_shaped = text.starts_with(|c: char| c.is_ascii_alphabetic())
        && !text.contains(':')
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if tag_shaped {
        Ok(AddressItem::Tag(text.to_string()))
    } else {
        Err(format!(
            "`{text}` is not a valid IP address, CIDR prefix or service tag name"
        ))
    }
}

/// Parses `N` or `N-M` (not `*`).
pub(crate) fn parse_port_range(text: &str) -> Result<(u16, u16), String> {
    let number = |part: &str| -> Result<u16, String> {
        if part.is_empty() || !part.chars().all(|c| c.is_ascii_digit()) {
            return Err(format!(
                "`{text}` is not a port range; expected `*`, `N` or `N-M` with ports 0..=65535"
            ));
        }
        part.parse::<u16>()
            .map_err(|_| format!("port `{part}` in `{text}` is out of range 0..=65535"))
    };
    if text.contains(',') {
        return Err(format!(
            "`{text}` holds several port ranges; give one per entry of the plural field"
        ));
    }
    match text.split_once('-') {
        None => number(text).map(|p| (p, p)),
        Some((lo, hi)) => {
            let (lo, hi) = (number(lo)?, number(hi)?);
            if lo > hi {
                Err(format!(
                    "port range `{text}` is reversed; the start must not exceed the end"
                ))
            } else {
                Ok((lo, hi))
            }
        }
    }
}

/// Converts a whole document (`None` = empty document).
pub(crate) fn convert(root: Option<&Node>, errors: &mut Collector) -> RawPolicy {
    let mut cx = Cx {
        errors,
        tags: BUILTIN_TAGS
            .iter()
            .map(|t| (t.to_ascii_lowercase(), t.to_string()))
            .collect(),
    };
    let mut raw = RawPolicy::default();
    let Some(root) = root else {
        return raw;
    };
    if let NodeKind::Scalar(s) = &root.kind {
        if s.resolve() == Resolved::Null {
            return raw;
        }
    }
    let Some(top) = cx.mapping(root, "", "the policy document", TOP_FIELDS) else {
        return raw;
    };
    if let Some(node) = top.optional("serviceTags") {
        raw.service_tags = cx.service_tags(node, &top.path("serviceTags"));
    }
    if let Some(node) = top.optional("applicationSecurityGroups") {
        raw.asgs = cx.declared_asgs(node, &top.path("applicationSecurityGroups"));
    }
    if let Some(node) = top.optional("vnets") {
        let path = top.path("vnets");
        if let Some(items) = cx.list(node, &path) {
            raw.vnets = items
                .iter()
                .enumerate()
                .filter_map(|(i, n)| cx.vnet(n, &index_path(&path, i)))
                .collect();
        }
    }
    if let Some(node) = top.optional("nics") {
        let path = top.path("nics");
        if let Some(items) = cx.list(node, &path) {
            raw.nics = items
                .iter()
                .enumerate()
                .filter_map(|(i, n)| cx.nic(n, &index_path(&path, i)))
                .collect();
        }
    }
    if let Some(node) = top.optional("networkSecurityGroups") {
        let path = top.path("networkSecurityGroups");
        if let Some(items) = cx.list(node, &path) {
            raw.nsgs_loc = Some(Loc {
                path: path.clone(),
                position: node.position,
            });
            raw.nsgs = items
                .iter()
                .enumerate()
                .filter_map(|(i, n)| cx.nsg(n, &index_path(&path, i)))
                .collect();
        }
    }
    raw
}

/// One side of a rule, converted.
struct Side {
    address: Option<AddressMatch>,
    /// Positions of the prefix items, for the address family check.
    prefix_locs: Vec<Spanned<IpNet>>,
    asgs: Vec<Spanned<String>>,
    ports: Option<(PortMatch, Loc)>,
}

struct Cx<'e> {
    errors: &'e mut Collector,
    /// Lower-cased tag name → spelling to store (built-ins and `serviceTags`).
    tags: HashMap<String, String>,
}

impl Cx<'_> {
    fn error(&mut self, path: &str, position: Position, message: String) {
        self.errors.push(path, Some(position), message);
    }

    fn mapping<'n>(
        &mut self,
        node: &'n Node,
        path: &str,
        what: &str,
        allowed: &[&str],
    ) -> Option<Fields<'n>> {
        let NodeKind::Mapping(entries) = &node.kind else {
            self.error(
                path,
                node.position,
                format!("expected {what} as a mapping, found {}", node.describe()),
            );
            return None;
        };
        for (key, _) in entries {
            if !allowed.contains(&key.text.as_str()) {
                // Suggestions cost a little each; a hostile file may have millions.
                let hint = (self.errors.count() < 1000)
                    .then(|| closest(&key.text, allowed))
                    .flatten()
                    .map(|c| format!("; did you mean `{c}`?"))
                    .unwrap_or_default();
                let expected = allowed
                    .iter()
                    .map(|a| format!("`{a}`"))
                    .collect::<Vec<_>>()
                    .join(", ");
                self.error(
                    &child_path(path, &key.text),
                    key.position,
                    format!(
                        "unknown field `{}`; expected one of {expected}{hint}",
                        key.text.escape_debug()
                    ),
                );
            }
        }
        Some(Fields {
            path: path.to_string(),
            position: node.position,
            entries,
        })
    }

    fn list<'n>(&mut self, node: &'n Node, path: &str) -> Option<&'n [Node]> {
        match &node.kind {
            NodeKind::Sequence(items) => Some(items),
            _ => {
                self.error(
                    path,
                    node.position,
                    format!("expected a list, found {}", node.describe()),
                );
                None
            }
        }
    }

    fn string(&mut self, node: &Node, path: &str) -> Option<String> {
        if let NodeKind::Scalar(s) = &node.kind {
            if let Resolved::Str(text) = s.resolve() {
                return Some(text.to_string());
            }
        }
        self.error(
            path,
            node.position,
            format!("expected a string, found {}", node.describe()),
        );
        None
    }

    fn required<'n>(&mut self, fields: &Fields<'n>, name: &str, what: &str) -> Option<&'n Node> {
        let node = fields.get(name);
        if node.is_none() {
            self.error(
                &fields.path,
                fields.position,
                format!("{what} is missing the required field `{name}`"),
            );
        }
        node
    }

    /// A resource name field (required, checked for syntax).
    fn name(&mut self, fields: &Fields, what: &str) -> Option<Spanned<String>> {
        let node = self.required(fields, "name", what)?;
        let path = fields.path("name");
        self.name_value(node, &path)
    }

    fn name_value(&mut self, node: &Node, path: &str) -> Option<Spanned<String>> {
        let text = self.string(node, path)?;
        if let Err(message) = check_name(&text) {
            self.error(path, node.position, message);
            return None;
        }
        Some(Spanned {
            value: text,
            loc: Loc {
                path: path.to_string(),
                position: node.position,
            },
        })
    }

    /// A reference to a named object (checked to exist by `validate`).
    fn reference(&mut self, node: &Node, path: &str) -> Option<Spanned<String>> {
        let text = self.string(node, path)?;
        if text.is_empty() {
            self.error(path, node.position, "the name is empty".into());
            return None;
        }
        Some(Spanned {
            value: text,
            loc: Loc {
                path: path.to_string(),
                position: node.position,
            },
        })
    }

    fn name_list(&mut self, node: &Node, path: &str) -> Vec<Spanned<String>> {
        let Some(items) = self.list(node, path) else {
            return Vec::new();
        };
        items
            .iter()
            .enumerate()
            .filter_map(|(i, n)| self.name_value(n, &index_path(path, i)))
            .collect()
    }

    /// A list of prefixes (or single addresses, stored as host prefixes); no
    /// tags, no `*`. The flag is false when an item was broken.
    fn prefix_list(&mut self, node: &Node, path: &str) -> (Vec<Spanned<IpNet>>, bool) {
        let Some(items) = self.list(node, path) else {
            return (Vec::new(), false);
        };
        let mut ok = true;
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let item_path = index_path(path, i);
            match self.prefix(item, &item_path) {
                Some(net) => out.push(net),
                None => ok = false,
            }
        }
        (out, ok)
    }

    fn prefix(&mut self, node: &Node, path: &str) -> Option<Spanned<IpNet>> {
        let text = self.string(node, path)?;
        let loc = Loc {
            path: path.to_string(),
            position: node.position,
        };
        match parse_address(&text) {
            Ok(AddressItem::Net(net)) => Some(Spanned { value: net, loc }),
            Ok(_) => {
                self.error(
                    path,
                    node.position,
                    format!("`{text}` is not an IP address or CIDR prefix"),
                );
                None
            }
            Err(message) => {
                self.error(path, node.position, message);
                None
            }
        }
    }

    fn service_tags(&mut self, node: &Node, path: &str) -> BTreeMap<String, Vec<IpNet>> {
        let mut out = BTreeMap::new();
        let NodeKind::Mapping(entries) = &node.kind else {
            self.error(
                path,
                node.position,
                format!(
                    "expected `serviceTags` as a mapping of tag names to prefix lists, found {}",
                    node.describe()
                ),
            );
            return out;
        };
        let mut seen: HashMap<String, Position> = HashMap::new();
        for (key, value) in entries {
            let tag_path = child_path(path, &key.text);
            let lower = key.text.to_ascii_lowercase();
            let shaped = matches!(parse_address(&key.text), Ok(AddressItem::Tag(_)));
            if !shaped {
                self.error(
                    &tag_path,
                    key.position,
                    format!(
                        "`{}` is not a valid service tag name (letters, digits, `.`, `-`, `_`, \
                         starting with a letter)",
                        key.text.escape_debug()
                    ),
                );
            } else if let Some(first) = seen.get(&lower) {
                self.error(
                    &tag_path,
                    key.position,
                    format!(
                        "service tag `{}` is defined twice (tag names are case-insensitive; \
                         first at line {}, column {})",
                        key.text, first.0, first.1
                    ),
                );
            }
            let (prefixes, _) = self.prefix_list(value, &tag_path);
            if !shaped || seen.contains_key(&lower) {
                continue;
            }
            seen.insert(lower.clone(), key.position);
            let name = BUILTIN_TAGS
                .iter()
                .find(|b| b.eq_ignore_ascii_case(&key.text))
                .map(|b| b.to_string())
                .unwrap_or_else(|| key.text.clone());
            self.tags.insert(lower, name.clone());
            out.insert(name, prefixes.into_iter().map(|p| p.value).collect());
        }
        out
    }

    fn declared_asgs(&mut self, node: &Node, path: &str) -> Vec<Spanned<String>> {
        let Some(items) = self.list(node, path) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let item_path = index_path(path, i);
            let name = if let NodeKind::Mapping(_) = item.kind {
                self.mapping(
                    item,
                    &item_path,
                    "an application security group",
                    ASG_FIELDS,
                )
                .and_then(|f| self.name(&f, "the application security group"))
            } else {
                self.name_value(item, &item_path)
            };
            out.extend(name);
        }
        out
    }

    fn vnet(&mut self, node: &Node, path: &str) -> Option<RawVnet> {
        let f = self.mapping(node, path, "a virtual network", VNET_FIELDS)?;
        let name = self.name(&f, "the virtual network");
        let mut address_space = Vec::new();
        let mut address_space_ok = false;
        if let Some(n) = self.required(&f, "addressSpace", "the virtual network") {
            let p = f.path("addressSpace");
            (address_space, address_space_ok) = self.prefix_list(n, &p);
            if address_space_ok && address_space.is_empty() {
                self.error(
                    &p,
                    n.position,
                    "`addressSpace` is empty; a virtual network needs at least one prefix".into(),
                );
                address_space_ok = false;
            }
        }
        let peerings = match f.optional("peerings") {
            Some(n) => {
                let p = f.path("peerings");
                match self.list(n, &p) {
                    Some(items) => items
                        .iter()
                        .enumerate()
                        .filter_map(|(i, n)| self.reference(n, &index_path(&p, i)))
                        .collect(),
                    None => Vec::new(),
                }
            }
            None => Vec::new(),
        };
        let mut subnets = Vec::new();
        if let Some(n) = f.optional("subnets") {
            let p = f.path("subnets");
            if let Some(items) = self.list(n, &p) {
                subnets = items
                    .iter()
                    .enumerate()
                    .filter_map(|(i, n)| self.subnet(n, &index_path(&p, i)))
                    .collect();
            }
        }
        Some(RawVnet {
            loc: f.loc(),
            name,
            address_space,
            address_space_ok,
            peerings,
            subnets,
        })
    }

    fn subnet(&mut self, node: &Node, path: &str) -> Option<RawSubnet> {
        let f = self.mapping(node, path, "a subnet", SUBNET_FIELDS)?;
        let name = self.name(&f, "the subnet");
        let mut prefixes = Vec::new();
        let mut prefixes_ok = false;
        match (f.get("addressPrefix"), f.get("addressPrefixes")) {
            (Some(_), Some(plural)) => self.error(
                &f.path("addressPrefixes"),
                plural.position,
                "give either `addressPrefix` or `addressPrefixes`, not both".into(),
            ),
            (None, None) => self.error(
                path,
                f.position,
                "the subnet is missing its prefix: give `addressPrefix` or `addressPrefixes`"
                    .into(),
            ),
            (Some(single), None) => {
                if let Some(net) = self.prefix(single, &f.path("addressPrefix")) {
                    prefixes.push(net);
                    prefixes_ok = true;
                }
            }
            (None, Some(plural)) => {
                let p = f.path("addressPrefixes");
                (prefixes, prefixes_ok) = self.prefix_list(plural, &p);
                if prefixes_ok && prefixes.is_empty() {
                    self.error(
                        &p,
                        plural.position,
                        "`addressPrefixes` is empty; a subnet needs at least one prefix".into(),
                    );
                    prefixes_ok = false;
                }
            }
        }
        let nsg = f
            .optional("networkSecurityGroup")
            .and_then(|n| self.reference(n, &f.path("networkSecurityGroup")));
        Some(RawSubnet {
            name,
            prefixes,
            prefixes_ok,
            nsg,
        })
    }

    fn nic(&mut self, node: &Node, path: &str) -> Option<RawNic> {
        let f = self.mapping(node, path, "a network interface", NIC_FIELDS)?;
        let name = self.name(&f, "the network interface");
        let subnet = self
            .required(&f, "subnet", "the network interface")
            .and_then(|n| self.reference(n, &f.path("subnet")));
        let mut ips = Vec::new();
        if let Some(n) = self.required(&f, "ipAddresses", "the network interface") {
            let p = f.path("ipAddresses");
            if let Some(items) = self.list(n, &p) {
                if items.is_empty() {
                    self.error(
                        &p,
                        n.position,
                        "`ipAddresses` is empty; a network interface needs at least one address"
                            .into(),
                    );
                }
                for (i, item) in items.iter().enumerate() {
                    let item_path = index_path(&p, i);
                    let Some(text) = self.string(item, &item_path) else {
                        continue;
                    };
                    match text.parse::<IpAddr>() {
                        Ok(ip) => ips.push(Spanned {
                            value: ip,
                            loc: Loc {
                                path: item_path,
                                position: item.position,
                            },
                        }),
                        Err(_) => self.error(
                            &item_path,
                            item.position,
                            format!(
                                "`{text}` is not an IP address (a NIC lists single \
                                 addresses, not prefixes)"
                            ),
                        ),
                    }
                }
            }
        }
        let nsg = f
            .optional("networkSecurityGroup")
            .and_then(|n| self.reference(n, &f.path("networkSecurityGroup")));
        let mut asgs = Vec::new();
        if let Some(n) = f.optional("applicationSecurityGroups") {
            let p = f.path("applicationSecurityGroups");
            asgs = self.name_list(n, &p);
            if asgs.len() > MAX_ASGS_PER_NIC {
                self.error(
                    &p,
                    n.position,
                    format!(
                        "the network interface is in {} application security groups; at most \
                         {MAX_ASGS_PER_NIC} are allowed",
                        asgs.len()
                    ),
                );
            }
        }
        Some(RawNic {
            name,
            subnet,
            ips,
            nsg,
            asgs,
        })
    }

    fn nsg(&mut self, node: &Node, path: &str) -> Option<RawNsg> {
        let f = self.mapping(node, path, "a network security group", NSG_FIELDS)?;
        let name = self.name(&f, "the network security group");
        let flush_connection = match f.optional("flushConnection") {
            None => false,
            Some(n) => match &n.kind {
                NodeKind::Scalar(s) => match s.resolve() {
                    Resolved::Bool(b) => b,
                    _ => {
                        self.error(
                            &f.path("flushConnection"),
                            n.position,
                            format!("expected a boolean, found {}", n.describe()),
                        );
                        false
                    }
                },
                _ => {
                    self.error(
                        &f.path("flushConnection"),
                        n.position,
                        format!("expected a boolean, found {}", n.describe()),
                    );
                    false
                }
            },
        };
        let mut rules = Vec::new();
        let mut rules_loc = None;
        if let Some(n) = f.optional("securityRules") {
            let p = f.path("securityRules");
            if let Some(items) = self.list(n, &p) {
                rules_loc = Some(Loc {
                    path: p.clone(),
                    position: n.position,
                });
                rules = items
                    .iter()
                    .enumerate()
                    .filter_map(|(i, n)| self.rule(n, &index_path(&p, i)))
                    .collect();
            }
        }
        Some(RawNsg {
            loc: f.loc(),
            name,
            rules,
            rules_loc,
            flush_connection,
        })
    }

    /// A string field holding one of a few values, case-insensitively.
    fn choice<T: Copy>(
        &mut self,
        f: &Fields,
        field: &str,
        parse: impl Fn(&str) -> Option<T>,
        expected: &str,
    ) -> Option<T> {
        let node = self.required(f, field, "the rule")?;
        let path = f.path(field);
        let text = self.string(node, &path)?;
        let value = parse(&text);
        if value.is_none() {
            self.error(
                &path,
                node.position,
                format!("`{text}` is not a valid {field}; expected {expected}"),
            );
        }
        value
    }

    fn rule(&mut self, node: &Node, path: &str) -> Option<RawRule> {
        let f = self.mapping(node, path, "a security rule", RULE_FIELDS)?;
        let name = self.name(&f, "the rule");
        let description = f.optional("description").and_then(|n| {
            let p = f.path("description");
            let text = self.string(n, &p)?;
            let length = text.chars().count();
            if length > MAX_DESCRIPTION_LEN {
                self.error(
                    &p,
                    n.position,
                    format!(
                        "the description is {length} characters long; at most \
                         {MAX_DESCRIPTION_LEN} are allowed"
                    ),
                );
            }
            Some(text)
        });
        let priority = self.priority(&f);
        let direction = self.choice(
            &f,
            "direction",
            |t| match t.to_ascii_lowercase().as_str() {
                "inbound" => Some(Direction::Inbound),
                "outbound" => Some(Direction::Outbound),
                _ => None,
            },
            "`Inbound` or `Outbound`",
        );
        let access = self.choice(
            &f,
            "access",
            |t| match t.to_ascii_lowercase().as_str() {
                "allow" => Some(Access::Allow),
                "deny" => Some(Access::Deny),
                _ => None,
            },
            "`Allow` or `Deny`",
        );
        let protocol = self.choice(
            &f,
            "protocol",
            Protocol::parse,
            "`Tcp`, `Udp`, `Icmp`, `Esp`, `Ah` or `*`",
        );
        let source = self.side(&f, "source");
        let destination = self.side(&f, "destination");

        let mut complete = true;
        // Address families: one per rule, across both sides.
        let mut first: Option<&Spanned<IpNet>> = None;
        for item in source.prefix_locs.iter().chain(&destination.prefix_locs) {
            match first {
                None => first = Some(item),
                Some(f0) if f0.value.addr().is_ipv4() != item.value.addr().is_ipv4() => {
                    let family = |n: &IpNet| if n.addr().is_ipv4() { "IPv4" } else { "IPv6" };
                    let message = format!(
                        "the rule mixes IPv4 and IPv6: `{}` is {} but `{}` ({}) is {}; \
                         use one address family per rule",
                        item.value,
                        family(&item.value),
                        f0.value,
                        f0.loc.path,
                        family(&f0.value)
                    );
                    self.error(&item.loc.path, item.loc.position, message);
                    complete = false;
                    break;
                }
                Some(_) => {}
            }
        }
        if let Some(protocol) = protocol {
            if !protocol.has_ports() {
                for (ports, loc) in [&source.ports, &destination.ports].into_iter().flatten() {
                    // policy-format.md: `*` itself, not a range that
                    // happens to cover every port.
                    if *ports != PortMatch::Any {
                        self.error(
                            &loc.path,
                            loc.position,
                            format!("`{protocol}` rules have no ports; the port range must be `*`"),
                        );
                        complete = false;
                    }
                }
            }
        }

        let rule = match (
            &name,
            &priority,
            direction,
            access,
            protocol,
            source.address,
            source.ports,
            destination.address,
            destination.ports,
        ) {
            (
                Some(name),
                Some(priority),
                Some(direction),
                Some(access),
                Some(protocol),
                Some(source_address),
                Some((source_ports, _)),
                Some(destination_address),
                Some((destination_ports, _)),
            ) if complete => Some(SecurityRule {
                name: name.value.clone(),
                description,
                priority: priority.value,
                direction,
                access,
                protocol,
                source: source_address,
                source_ports,
                destination: destination_address,
                destination_ports,
            }),
            _ => None,
        };
        Some(RawRule {
            loc: f.loc(),
            name,
            priority,
            direction,
            source_asgs: source.asgs,
            destination_asgs: destination.asgs,
            rule,
        })
    }

    fn priority(&mut self, f: &Fields) -> Option<Spanned<u32>> {
        let node = self.required(f, "priority", "the rule")?;
        let path = f.path("priority");
        let range = "a priority must be an integer from 100 to 4096";
        let value = match &node.kind {
            NodeKind::Scalar(s) => match s.resolve() {
                Resolved::Int(Some(v)) if (100..=4096).contains(&v) => Some(v as u32),
                Resolved::Int(_) => {
                    self.error(
                        &path,
                        node.position,
                        format!("priority `{}` is out of range; {range}", s.text),
                    );
                    return None;
                }
                Resolved::Float => {
                    self.error(
                        &path,
                        node.position,
                        format!("priority `{}` is not an integer; {range}", s.text),
                    );
                    return None;
                }
                _ => None,
            },
            _ => None,
        };
        if value.is_none() {
            self.error(
                &path,
                node.position,
                format!(
                    "expected an integer priority, found {}; {range}",
                    node.describe()
                ),
            );
        }
        value.map(|value| Spanned {
            value,
            loc: Loc {
                path,
                position: node.position,
            },
        })
    }

    /// A list field that is present but empty (`[]` or null) counts as absent
    /// when the side is given some other way (Azure exports carry such lists).
    fn is_empty_field(node: &Node) -> bool {
        match &node.kind {
            NodeKind::Sequence(items) => items.is_empty(),
            NodeKind::Scalar(s) => matches!(s.resolve(), Resolved::Null | Resolved::Str("")),
            NodeKind::Mapping(_) => false,
        }
    }

    fn side(&mut self, f: &Fields, side: &str) -> Side {
        let single_name = format!("{side}AddressPrefix");
        let plural_name = format!("{side}AddressPrefixes");
        let asg_name = format!("{side}ApplicationSecurityGroups");
        let given = |name: &str| f.get(name).filter(|n| !Self::is_empty_field(n));
        let single = given(&single_name);
        let plural = given(&plural_name);
        let asg = given(&asg_name);
        let mut out = Side {
            address: None,
            prefix_locs: Vec::new(),
            asgs: Vec::new(),
            ports: None,
        };
        let mut ok = true;
        let mut address = None;
        let mut item_count = 0usize;

        if let Some(node) = single {
            let p = f.path(&single_name);
            address = self.single_address(node, &p, &plural_name, &mut out.prefix_locs);
            ok &= address.is_some();
            item_count += 1;
        }
        if let Some(node) = plural {
            let p = f.path(&plural_name);
            if single.is_some() {
                self.error(
                    &p,
                    node.position,
                    format!("give either `{single_name}` or `{plural_name}`, not both"),
                );
                ok = false;
            }
            if let Some(items) = self.list(node, &p) {
                item_count += items.len();
                let mut nets = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    let item_path = index_path(&p, i);
                    let Some(text) = self.string(item, &item_path) else {
                        ok = false;
                        continue;
                    };
                    match parse_address(&text) {
                        Ok(AddressItem::Net(net)) => {
                            nets.push(net);
                            out.prefix_locs.push(Spanned {
                                value: net,
                                loc: Loc {
                                    path: item_path,
                                    position: item.position,
                                },
                            });
                        }
                        Ok(AddressItem::Any) => {
                            self.error(
                                &item_path,
                                item.position,
                                format!(
                                    "`*` is only allowed in the singular field `{single_name}`"
                                ),
                            );
                            ok = false;
                        }
                        Ok(AddressItem::Tag(tag)) => {
                            self.error(
                                &item_path,
                                item.position,
                                format!(
                                    "`{tag}` looks like a service tag; tags are only allowed in \
                                     the singular field `{single_name}`"
                                ),
                            );
                            ok = false;
                        }
                        Err(message) => {
                            self.error(&item_path, item.position, message);
                            ok = false;
                        }
                    }
                }
                address = Some(AddressMatch::Prefixes(nets));
            } else {
                ok = false;
            }
        }
        if let Some(node) = asg {
            let p = f.path(&asg_name);
            if single.is_some() || plural.is_some() {
                self.error(
                    &p,
                    node.position,
                    format!(
                        "give either `{single_name}`/`{plural_name}` or `{asg_name}` on the \
                         {side} side, not both"
                    ),
                );
                ok = false;
            }
            if let Some(items) = self.list(node, &p) {
                let before = items.len();
                out.asgs = items
                    .iter()
                    .enumerate()
                    .filter_map(|(i, n)| self.name_value(n, &index_path(&p, i)))
                    .collect();
                ok &= out.asgs.len() == before;
                if before > MAX_ASGS_PER_SIDE {
                    self.error(
                        &p,
                        node.position,
                        format!(
                            "the {side} side names {before} application security groups; at \
                             most {MAX_ASGS_PER_SIDE} are allowed"
                        ),
                    );
                    ok = false;
                }
                address = Some(AddressMatch::ApplicationSecurityGroups(
                    out.asgs.iter().map(|a| a.value.clone()).collect(),
                ));
            } else {
                ok = false;
            }
        }
        if single.is_none() && plural.is_none() && asg.is_none() {
            ok = false;
            let empty = [&single_name, &plural_name, &asg_name]
                .into_iter()
                .find_map(|n| f.get(n).map(|node| (n, node)));
            match empty {
                Some((field, node)) => self.error(
                    &f.path(field),
                    node.position,
                    format!(
                        "`{field}` is empty and the {side} side has no other address condition; \
                         give `{single_name}`, `{plural_name}` or `{asg_name}`"
                    ),
                ),
                None => self.error(
                    &f.path,
                    f.position,
                    format!(
                        "the rule has no {side} address: give `{single_name}`, \
                         `{plural_name}` or `{asg_name}`"
                    ),
                ),
            }
        }

        // Ports.
        let single_port = format!("{side}PortRange");
        let plural_port = format!("{side}PortRanges");
        let sp = f.get(&single_port).filter(|n| !Self::is_empty_field(n));
        let pp = f.get(&plural_port).filter(|n| !Self::is_empty_field(n));
        let mut ports = None;
        let mut ports_ok = true;
        if let Some(node) = sp {
            let p = f.path(&single_port);
            match self.port_item(node, &p, true) {
                Some(None) => ports = Some((PortMatch::Any, p, node.position)),
                Some(Some(range)) => {
                    ports = Some((PortMatch::Ranges(vec![range]), p, node.position));
                }
                None => ports_ok = false,
            }
            item_count += 1;
        }
        if let Some(node) = pp {
            let p = f.path(&plural_port);
            if sp.is_some() {
                self.error(
                    &p,
                    node.position,
                    format!("give either `{single_port}` or `{plural_port}`, not both"),
                );
                ports_ok = false;
            }
            if let Some(items) = self.list(node, &p) {
                item_count += items.len();
                let mut ranges = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    match self.port_item(item, &index_path(&p, i), false) {
                        Some(Some(range)) => ranges.push(range),
                        _ => ports_ok = false,
                    }
                }
                ports = Some((PortMatch::Ranges(ranges), p, node.position));
            } else {
                ports_ok = false;
            }
        }
        if sp.is_none() && pp.is_none() {
            ports_ok = false;
            let empty = [&single_port, &plural_port]
                .into_iter()
                .find_map(|n| f.get(n).map(|node| (n, node)));
            match empty {
                Some((field, node)) => self.error(
                    &f.path(field),
                    node.position,
                    format!("`{field}` is empty; give `{single_port}` or `{plural_port}`"),
                ),
                None => self.error(
                    &f.path,
                    f.position,
                    format!(
                        "the rule has no {side} port condition: give `{single_port}` or \
                         `{plural_port}` (`*` for any port)"
                    ),
                ),
            }
        }

        if item_count > MAX_ITEMS_PER_SIDE {
            self.error(
                &f.path,
                f.position,
                format!(
                    "the {side} side lists {item_count} addresses and port ranges; at most \
                     {MAX_ITEMS_PER_SIDE} are allowed per side"
                ),
            );
            ok = false;
        }
        if ok {
            out.address = address;
        }
        if ports_ok {
            out.ports = ports.map(|(m, path, position)| (m, Loc { path, position }));
        }
        out
    }

    /// The singular address field: `*`, an address, a CIDR or one tag.
    fn single_address(
        &mut self,
        node: &Node,
        path: &str,
        plural_name: &str,
        prefix_locs: &mut Vec<Spanned<IpNet>>,
    ) -> Option<AddressMatch> {
        if let NodeKind::Sequence(_) = node.kind {
            self.error(
                path,
                node.position,
                format!("expected one address, prefix or tag, found a list; use `{plural_name}` for several"),
            );
            return None;
        }
        let text = self.string(node, path)?;
        match parse_address(&text) {
            Ok(AddressItem::Any) => Some(AddressMatch::Any),
            Ok(AddressItem::Net(net)) => {
                prefix_locs.push(Spanned {
                    value: net,
                    loc: Loc {
                        path: path.to_string(),
                        position: node.position,
                    },
                });
                Some(AddressMatch::Prefixes(vec![net]))
            }
            Ok(AddressItem::Tag(tag)) => match self.tags.get(&tag.to_ascii_lowercase()) {
                Some(name) => Some(AddressMatch::Tag(name.clone())),
                None => {
                    self.error(
                        path,
                        node.position,
                        format!(
                            "unknown service tag `{tag}`; define it under `serviceTags` \
                             (built in: `VirtualNetwork`, `Internet`, `AzureLoadBalancer`)"
                        ),
                    );
                    None
                }
            },
            Err(message) => {
                let message = if text.contains(',') {
                    format!("{message}; use `{plural_name}` for a list")
                } else {
                    message
                };
                self.error(path, node.position, message);
                None
            }
        }
    }

    /// A port item: `Some(None)` is `*` (only when allowed), `Some(Some(r))` a range.
    fn port_item(
        &mut self,
        node: &Node,
        path: &str,
        star_allowed: bool,
    ) -> Option<Option<(u16, u16)>> {
        let text = match &node.kind {
            NodeKind::Scalar(s) => match s.resolve() {
                Resolved::Int(Some(v)) => {
                    if (0..=65535).contains(&v) {
                        return Some(Some((v as u16, v as u16)));
                    }
                    self.error(
                        path,
                        node.position,
                        format!("port `{}` is out of range 0..=65535", s.text),
                    );
                    return None;
                }
                Resolved::Int(None) => {
                    self.error(
                        path,
                        node.position,
                        format!("port `{}` is out of range 0..=65535", s.text),
                    );
                    return None;
                }
                Resolved::Str(t) => t.to_string(),
                _ => {
                    self.error(
                        path,
                        node.position,
                        format!(
                            "expected a port range (`*`, `N` or `N-M`), found {}",
                            node.describe()
                        ),
                    );
                    return None;
                }
            },
            _ => {
                let hint = if star_allowed {
                    "; use the plural field for a list"
                } else {
                    ""
                };
                self.error(
                    path,
                    node.position,
                    format!(
                        "expected a port range (`*`, `N` or `N-M`), found {}{hint}",
                        node.describe()
                    ),
                );
                return None;
            }
        };
        if text == "*" {
            if star_allowed {
                return Some(None);
            }
            self.error(
                path,
                node.position,
                "`*` is only allowed in the singular port field".into(),
            );
            return None;
        }
        match parse_port_range(&text) {
            Ok(range) => Some(Some(range)),
            Err(message) => {
                self.error(path, node.position, message);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(check_name("allow-https_in.1").is_ok());
        assert!(check_name("a_").is_ok());
        assert!(check_name("9").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("-a").is_err());
        assert!(check_name("_a").is_err());
        assert!(check_name("a-").is_err());
        assert!(check_name("a.").is_err());
        assert!(check_name("a b").is_err());
        assert!(check_name(&"a".repeat(80)).is_ok());
        assert!(check_name(&"a".repeat(81)).is_err());
    }

    #[test]
    fn addresses() {
        let net = |s: &str| AddressItem::Net(s.parse().unwrap());
        assert_eq!(parse_address("*"), Ok(AddressItem::Any));
        assert_eq!(parse_address("10.0.0.1"), Ok(net("10.0.0.1/32")));
        assert_eq!(parse_address("fd00::1"), Ok(net("fd00::1/128")));
        assert_eq!(parse_address("0.0.0.0/0"), Ok(net("0.0.0.0/0")));
        assert_eq!(parse_address("::/0"), Ok(net("::/0")));
        assert!(parse_address("10.0.0.1/24")
            .unwrap_err()
            .contains("`10.0.0.0/24`"));
        assert!(parse_address("10.0.0.0/33").is_err());
        assert!(parse_address("300.0.0.0/8").is_err());
        assert!(parse_address("10.0.0.1-10.0.0.9")
            .unwrap_err()
            .contains("Firewall"));
        assert_eq!(
            parse_address("Sql.WestEurope"),
            Ok(AddressItem::Tag("Sql.WestEurope".into()))
        );
        assert!(parse_address("10.0.0.0/8,11.0.0.0/8").is_err());
        assert!(parse_address("").is_err());
    }

    #[test]
    fn ports() {
        assert_eq!(parse_port_range("80"), Ok((80, 80)));
        assert_eq!(parse_port_range("0-65535"), Ok((0, 65535)));
        assert!(parse_port_range("65536").is_err());
        assert!(parse_port_range("90-80").unwrap_err().contains("reversed"));
        assert!(parse_port_range("-1").is_err());
        assert!(parse_port_range("1-").is_err());
        assert!(parse_port_range("80,443").is_err());
        assert!(parse_port_range("99999999999999999999").is_err());
    }

    #[test]
    fn suggestions() {
        assert_eq!(
            closest("destinationPortRnage", RULE_FIELDS),
            Some("destinationPortRange")
        );
        assert_eq!(closest("zzzzzzzzzzzzzzzz", RULE_FIELDS), None);
    }
}
