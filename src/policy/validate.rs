//! Cross-object validation of the raw estate, then assembly of the validated
//! [`Policy`]: name uniqueness, references (NSGs, VNets, subnets, peerings,
//! ASGs), address containment and overlaps, ASG locality, and the estate-wide
//! limits of nsg-semantics.md §2.1. Per-object checks happened in `convert`.
//!
//! Every check is linear or `n log n` in the size of the file (hash maps,
//! sorted interval sweeps), so a hostile file with 100k objects is refused
//! quickly. Objects whose own fields were broken are skipped here.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use ipnet::IpNet;

use super::convert::{Loc, RawPolicy, Spanned};
use super::error::Collector;
use super::model::{
    AddressMatch, NetworkInterface, NetworkSecurityGroup, Policy, Subnet, VirtualNetwork,
};

/// Limits of nsg-semantics.md §2.1 that span objects.
pub const MAX_RULES_PER_NSG: usize = 1000;
pub const MAX_NSGS: usize = 5000;
pub const MAX_ASGS: usize = 3000;
pub const MAX_ASGS_PER_NSG: usize = 100;
pub const MAX_MEMBERS_PER_ASG: usize = 4000;

/// An address as (family, number) so IPv4 and IPv6 sort apart.
fn bounds(net: &IpNet) -> (u8, u128, u128) {
    match net {
        IpNet::V4(n) => (
            4,
            u128::from(u32::from(n.network())),
            u128::from(u32::from(n.broadcast())),
        ),
        IpNet::V6(n) => (6, u128::from(n.network()), u128::from(n.broadcast())),
    }
}

/// A set of prefixes answering "which one contains this?" in `O(log n)`,
/// correct even when the prefixes overlap.
struct PrefixIndex {
    /// (family, start, end, owner), sorted by family and start.
    entries: Vec<(u8, u128, u128, usize)>,
    /// For each entry: the index of the entry with the largest end among
    /// entries of the same family up to it.
    widest: Vec<usize>,
}

impl PrefixIndex {
    fn new(nets: impl IntoIterator<Item = (IpNet, usize)>) -> PrefixIndex {
        let mut entries: Vec<_> = nets
            .into_iter()
            .map(|(net, owner)| {
                let (family, start, end) = bounds(&net);
                (family, start, end, owner)
            })
            .collect();
        entries.sort_unstable();
        let mut widest = Vec::with_capacity(entries.len());
        for (i, entry) in entries.iter().enumerate() {
            let best = match widest.last() {
                Some(&w) if i > 0 && entries[i - 1].0 == entry.0 => {
                    let previous: &(u8, u128, u128, usize) = &entries[w];
                    if previous.2 >= entry.2 {
                        w
                    } else {
                        i
                    }
                }
                _ => i,
            };
            widest.push(best);
        }
        PrefixIndex { entries, widest }
    }

    /// The owner of an entry that overlaps `net` (contains it or lies in it).
    fn overlapping(&self, net: &IpNet) -> Option<usize> {
        if let Some(owner) = self.containing(net) {
            return Some(owner);
        }
        let (family, start, end) = bounds(net);
        let k = self
            .entries
            .partition_point(|e| (e.0, e.1) < (family, start));
        self.entries
            .get(k)
            .filter(|e| e.0 == family && e.1 <= end)
            .map(|e| e.3)
    }

    /// The owner of an entry containing `net`.
    fn containing(&self, net: &IpNet) -> Option<usize> {
        let (family, start, end) = bounds(net);
        let k = self
            .entries
            .partition_point(|e| (e.0, e.1) <= (family, start));
        let candidate = &self.entries[self.widest[k.checked_sub(1)?]];
        (candidate.0 == family && candidate.2 >= end).then_some(candidate.3)
    }
}

