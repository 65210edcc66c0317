//! Cross-resource resolution: reads every collected resource, rejects
//! duplicates, attaches template child resources, resolves references by name
//! (case-insensitively, as Azure names are), settles NSG associations from
//! whichever side declares them, declares ASGs without members, fills service
//! tags, and writes the policy document.

use std::collections::{BTreeSet, HashMap};

use serde_json::{Map, Value};

use super::error::ImportError;
use super::network::{ParsedNic, ParsedServiceTag, ParsedSubnet, ParsedVnet};
use super::nsg::{ParsedNsg, ParsedRule};
use super::shape::{Kind, Resource};
use super::Origin;
use crate::policy::model::BUILTIN_TAGS;

#[derive(Default)]
struct Estate {
    nsgs: Vec<ParsedNsg>,
    vnets: Vec<ParsedVnet>,
    nics: Vec<ParsedNic>,
    asgs: Vec<String>,
    tags: Vec<ParsedServiceTag>,
    /// (kind, lower-case name) → where first defined.
    seen: HashMap<(&'static str, String), Origin>,
}

impl Estate {
    fn define(
        &mut self,
        kind: &'static str,
        name: &str,
        origin: &Origin,
    ) -> Result<(), ImportError> {
        if let Some(first) = self.seen.get(&(kind, name.to_ascii_lowercase())) {
            return Err(ImportError::Duplicate {
                kind,
                name: name.to_string(),
                first: format!("{} at {}", first.file, first.path),
                second: format!("{} at {}", origin.file, origin.path),
            });
        }
        self.seen
            .insert((kind, name.to_ascii_lowercase()), origin.clone());
        Ok(())
    }
}

pub(crate) fn build(
    resources: &[Resource<'_>],
    warnings: &mut Vec<String>,
) -> Result<Value, ImportError> {
    let mut estate = Estate::default();
    let mut child_rules = Vec::new();
    let mut child_subnets = Vec::new();
    let mut child_peerings = Vec::new();
    for resource in resources {
        let node = &resource.node;
        match resource.kind {
            Kind::NetworkSecurityGroup => {
                let nsg = ParsedNsg::read(node, warnings)?;
                estate.define("network security group", &nsg.name, &nsg.origin)?;
                estate.nsgs.push(nsg);
            }
            Kind::VirtualNetwork => {
                let vnet = ParsedVnet::read(node, warnings)?;
                estate.define("virtual network", &vnet.name, &vnet.origin)?;
                estate.vnets.push(vnet);
            }
            Kind::NetworkInterface => {
                let nic = ParsedNic::read(node, warnings)?;
                estate.define("network interface", &nic.name, &nic.origin)?;
                if nic.ip_addresses.is_empty() {
                    // A NIC without addresses can be no flow's end.
                    warnings.push(format!(
                        "NIC {}: no IP configuration has a private address; the NIC is left out",
                        nic.name
                    ));
                } else {
                    estate.nics.push(nic);
                }
            }
            Kind::ApplicationSecurityGroup => {
                let name = super::resource_name(node)?;
                estate.define("application security group", &name, &Origin::of(node))?;
                estate.asgs.push(name);
            }
            Kind::ServiceTag => {
                let tag = ParsedServiceTag::read(node)?;
                estate.define("service tag", &tag.name, &tag.origin)?;
                estate.tags.push(tag);
            }
            Kind::SecurityRule => {
                let parent = parent_name(resource, "<nsg>/<rule>")?;
                let mut rule = ParsedRule::read(node)?;
                if rule.settle_portless_ports(&parent, warnings) {
                    child_rules.push((parent, rule, Origin::of(node)));
                }
            }
            Kind::Subnet => {
                let parent = parent_name(resource, "<vnet>/<subnet>")?;
                child_subnets.push((parent, ParsedSubnet::read(node)?));
            }
            Kind::Peering => {
                let parent = parent_name(resource, "<vnet>/<peering>")?;
                child_peerings.push((parent, node.clone()));
            }
        }
    }
    for (parent, peering) in child_peerings {
        let vnet = estate
            .vnets
            .iter_mut()
            .find(|vnet| vnet.name.eq_ignore_ascii_case(&parent))
            .ok_or_else(|| missing_parent("virtual network", &parent, &Origin::of(&peering)))?;
        vnet.add_peering(&peering, warnings)?;
    }
    for (parent, rule, origin) in child_rules {
        let nsg = estate
            .nsgs
            .iter_mut()
            .find(|nsg| nsg.name.eq_ignore_ascii_case(&parent))
            .ok_or_else(|| missing_parent("network security group", &parent, &origin))?;
        // An exported template lists each rule inline and as a child
        // resource: the same rule twice is one rule. Two different rules of
        // one name stay, for the loader to report.
        if !nsg.rules.contains(&rule) {
            nsg.rules.push(rule);
        }
    }
    for (parent, subnet) in child_subnets {
        let vnet = estate
            .vnets
            .iter_mut()
            .find(|vnet| vnet.name.eq_ignore_ascii_case(&parent))
            .ok_or_else(|| missing_parent("virtual network", &parent, &subnet.origin))?;
        let listed_inline = vnet.subnets.iter().any(|inline| {
            inline.name.eq_ignore_ascii_case(&subnet.name)
                && inline.prefixes == subnet.prefixes
                && inline.network_security_group == subnet.network_security_group
        });
        if !listed_inline {
            vnet.subnets.push(subnet);
        }
    }
    resolve_network(&mut estate, warnings);
    let declared_asgs = resolve_asgs(&mut estate);
    let service_tags = resolve_service_tags(&estate, warnings);

    let mut document = Map::new();
    if !service_tags.is_empty() {
        document.insert("serviceTags".into(), Value::Object(service_tags));
    }
    if !declared_asgs.is_empty() {
        document.insert("applicationSecurityGroups".into(), declared_asgs.into());
    }
    if !estate.vnets.is_empty() {
        document.insert(
            "vnets".into(),
            estate.vnets.iter().map(ParsedVnet::to_json).collect(),
        );
    }
    if !estate.nics.is_empty() {
        document.insert(
            "nics".into(),
            estate.nics.iter().map(ParsedNic::to_json).collect(),
        );
    }
    if !estate.nsgs.is_empty() {
        document.insert(
            "networkSecurityGroups".into(),
            estate.nsgs.iter().map(ParsedNsg::to_json).collect(),
        );
    }
    Ok(Value::Object(document))
}

/// The parent of a template child resource: given by nesting, or the first
/// half of a `parent/child` name.
fn parent_name(resource: &Resource<'_>, form: &str) -> Result<String, ImportError> {
    if let Some(parent) = &resource.parent {
        return Ok(parent.clone());
    }
    let name_node = resource.node.key("name").ok_or_else(|| {
        resource.node.invalid(format!(
            "a child resource needs a `name` of the form {form}"
        ))
    })?;
    let name = name_node.string()?;
    if let Some((parent, _)) = name
        .split_once('/')
        .filter(|(parent, _)| !parent.is_empty())
    {
        return Ok(parent.to_string());
    }
    // `az network nsg rule show` and `az network vnet subnet show` give the
    // child's own name; its id names the parent: …/<parent>/<kind>/<name>.
    let from_id = resource
        .node
        .key("id")
        .and_then(|id| id.string().ok())
        .and_then(|id| {
            let segments: Vec<&str> = id.split('/').filter(|s| !s.is_empty()).collect();
            (segments.len() >= 4 && segments[segments.len() - 1].eq_ignore_ascii_case(&name))
                .then(|| segments[segments.len() - 3].to_string())
        });
    from_id.ok_or_else(|| {
        name_node.invalid(format!(
            "expected a name of the form {form} (or an `id` naming the parent), found `{name}`"
        ))
    })
}

fn missing_parent(kind: &str, parent: &str, origin: &Origin) -> ImportError {
    ImportError::Invalid {
        file: origin.file.clone(),
        path: origin.path.clone(),
        message: format!("the parent {kind} `{parent}` is not among the inputs"),
    }
}

/// Canonical spelling of names, looked up case-insensitively.
struct Names(HashMap<String, String>);

impl Names {
    fn new<'a>(names: impl IntoIterator<Item = &'a String>) -> Names {
        let mut map = HashMap::new();
        for name in names {
            map.entry(name.to_ascii_lowercase())
                .or_insert_with(|| name.clone());
        }
        Names(map)
    }

    fn get(&self, name: &str) -> Option<&String> {
        self.0.get(&name.to_ascii_lowercase())
    }

    fn add(&mut self, name: &str) {
        self.0
            .entry(name.to_ascii_lowercase())
            .or_insert_with(|| name.to_string());
    }

    fn canonical(&self, name: &str) -> String {
        self.get(name).cloned().unwrap_or_else(|| name.to_string())
    }
}

/// Subnet and NIC associations, NIC subnets, and peerings.
/// A peered VNet that is not among the inputs still belongs in
/// `VirtualNetwork`: its peering reports its address space, so it is added
/// with that space and no subnets.
fn add_remote_vnets(estate: &mut Estate, warnings: &mut Vec<String>) {
    let mut added: Vec<ParsedVnet> = Vec::new();
    for vnet in &estate.vnets {
        for (remote, space) in &vnet.remote_spaces {
            let known = |name: &str| name.eq_ignore_ascii_case(remote);
            if estate.vnets.iter().any(|v| known(&v.name)) {
                continue;
            }
            match added.iter_mut().find(|v| known(&v.name)) {
                Some(stand_in) => stand_in.peerings.push(vnet.name.clone()),
                None => {
                    warnings.push(format!(
                        "VNet {remote} (peered with {}) is not among the inputs: added with \
                         the address space its peering reports ({}) and no subnets, so it \
                         counts in VirtualNetwork; import it for its subnets and NICs",
                        vnet.name,
                        space.join(", ")
                    ));
                    added.push(ParsedVnet {
                        name: remote.clone(),
                        origin: vnet.origin.clone(),
                        address_space: space.clone(),
                        subnets: Vec::new(),
                        peerings: vec![vnet.name.clone()],
                        closed_peerings: Vec::new(),
                        remote_spaces: Vec::new(),
                    });
                }
            }
        }
    }
    estate.vnets.extend(added);
}

fn resolve_network(estate: &mut Estate, warnings: &mut Vec<String>) {
    add_remote_vnets(estate, warnings);
    let nsg_names = Names::new(estate.nsgs.iter().map(|nsg| &nsg.name));
    let vnet_names = Names::new(estate.vnets.iter().map(|vnet| &vnet.name));

    for vnet in &mut estate.vnets {
        for subnet in &mut vnet.subnets {
            if let Some(nsg) = &mut subnet.network_security_group {
                match nsg_names.get(nsg) {
                    Some(name) => *nsg = name.clone(),
                    None => warnings.push(format!(
                        "subnet {}/{} is associated with NSG {nsg}, which is not among the \
                         inputs; import that NSG too (the policy will not load without it)",
                        vnet.name, subnet.name
                    )),
                }
            }
        }
        let own = vnet.name.clone();
        vnet.peerings
            .retain_mut(|remote| match vnet_names.get(remote) {
                Some(name) => {
                    *remote = name.clone();
                    true
                }
                None => {
                    warnings.push(format!(
                        "the peering of VNet {own} with {remote} is left out: that VNet is not \
                     among the inputs, so its address space is unknown (import it to make \
                     it part of VirtualNetwork)"
                    ));
                    false
                }
            });
    }

    // A peering closed to virtual network access on one side is left out
    // on the other side too (nsgd counts a peering listed once both ways).
    let closed: Vec<(String, String)> = estate
        .vnets
        .iter()
        .flat_map(|vnet| {
            vnet.closed_peerings
                .iter()
                .map(move |remote| (vnet.name.clone(), remote.clone()))
        })
        .collect();
    for vnet in &mut estate.vnets {
        vnet.peerings.retain(|remote| {
            !closed.iter().any(|(a, b)| {
                (a.eq_ignore_ascii_case(&vnet.name) && b.eq_ignore_ascii_case(remote))
                    || (b.eq_ignore_ascii_case(&vnet.name) && a.eq_ignore_ascii_case(remote))
            })
        });
    }

    for nic in &mut estate.nics {
        if let Some(nsg) = &mut nic.network_security_group {
            match nsg_names.get(nsg) {
                Some(name) => *nsg = name.clone(),
                None => warnings.push(format!(
                    "NIC {} is associated with NSG {nsg}, which is not among the inputs; \
                     import that NSG too (the policy will not load without it)",
                    nic.name
                )),
            }
        }
        let (vnet_name, subnet_name) = nic.subnet.split_once('/').unwrap_or((&nic.subnet, ""));
        let found = estate
            .vnets
            .iter()
            .find(|vnet| vnet.name.eq_ignore_ascii_case(vnet_name))
            .and_then(|vnet| {
                vnet.subnets
                    .iter()
                    .find(|subnet| subnet.name.eq_ignore_ascii_case(subnet_name))
                    .map(|subnet| format!("{}/{}", vnet.name, subnet.name))
            });
        match found {
            Some(path) => nic.subnet = path,
            None => warnings.push(format!(
                "NIC {} is in subnet {}, which no VNet among the inputs defines; import the \
                 VNet too (the policy will not load without it)",
                nic.name, nic.subnet
            )),
        }
    }

    // Associations the NSG side declares (`subnets[]`, `networkInterfaces[]`).
    for nsg in &estate.nsgs {
        for path in &nsg.subnets {
            let (vnet_name, subnet_name) = path.split_once('/').unwrap_or((path, ""));
            let subnet = estate
                .vnets
                .iter_mut()
                .filter(|vnet| vnet.name.eq_ignore_ascii_case(vnet_name))
                .flat_map(|vnet| vnet.subnets.iter_mut())
                .find(|subnet| subnet.name.eq_ignore_ascii_case(subnet_name));
            match subnet {
                None => warnings.push(format!(
                    "NSG {} is associated with subnet {path}, but no VNet among the inputs \
                     defines that subnet, so its address prefix is unknown and the \
                     association cannot be expressed; import the VNet too",
                    nsg.name
                )),
                Some(subnet) => match &subnet.network_security_group {
                    None => subnet.network_security_group = Some(nsg.name.clone()),
                    Some(current) if current.eq_ignore_ascii_case(&nsg.name) => {}
                    Some(current) => warnings.push(format!(
                        "NSG {} lists subnet {path}, but the VNet export associates that \
                         subnet with NSG {current}; the VNet export is kept",
                        nsg.name
                    )),
                },
            }
        }
        for nic_name in &nsg.network_interfaces {
            let nic = estate
                .nics
                .iter_mut()
                .find(|nic| nic.name.eq_ignore_ascii_case(nic_name));
            match nic {
                None => warnings.push(format!(
                    "NSG {} is associated with NIC {nic_name}, which is not among the \
                     inputs, so the association cannot be expressed; import the NIC too",
                    nsg.name
                )),
                Some(nic) => match &nic.network_security_group {
                    None => nic.network_security_group = Some(nsg.name.clone()),
                    Some(current) if current.eq_ignore_ascii_case(&nsg.name) => {}
                    Some(current) => warnings.push(format!(
                        "NSG {} lists NIC {nic_name}, but the NIC export associates it with \
                         NSG {current}; the NIC export is kept",
                        nsg.name
                    )),
                },
            }
        }
    }
}

/// Gives every ASG reference one spelling and returns the ASGs to declare at
/// the top level: those named (by an ASG resource or a rule) that no NIC
/// among the inputs is a member of.
fn resolve_asgs(estate: &mut Estate) -> Vec<String> {
    let mut names = Names::new(&estate.asgs);
    for nic in &estate.nics {
        for asg in &nic.application_security_groups {
            names.add(asg);
        }
    }
    for nsg in &mut estate.nsgs {
        for rule in &mut nsg.rules {
            for asg in rule.application_security_groups_mut() {
                names.add(asg);
                *asg = names.canonical(asg);
            }
        }
    }
    let mut members = BTreeSet::new();
    for nic in &mut estate.nics {
        for asg in &mut nic.application_security_groups {
            *asg = names.canonical(asg);
            members.insert(asg.clone());
        }
    }
    let mut declared = BTreeSet::new();
    for asg in &estate.asgs {
        declared.insert(names.canonical(asg));
    }
    for nsg in &mut estate.nsgs {
        for rule in &mut nsg.rules {
            for asg in rule.application_security_groups_mut() {
                declared.insert(asg.clone());
            }
        }
    }
    declared.difference(&members).cloned().collect()
}

/// The `serviceTags` section: every non-built-in tag a rule uses, with the
/// prefixes a Service Tags input gives for it (or none, with a warning).
fn resolve_service_tags(estate: &Estate, warnings: &mut Vec<String>) -> Map<String, Value> {
    let mut section = Map::new();
    for nsg in &estate.nsgs {
        for rule in &nsg.rules {
            for tag in rule.tags() {
                // Tags match without regard to case: one entry per tag,
                // whichever spellings the rules use.
                if BUILTIN_TAGS.contains(&tag)
                    || section.keys().any(|k| k.eq_ignore_ascii_case(tag))
                {
                    continue;
                }
                let defined = estate
                    .tags
                    .iter()
                    .find(|entry| entry.name.eq_ignore_ascii_case(tag));
                let prefixes = match defined {
                    Some(entry) if entry.usable_in_nsg => entry.prefixes.clone(),
                    Some(entry) => {
                        warnings.push(format!(
                            "service tag {tag} (used by rule {} of NSG {}) is not usable in \
                             NSG rules according to {} (its networkFeatures lack NSG); it is \
                             imported with no prefixes, so rules naming it match nothing",
                            rule.name, nsg.name, entry.origin.file
                        ));
                        Vec::new()
                    }
                    None => {
                        warnings.push(format!(
                            "service tag {tag} (used by rule {} of NSG {}) is not defined by \
                             any input; it is imported with no prefixes, so rules naming it \
                             match nothing: import the Service Tags JSON \
                             (ServiceTags_Public_<date>.json) too",
                            rule.name, nsg.name
                        ));
                        Vec::new()
                    }
                };
                // The Service Tags file's spelling, where there is one.
                let name = defined.map_or(tag, |entry| entry.name.as_str());
                section.insert(name.to_string(), prefixes.into());
            }
        }
    }
    section
}