/// Finds overlapping prefixes: for each prefix that overlaps an earlier one
/// (in address order), the pair (its index, the other's index).
fn overlaps(nets: &[IpNet]) -> Vec<(usize, usize)> {
    let mut order: Vec<usize> = (0..nets.len()).collect();
    order.sort_unstable_by_key(|&i| {
        let (family, start, end) = bounds(&nets[i]);
        (family, start, std::cmp::Reverse(end), i)
    });
    let mut out = Vec::new();
    let mut widest: Option<usize> = None;
    for &i in &order {
        let (family, start, end) = bounds(&nets[i]);
        if let Some(w) = widest {
            let (wf, _, wend) = bounds(&nets[w]);
            if wf == family && start <= wend {
                out.push((i, w));
                if end <= wend {
                    continue;
                }
            }
        }
        widest = Some(i);
    }
    out
}

/// Names → where first seen, for uniqueness (case-insensitive, as Azure's are)
/// and for exact-match references.
struct Names<'a> {
    exact: HashMap<&'a str, &'a Loc>,
    folded: HashMap<String, &'a str>,
    /// False when some object of this kind had a broken name: then unknown
    /// references are not reported (they would only echo that error).
    complete: bool,
}

impl<'a> Names<'a> {
    fn new() -> Names<'a> {
        Names {
            exact: HashMap::new(),
            folded: HashMap::new(),
            complete: true,
        }
    }

    /// Registers a name; reports a duplicate.
    fn add(
        &mut self,
        name: Option<&'a Spanned<String>>,
        what: &str,
        scope: &str,
        errors: &mut Collector,
    ) {
        let Some(name) = name else {
            self.complete = false;
            return;
        };
        let folded = name.value.to_ascii_lowercase();
        if let Some(first) = self.folded.get(&folded) {
            let first_loc = self.exact[first];
            errors.push(
                &name.loc.path,
                Some(name.loc.position),
                format!(
                    "duplicate {what} name `{}`{scope}: `{first}` is already defined at {} \
                     (names are case-insensitive)",
                    name.value, first_loc.path
                ),
            );
            return;
        }
        self.folded.insert(folded, &name.value);
        self.exact.insert(&name.value, &name.loc);
    }

    fn contains(&self, name: &str) -> bool {
        self.exact.contains_key(name)
    }

    /// "; did you mean `X`?" when the name matches up to case.
    fn hint(&self, name: &str) -> String {
        match self.folded.get(&name.to_ascii_lowercase()) {
            Some(real) => format!(" (did you mean `{real}`? names are matched exactly)"),
            None => String::new(),
        }
    }

    /// Reports a reference to a name that does not exist; true when it exists.
    fn check(&self, reference: &Spanned<String>, what: &str, errors: &mut Collector) -> bool {
        if self.contains(&reference.value) {
            return true;
        }
        if self.complete {
            errors.push(
                &reference.loc.path,
                Some(reference.loc.position),
                format!(
                    "unknown {what} `{}`{}",
                    reference.value,
                    self.hint(&reference.value)
                ),
            );
        }
        false
    }
}

pub(crate) fn validate(raw: &RawPolicy, errors: &mut Collector) -> Option<Policy> {
    // --- NSGs: names, rules, priorities, limits.
    let mut nsg_names = Names::new();
    for nsg in &raw.nsgs {
        nsg_names.add(nsg.name.as_ref(), "network security group", "", errors);
    }
    if raw.nsgs.len() > MAX_NSGS {
        if let Some(loc) = &raw.nsgs_loc {
            errors.push(
                &loc.path,
                Some(loc.position),
                format!(
                    "the estate has {} network security groups; at most {MAX_NSGS} are allowed",
                    raw.nsgs.len()
                ),
            );
        }
    }
    for nsg in &raw.nsgs {
        let nsg_label = nsg
            .name
            .as_ref()
            .map(|n| format!(" `{}`", n.value))
            .unwrap_or_default();
        if nsg.rules.len() > MAX_RULES_PER_NSG {
            let loc = nsg.rules_loc.as_ref().unwrap_or(&nsg.loc);
            errors.push(
                &loc.path,
                Some(loc.position),
                format!(
                    "network security group{nsg_label} has {} rules; at most \
                     {MAX_RULES_PER_NSG} are allowed (inbound and outbound together)",
                    nsg.rules.len()
                ),
            );
        }
        let mut rule_names = Names::new();
        let mut priorities: HashMap<(super::model::Direction, u32), &Spanned<String>> =
            HashMap::new();
        let mut priority_owner_missing: HashMap<(super::model::Direction, u32), &Loc> =
            HashMap::new();
        for rule in &nsg.rules {
            rule_names.add(
                rule.name.as_ref(),
                "rule",
                &format!(" in network security group{nsg_label}"),
                errors,
            );
            let (Some(priority), Some(direction)) = (&rule.priority, rule.direction) else {
                continue;
            };
            let key = (direction, priority.value);
            let other = priorities
                .get(&key)
                .map(|n| format!("rule `{}` ({})", n.value, n.loc.path))
                .or_else(|| {
                    priority_owner_missing
                        .get(&key)
                        .map(|l| format!("the rule at {}", l.path))
                });
            match other {
                Some(other) => errors.push(
                    &priority.loc.path,
                    Some(priority.loc.position),
                    format!(
                        "priority {} is already used by {other} for {direction} rules; \
                         priorities must be unique per direction within a network security group",
                        priority.value
                    ),
                ),
                None => match &rule.name {
                    Some(name) => {
                        priorities.insert(key, name);
                    }
                    None => {
                        priority_owner_missing.insert(key, &rule.loc);
                    }
                },
            }
        }
    }

    // --- VNets, subnets, peerings.
    let mut vnet_names = Names::new();
    for vnet in &raw.vnets {
        vnet_names.add(vnet.name.as_ref(), "virtual network", "", errors);
    }
    let vnet_index: HashMap<&str, usize> = raw
        .vnets
        .iter()
        .enumerate()
        .filter_map(|(i, v)| v.name.as_ref().map(|n| (n.value.as_str(), i)))
        .collect();
    // (vnet, subnet) → (prefix index over all subnets)
    let mut all_subnet_prefixes: Vec<(IpNet, &Loc, String)> = Vec::new();
    let mut subnet_names_per_vnet: Vec<Names> = Vec::new();
    let mut space_overlap: Vec<bool> = Vec::new();
    let mut space_indexes: Vec<PrefixIndex> = Vec::with_capacity(raw.vnets.len());
    for vnet in &raw.vnets {
        let vnet_label = vnet
            .name
            .as_ref()
            .map(|n| n.value.clone())
            .unwrap_or_else(|| vnet.loc.path.clone());
        // Address space entries must not overlap each other.
        let space: Vec<IpNet> = vnet.address_space.iter().map(|s| s.value).collect();
        let space_overlaps = overlaps(&space);
        space_overlap.push(!space_overlaps.is_empty());
        for (i, other) in space_overlaps {
            let item = &vnet.address_space[i];
            errors.push(
                &item.loc.path,
                Some(item.loc.position),
                format!(
                    "address space prefix `{}` overlaps `{}` of the same virtual network",
                    item.value, vnet.address_space[other].value
                ),
            );
        }
        space_indexes.push(PrefixIndex::new(
            vnet.address_space
                .iter()
                .enumerate()
                .map(|(i, s)| (s.value, i)),
        ));
        let space_index = &space_indexes[space_indexes.len() - 1];
        let mut subnet_names = Names::new();
        for subnet in &vnet.subnets {
            subnet_names.add(
                subnet.name.as_ref(),
                "subnet",
                &format!(" in virtual network `{vnet_label}`"),
                errors,
            );
            if let Some(nsg) = &subnet.nsg {
                nsg_names.check(nsg, "network security group", errors);
            }
            for prefix in &subnet.prefixes {
                if vnet.address_space_ok && space_index.containing(&prefix.value).is_none() {
                    let spaces = space
                        .iter()
                        .take(8)
                        .map(|s| format!("`{s}`"))
                        .collect::<Vec<_>>()
                        .join(", ");
                    errors.push(
                        &prefix.loc.path,
                        Some(prefix.loc.position),
                        format!(
                            "subnet prefix `{}` is not inside the address space of virtual \
                             network `{vnet_label}` ({spaces})",
                            prefix.value
                        ),
                    );
                }
                let subnet_label = format!(
                    "{vnet_label}/{}",
                    subnet
                        .name
                        .as_ref()
                        .map(|n| n.value.as_str())
                        .unwrap_or("?")
                );
                all_subnet_prefixes.push((prefix.value, &prefix.loc, subnet_label));
            }
        }
        subnet_names_per_vnet.push(subnet_names);
    }
    // Subnets do not overlap anywhere in the estate.
    let nets: Vec<IpNet> = all_subnet_prefixes.iter().map(|p| p.0).collect();
    for (i, other) in overlaps(&nets) {
        let (net, loc, label) = &all_subnet_prefixes[i];
        let (other_net, other_loc, other_label) = &all_subnet_prefixes[other];
        let vnet_of = |label: &str| label.rsplit_once('/').map(|(vnet, _)| vnet.to_string());
        // Azure allows overlapping spaces in VNets that are not peered, but
        // nsgd decides flows by address, so an address must name one subnet.
        let why = if vnet_of(label) == vnet_of(other_label) {
            "subnets may not overlap"
        } else {
            "subnets may not overlap, in one VNet or across VNets: nsgd finds a \
             flow's NIC and subnet by address, so every address must belong to one \
             subnet of the estate (give VNets that are not peered distinct spaces, \
             or keep them in separate policy files)"
        };
        errors.push(
            &loc.path,
            Some(loc.position),
            format!(
                "subnet prefix `{net}` of `{label}` overlaps `{other_net}` of subnet \
                 `{other_label}` ({}); {why}",
                other_loc.path
            ),
        );
    }
    // Peerings.
    let mut checked_pairs: HashSet<(usize, usize)> = HashSet::new();
    for (a, vnet) in raw.vnets.iter().enumerate() {
        let mut seen: HashSet<&str> = HashSet::new();
        for peer in &vnet.peerings {
            if !vnet_names.check(peer, "virtual network", errors) {
                continue;
            }
            if vnet.name.as_ref().is_some_and(|n| n.value == peer.value) {
                errors.push(
                    &peer.loc.path,
                    Some(peer.loc.position),
                    format!("virtual network `{}` cannot peer with itself", peer.value),
                );
                continue;
            }
            if !seen.insert(&peer.value) {
                errors.push(
                    &peer.loc.path,
                    Some(peer.loc.position),
                    format!("peering `{}` is listed twice", peer.value),
                );
                continue;
            }
            let b = vnet_index[peer.value.as_str()];
            if !checked_pairs.insert((a.min(b), a.max(b))) {
                continue;
            }
            let other = &raw.vnets[b];
            // Query the larger side's index with the smaller side's prefixes.
            let (small, large, small_is_mine) =
                if vnet.address_space.len() <= other.address_space.len() {
                    (a, b, true)
                } else {
                    (b, a, false)
                };
            let hit = raw.vnets[small].address_space.iter().find_map(|s| {
                space_indexes[large]
                    .overlapping(&s.value)
                    .map(|i| (s.value, raw.vnets[large].address_space[i].value))
            });
            if let Some((x, y)) = hit {
                let (mine, theirs) = if small_is_mine { (x, y) } else { (y, x) };
                errors.push(
                    &peer.loc.path,
                    Some(peer.loc.position),
                    format!(
                        "peered virtual networks may not overlap: `{mine}` of `{}` overlaps \
                         `{theirs}` of `{}`",
                        vnet.name.as_ref().map(|n| n.value.as_str()).unwrap_or("?"),
                        peer.value
                    ),
                );
            }
        }
    }

    // --- NICs: names, subnet references, addresses, NSG references.
    let mut subnet_lookup: HashMap<(usize, &str), usize> = HashMap::new();
    for (v, vnet) in raw.vnets.iter().enumerate() {
        for (s, subnet) in vnet.subnets.iter().enumerate() {
            if let Some(name) = &subnet.name {
                subnet_lookup.entry((v, name.value.as_str())).or_insert(s);
            }
        }
    }
    let mut subnet_indexes: HashMap<(usize, usize), PrefixIndex> = HashMap::new();
    let mut nic_names = Names::new();
    let mut nic_vnet: Vec<Option<usize>> = Vec::with_capacity(raw.nics.len());
    let mut ip_owner: HashMap<IpAddr, (&str, &Loc)> = HashMap::new();
    for nic in &raw.nics {
        nic_names.add(nic.name.as_ref(), "network interface", "", errors);
        if let Some(nsg) = &nic.nsg {
            nsg_names.check(nsg, "network security group", errors);
        }
        let nic_label = nic.name.as_ref().map(|n| n.value.as_str()).unwrap_or("?");
        for ip in &nic.ips {
            match ip_owner.get(&ip.value) {
                Some((owner, loc)) => errors.push(
                    &ip.loc.path,
                    Some(ip.loc.position),
                    format!(
                        "address {} is already used by network interface `{owner}` ({}); \
                         addresses must be unique across the estate",
                        ip.value, loc.path
                    ),
                ),
                None => {
                    ip_owner.insert(ip.value, (nic_label, &ip.loc));
                }
            }
        }
        let mut resolved = None;
        if let Some(reference) = &nic.subnet {
            match reference.value.split_once('/') {
                Some((vnet_name, subnet_name))
                    if !vnet_name.is_empty() && !subnet_name.is_empty() =>
                {
                    let vnet_ref = Spanned {
                        value: vnet_name.to_string(),
                        loc: reference.loc.clone(),
                    };
                    if vnet_names.check(&vnet_ref, "virtual network", errors) {
                        let v = vnet_index[vnet_name];
                        let vnet = &raw.vnets[v];
                        let found = subnet_lookup.get(&(v, subnet_name)).copied();
                        match found {
                            Some(s) => {
                                let subnet = &vnet.subnets[s];
                                resolved = Some(v);
                                if subnet.prefixes_ok {
                                    let index = subnet_indexes.entry((v, s)).or_insert_with(|| {
                                        PrefixIndex::new(
                                            subnet.prefixes.iter().map(|p| (p.value, 0)),
                                        )
                                    });
                                    for ip in &nic.ips {
                                        let inside =
                                            index.containing(&IpNet::from(ip.value)).is_some();
                                        if !inside {
                                            let prefixes = subnet
                                                .prefixes
                                                .iter()
                                                .map(|p| format!("`{}`", p.value))
                                                .collect::<Vec<_>>()
                                                .join(", ");
                                            errors.push(
                                                &ip.loc.path,
                                                Some(ip.loc.position),
                                                format!(
                                                    "address {} is not inside subnet `{}` \
                                                     ({prefixes})",
                                                    ip.value, reference.value
                                                ),
                                            );
                                        }
                                    }
                                }
                            }
                            None if subnet_names_per_vnet[v].complete => errors.push(
                                &reference.loc.path,
                                Some(reference.loc.position),
                                format!(
                                    "virtual network `{vnet_name}` has no subnet \
                                     `{subnet_name}`{}",
                                    subnet_names_per_vnet[v].hint(subnet_name)
                                ),
                            ),
                            None => {}
                        }
                    }
                }
                _ => errors.push(
                    &reference.loc.path,
                    Some(reference.loc.position),
                    format!(
                        "`{}` is not a subnet reference; expected `<vnet>/<subnet>`",
                        reference.value
                    ),
                ),
            }
        }
        nic_vnet.push(resolved);
    }

    // --- ASGs: declared ones, memberships, locality, limits.
    let mut asg_names = Names::new();
    for asg in &raw.asgs {
        asg_names.add(Some(asg), "application security group", "", errors);
    }
    // ASG → (VNet index, NIC name, member count)
    let mut asg_vnet: HashMap<&str, (usize, &str)> = HashMap::new();
    let mut asg_members: HashMap<&str, usize> = HashMap::new();
    let mut asg_total = asg_names.exact.len();
    if asg_total > MAX_ASGS {
        let asg = &raw.asgs[MAX_ASGS.min(raw.asgs.len() - 1)];
        errors.push(
            &asg.loc.path,
            Some(asg.loc.position),
            format!(
                "the estate declares {asg_total} application security groups; at most \
                 {MAX_ASGS} are allowed"
            ),
        );
    }
    for (nic, vnet) in raw.nics.iter().zip(&nic_vnet) {
        let nic_label = nic.name.as_ref().map(|n| n.value.as_str()).unwrap_or("?");
        let mut seen: HashSet<&str> = HashSet::new();
        for asg in &nic.asgs {
            if !seen.insert(&asg.value) {
                continue;
            }
            if !asg_names.contains(&asg.value) {
                if let Some(real) = asg_names.folded.get(&asg.value.to_ascii_lowercase()) {
                    errors.push(
                        &asg.loc.path,
                        Some(asg.loc.position),
                        format!(
                            "application security group `{}` differs only in case from `{real}`; \
                             names are case-insensitive",
                            asg.value
                        ),
                    );
                    continue;
                }
                asg_names.add(Some(asg), "application security group", "", errors);
                asg_total += 1;
                if asg_total == MAX_ASGS + 1 {
                    errors.push(
                        &asg.loc.path,
                        Some(asg.loc.position),
                        format!("the estate has more than {MAX_ASGS} application security groups"),
                    );
                }
            }
            let members = asg_members.entry(&asg.value).or_insert(0);
            *members += 1;
            if *members == MAX_MEMBERS_PER_ASG + 1 {
                errors.push(
                    &asg.loc.path,
                    Some(asg.loc.position),
                    format!(
                        "application security group `{}` has more than {MAX_MEMBERS_PER_ASG} \
                         members",
                        asg.value
                    ),
                );
            }
            let Some(vnet) = *vnet else { continue };
            match asg_vnet.get(asg.value.as_str()) {
                Some(&(first_vnet, first_nic)) if first_vnet != vnet => errors.push(
                    &asg.loc.path,
                    Some(asg.loc.position),
                    format!(
                        "application security group `{}` already has a member in virtual \
                         network `{}` (network interface `{first_nic}`), but `{nic_label}` is in \
                         `{}`; all network interfaces of one application security group must \
                         lie in the same virtual network",
                        asg.value,
                        vnet_name(raw, first_vnet),
                        vnet_name(raw, vnet)
                    ),
                ),
                Some(_) => {}
                None => {
                    asg_vnet.insert(&asg.value, (vnet, nic_label));
                }
            }
        }
    }

    // --- Rules' ASG references.
    for nsg in &raw.nsgs {
        let mut distinct: HashSet<&str> = HashSet::new();
        let mut reported_limit = false;
        for rule in &nsg.rules {
            let mut known = true;
            for asg in rule.source_asgs.iter().chain(&rule.destination_asgs) {
                known &= asg_names.check(asg, "application security group", errors);
                distinct.insert(&asg.value);
                if distinct.len() > MAX_ASGS_PER_NSG && !reported_limit {
                    reported_limit = true;
                    errors.push(
                        &asg.loc.path,
                        Some(asg.loc.position),
                        format!(
                            "the rules of this network security group reference more than \
                             {MAX_ASGS_PER_NSG} distinct application security groups"
                        ),
                    );
                }
            }
            if !known || rule.source_asgs.is_empty() || rule.destination_asgs.is_empty() {
                continue;
            }
            let located: Vec<(&Spanned<String>, usize)> = rule
                .source_asgs
                .iter()
                .chain(&rule.destination_asgs)
                .filter_map(|a| asg_vnet.get(a.value.as_str()).map(|&(v, _)| (a, v)))
                .collect();
            if let Some(&(first, first_vnet)) = located.first() {
                if let Some(&(other, other_vnet)) = located.iter().find(|(_, v)| *v != first_vnet) {
                    errors.push(
                        &other.loc.path,
                        Some(other.loc.position),
                        format!(
                            "the rule names application security groups of different virtual \
                             networks: `{}` is in `{}` but `{}` is in `{}`; a rule naming ASGs \
                             on both sides must name ASGs of one virtual network",
                            other.value,
                            vnet_name(raw, other_vnet),
                            first.value,
                            vnet_name(raw, first_vnet)
                        ),
                    );
                }
            }
        }
    }

    if !errors.is_empty() {
        return None;
    }
    assemble(raw)
}

fn vnet_name(raw: &RawPolicy, index: usize) -> &str {
    raw.vnets[index]
        .name
        .as_ref()
        .map(|n| n.value.as_str())
        .unwrap_or("?")
}

/// Builds the model from a raw estate that passed every check.
fn assemble(raw: &RawPolicy) -> Option<Policy> {
    let name = |n: &Option<Spanned<String>>| n.as_ref().map(|n| n.value.clone());
    let reference = |n: &Option<Spanned<String>>| n.as_ref().map(|n| n.value.clone());
    let mut policy = Policy {
        service_tags: raw.service_tags.clone(),
        application_security_groups: raw.asgs.iter().map(|a| a.value.clone()).collect(),
        ..Policy::default()
    };
    for vnet in &raw.vnets {
        let mut subnets = Vec::with_capacity(vnet.subnets.len());
        for subnet in &vnet.subnets {
            subnets.push(Subnet {
                name: name(&subnet.name)?,
                address_prefixes: subnet.prefixes.iter().map(|p| p.value).collect(),
                network_security_group: reference(&subnet.nsg),
            });
        }
        policy.vnets.push(VirtualNetwork {
            name: name(&vnet.name)?,
            address_space: vnet.address_space.iter().map(|p| p.value).collect(),
            peerings: vnet.peerings.iter().map(|p| p.value.clone()).collect(),
            subnets,
        });
    }
    for nic in &raw.nics {
        policy.nics.push(NetworkInterface {
            name: name(&nic.name)?,
            subnet: reference(&nic.subnet)?,
            ip_addresses: nic.ips.iter().map(|i| i.value).collect(),
            network_security_group: reference(&nic.nsg),
            application_security_groups: nic.asgs.iter().map(|a| a.value.clone()).collect(),
        });
    }
    for nsg in &raw.nsgs {
        let mut rules = Vec::with_capacity(nsg.rules.len());
        for rule in &nsg.rules {
            let rule = rule.rule.clone()?;
            debug_assert!(!matches!(&rule.source, AddressMatch::Prefixes(p) if p.is_empty()));
            rules.push(rule);
        }
        policy.network_security_groups.push(NetworkSecurityGroup {
            name: name(&nsg.name)?,
            security_rules: rules,
            flush_connection: nsg.flush_connection,
        });
    }
    Some(policy)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn prefix_index_finds_containers() {
        let spaces = nets(&["10.0.0.0/8", "10.1.0.0/16", "192.168.0.0/16", "fd00::/8"]);
        let index = PrefixIndex::new(spaces.iter().copied().zip(0..));
        let find = |s: &str| index.containing(&s.parse().unwrap());
        assert!(find("10.200.0.0/16").is_some());
        assert!(find("10.1.2.0/24").is_some());
        assert!(find("192.168.1.0/24").is_some());
        assert!(find("11.0.0.0/24").is_none());
        assert!(find("0.0.0.0/0").is_none());
        assert!(find("fd00:1::/64").is_some());
        assert!(find("fe00::/64").is_none());
    }

    #[test]
    fn prefix_index_finds_overlaps() {
        let spaces = nets(&["10.0.0.0/16", "10.2.0.0/24", "fd00::/16"]);
        let index = PrefixIndex::new(spaces.iter().copied().zip(0..));
        let find = |s: &str| index.overlapping(&s.parse().unwrap());
        assert_eq!(find("10.0.5.0/24"), Some(0));
        assert_eq!(find("10.0.0.0/8"), Some(0));
        assert_eq!(find("10.2.0.0/16"), Some(1));
        assert_eq!(find("10.1.0.0/16"), None);
        assert_eq!(find("10.3.0.0/16"), None);
        assert_eq!(find("::/0"), Some(2));
        assert_eq!(find("0.0.0.0/0"), Some(0));
        assert_eq!(find("fe00::/16"), None);
    }

    #[test]
    fn overlap_sweep() {
        assert!(overlaps(&nets(&["10.0.0.0/24", "10.0.1.0/24", "fd00::/64"])).is_empty());
        assert_eq!(
            overlaps(&nets(&["10.0.1.0/24", "10.0.0.0/16"])),
            vec![(0, 1)]
        );
        assert_eq!(overlaps(&nets(&["10.0.0.0/24", "10.0.0.0/24"])).len(), 1);
        // Family boundary: no false overlap between 0.0.0.0/0 and ::/0.
        assert!(overlaps(&nets(&["0.0.0.0/0", "::/0"])).is_empty());
    }
}
