//! Ruleset lints for `nsgd check`: rules that can never match (their whole
//! 5-tuple space is taken by higher-priority rules, as Batfish's
//! filter-line-reachability finds), rules that change nothing, ASG rules that
//! apply to no NIC, NSGs attached to nothing, ASGs without members, one-sided
//! peerings.
//!
//! Reachability is decided geometrically: a rule is a union of boxes over
//! (family, protocol, source, destination, source port, destination port);
//! subtracting the boxes of the rules above it leaves what can still reach it.
//! Subtraction can fragment, so it is bounded by [`MAX_FRAGMENTS`]; a rule that
//! exceeds it is reported as not analysed, never guessed.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use super::program::{EndpointKind, Program};
use super::resolved::ResolvedRule;
use crate::policy::{Direction, Protocol};

/// Most box fragments one reachability question may create.
pub const MAX_FRAGMENTS: usize = 20_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Warning,
    Info,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Warning => "warning",
            Severity::Info => "info",
        })
    }
}

/// One lint result.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Finding {
    #[serde(serialize_with = "serialize_severity")]
    pub severity: Severity,
    /// Stable machine name: `unreachable-rule`, `redundant-rule`,
    /// `no-effect-rule`, `dead-asg-rule`, `unattached-nsg`, `empty-asg`,
    /// `one-sided-peering`, `not-analysed`.
    pub kind: &'static str,
    /// Path in the policy file, e.g. `networkSecurityGroups[1].securityRules[3]`.
    pub location: String,
    pub message: String,
}

fn serialize_severity<S: serde::Serializer>(severity: &Severity, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&severity.to_string())
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}: {} [{}]",
            self.severity, self.location, self.message, self.kind
        )
    }
}

/// An axis-aligned box: (family 4/6, protocol, source, destination, sport, dport),
/// every bound inclusive. Addresses widened to u128.
type Box6 = [(u128, u128); 6];

fn rule_boxes(rule: &ResolvedRule) -> Vec<Box6> {
    let protocol = match rule.protocol.number() {
        None => (0u128, 255u128),
        Some(p) => (u128::from(p), u128::from(p)),
    };
    let mut out = Vec::new();
    for family in [4u128, 6] {
        if family == 6 && rule.protocol == Protocol::Icmp {
            continue;
        }
        let widen = |v: &[(u32, u32)]| -> Vec<(u128, u128)> {
            v.iter()
                .map(|&(a, b)| (u128::from(a), u128::from(b)))
                .collect()
        };
        let (sources, destinations) = if family == 4 {
            (widen(&rule.source.v4), widen(&rule.destination.v4))
        } else {
            (rule.source.v6.clone(), rule.destination.v6.clone())
        };
        for &s in &sources {
            for &d in &destinations {
                for &sp in &rule.source_ports {
                    for &dp in &rule.destination_ports {
                        out.push([
                            (family, family),
                            protocol,
                            s,
                            d,
                            (u128::from(sp.0), u128::from(sp.1)),
                            (u128::from(dp.0), u128::from(dp.1)),
                        ]);
                    }
                }
            }
        }
    }
    out
}

fn intersects(a: &Box6, b: &Box6) -> bool {
    a.iter().zip(b).all(|(x, y)| x.0 <= y.1 && y.0 <= x.1)
}

/// `a − b` as disjoint boxes, appended to `out`.
fn subtract(a: &Box6, b: &Box6, out: &mut Vec<Box6>) {
    if !intersects(a, b) {
        out.push(*a);
        return;
    }
    let mut rest = *a;
    for d in 0..6 {
        if rest[d].0 < b[d].0 {
            let mut piece = rest;
            piece[d] = (rest[d].0, b[d].0 - 1);
            out.push(piece);
            rest[d].0 = b[d].0;
        }
        if rest[d].1 > b[d].1 {
            let mut piece = rest;
            piece[d] = (b[d].1 + 1, rest[d].1);
            out.push(piece);
            rest[d].1 = b[d].1;
        }
    }
}

/// Removes `cut` from `region`; `None` if the fragment budget runs out.
fn remove(region: Vec<Box6>, cut: &[Box6]) -> Option<Vec<Box6>> {
    let mut current = region;
    for c in cut {
        if current.iter().all(|b| !intersects(b, c)) {
            continue;
        }
        let mut next = Vec::with_capacity(current.len());
        for b in &current {
            subtract(b, c, &mut next);
        }
        if next.len() > MAX_FRAGMENTS {
            return None;
        }
        current = next;
    }
    Some(current)
}

/// What reachability analysis says about one rule in one table.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Reach {
    /// No packet reaches it; the higher rules that take its space.
    Unreachable {
        covered_by: Vec<usize>,
        same_access: bool,
    },
    /// Reachable, but every packet reaching it gets the same access from the
    /// rules below (the first such rules listed).
    NoEffect {
        decided_by: Vec<usize>,
    },
    Effective,
    TooComplex,
}

fn analyse(rules: &[ResolvedRule], boxes: &[Vec<Box6>], index: usize) -> Reach {
    let own = &boxes[index];
    if own.is_empty() {
        return Reach::Unreachable {
            covered_by: Vec::new(),
            same_access: true,
        };
    }
    let mut region = own.clone();
    let mut covered_by = Vec::new();
    let mut same_access = true;
    for (above, above_boxes) in boxes.iter().enumerate().take(index) {
        if !region
            .iter()
            .any(|b| above_boxes.iter().any(|c| intersects(b, c)))
        {
            continue;
        }
        covered_by.push(above);
        same_access &= rules[above].access == rules[index].access;
        match remove(region, above_boxes) {
            Some(next) => region = next,
            None => return Reach::TooComplex,
        }
        if region.is_empty() {
            return Reach::Unreachable {
                covered_by,
                same_access,
            };
        }
    }
    let mut decided_by = Vec::new();
    for (below, below_boxes) in boxes.iter().enumerate().skip(index + 1) {
        if !region
            .iter()
            .any(|b| below_boxes.iter().any(|c| intersects(b, c)))
        {
            continue;
        }
        if rules[below].access != rules[index].access {
            return Reach::Effective;
        }
        decided_by.push(below);
        match remove(region, below_boxes) {
            Some(next) => region = next,
            None => return Reach::TooComplex,
        }
        if region.is_empty() {
            return Reach::NoEffect { decided_by };
        }
    }
    Reach::Effective
}

fn rule_location(program: &Program, nsg: usize, name: &str) -> String {
    let group = &program.policy().network_security_groups[nsg];
    match group.security_rules.iter().position(|r| r.name == name) {
        Some(i) => format!("networkSecurityGroups[{nsg}].securityRules[{i}]"),
        None => format!("networkSecurityGroups[{nsg}]"),
    }
}

fn names(rules: &[ResolvedRule], indices: &[usize]) -> String {
    let shown: Vec<String> = indices
        .iter()
        .take(5)
        .map(|&i| format!("`{}` ({})", rules[i].name, rules[i].priority))
        .collect();
    let more = indices.len().saturating_sub(5);
    if more > 0 {
        format!("{} and {more} more", shown.join(", "))
    } else {
        shown.join(", ")
    }
}

/// Runs every lint over a compiled program.
pub fn lint(program: &Program) -> Vec<Finding> {
    let mut findings = Vec::new();
    reachability(program, &mut findings);
    dead_asg_rules(program, &mut findings);
    attachments(program, &mut findings);
    findings.sort();
    findings.dedup();
    findings
}

/// (NSG index, direction, rule name).
type RuleKey = (usize, Direction, String);

fn reachability(program: &Program, findings: &mut Vec<Finding>) {
    // Per (NSG, direction, rule name): the verdict in each VNet context where
    // the NSG applies. A rule is reported only if it holds in all of them.
    // Per context also the names of the rules the verdict points at.
    let mut verdicts: BTreeMap<RuleKey, Vec<(Reach, String, Vec<String>)>> = BTreeMap::new();
    for table in program.tables() {
        let boxes: Vec<Vec<Box6>> = table.rules.iter().map(rule_boxes).collect();
        for (index, rule) in table.rules.iter().enumerate() {
            if rule.is_default {
                continue;
            }
            let reach = analyse(&table.rules, &boxes, index);
            let related: &[usize] = match &reach {
                Reach::Unreachable { covered_by, .. } => covered_by,
                Reach::NoEffect { decided_by } => decided_by,
                _ => &[],
            };
            let related_names = related
                .iter()
                .map(|&i| table.rules[i].name.clone())
                .collect();
            verdicts
                .entry((table.nsg, table.direction, rule.name.clone()))
                .or_default()
                .push((reach.clone(), names(&table.rules, related), related_names));
        }
    }
    let never_matching: BTreeSet<RuleKey> = verdicts
        .iter()
        .filter(|(_, contexts)| {
            contexts
                .iter()
                .all(|c| matches!(c.0, Reach::Unreachable { .. }))
        })
        .map(|(key, _)| key.clone())
        .collect();
    for ((nsg, direction, name), contexts) in &verdicts {
        let (nsg, name) = (*nsg, name.clone());
        let location = rule_location(program, nsg, &name);
        let nsg_name = program.nsg_name(nsg as u32);
        let first = &contexts[0];
        if contexts.iter().any(|c| matches!(c.0, Reach::TooComplex)) {
            findings.push(Finding {
                severity: Severity::Info,
                kind: "not-analysed",
                location,
                message: format!(
                    "rule `{name}` of `{nsg_name}` overlaps too many others to analyse within {MAX_FRAGMENTS} fragments"
                ),
            });
            continue;
        }
        if contexts
            .iter()
            .all(|c| matches!(c.0, Reach::Unreachable { .. }))
        {
            let same = contexts.iter().all(|c| {
                matches!(
                    c.0,
                    Reach::Unreachable {
                        same_access: true,
                        ..
                    }
                )
            });
            let by = &first.1;
            let (kind, message) = if by.is_empty() {
                (
                    "unreachable-rule",
                    format!("rule `{name}` of `{nsg_name}` can never match: it matches no address of its family"),
                )
            } else if same {
                (
                    "redundant-rule",
                    format!("rule `{name}` of `{nsg_name}` only repeats what higher-priority rules already decide: {by}"),
                )
            } else {
                (
                    "unreachable-rule",
                    format!("rule `{name}` of `{nsg_name}` can never match: higher-priority rules take all of its traffic: {by}"),
                )
            };
            findings.push(Finding {
                severity: Severity::Warning,
                kind,
                location,
                message,
            });
        } else if contexts
            .iter()
            .all(|c| matches!(c.0, Reach::NoEffect { .. }))
        {
            // A rule "decided the same" by a duplicate that itself never
            // matches is better explained by that duplicate's finding.
            let by_dead_rule = first
                .2
                .iter()
                .any(|other| never_matching.contains(&(nsg, *direction, other.clone())));
            if by_dead_rule {
                continue;
            }
            let by = &first.1;
            findings.push(Finding {
                severity: Severity::Info,
                kind: "no-effect-rule",
                location,
                message: format!(
                    "rule `{name}` of `{nsg_name}` changes nothing on its own: without it, the rules below would decide the same for all of its traffic: {by}"
                ),
            });
        }
    }
}

/// The NICs (by name) each NSG applies to; unnamed endpoints belong to no ASG.
fn nsg_endpoints(program: &Program) -> BTreeMap<usize, (Vec<usize>, bool)> {
    let mut applied: BTreeMap<usize, (Vec<usize>, bool)> = BTreeMap::new();
    for endpoint in program.endpoints() {
        for step in &endpoint.inbound {
            let entry = applied.entry(step.nsg as usize).or_default();
            match endpoint.kind {
                EndpointKind::Nic(nic) => entry.0.push(nic),
                EndpointKind::Unnamed(_) => entry.1 = true,
            }
        }
    }
    applied
}

fn dead_asg_rules(program: &Program, findings: &mut Vec<Finding>) {
    let policy = program.policy();
    let applied = nsg_endpoints(program);
    for (nsg, (nics, _)) in &applied {
        let group = &policy.network_security_groups[*nsg];
        for (index, rule) in group.security_rules.iter().enumerate() {
            let local = match rule.direction {
                Direction::Inbound => &rule.destination,
                Direction::Outbound => &rule.source,
            };
            let crate::policy::AddressMatch::ApplicationSecurityGroups(asgs) = local else {
                continue;
            };
            let members = nics.iter().filter(|&&nic| {
                policy.nics[nic]
                    .application_security_groups
                    .iter()
                    .any(|a| asgs.contains(a))
            });
            if members.count() == 0 {
                let side = match rule.direction {
                    Direction::Inbound => "destination",
                    Direction::Outbound => "source",
                };
                findings.push(Finding {
                    severity: Severity::Warning,
                    kind: "dead-asg-rule",
                    location: format!("networkSecurityGroups[{nsg}].securityRules[{index}]"),
                    message: format!(
                        "rule `{}` of `{}` names {side} ASG {} but no NIC the NSG applies to is a member: it never matches",
                        rule.name,
                        group.name,
                        asgs.join(", ")
                    ),
                });
            }
        }
    }
}

fn attachments(program: &Program, findings: &mut Vec<Finding>) {
    let policy = program.policy();
    let applied = nsg_endpoints(program);
    for (index, group) in policy.network_security_groups.iter().enumerate() {
        if !applied.contains_key(&index) {
            findings.push(Finding {
                severity: Severity::Warning,
                kind: "unattached-nsg",
                location: format!("networkSecurityGroups[{index}]"),
                message: format!(
                    "network security group `{}` is attached to no subnet and no NIC",
                    group.name
                ),
            });
        }
    }
    let members: BTreeSet<&String> = policy
        .nics
        .iter()
        .flat_map(|n| n.application_security_groups.iter())
        .collect();
    for (index, asg) in policy.application_security_groups.iter().enumerate() {
        if !members.contains(asg) {
            findings.push(Finding {
                severity: Severity::Warning,
                kind: "empty-asg",
                location: format!("applicationSecurityGroups[{index}]"),
                message: format!("application security group `{asg}` has no member NIC: rules naming it match nothing"),
            });
        }
    }
    for (index, vnet) in policy.vnets.iter().enumerate() {
        for (p, peer) in vnet.peerings.iter().enumerate() {
            let reciprocal = policy
                .vnet(peer)
                .is_some_and(|other| other.peerings.contains(&vnet.name));
            if !reciprocal {
                findings.push(Finding {
                    severity: Severity::Info,
                    kind: "one-sided-peering",
                    location: format!("vnets[{index}].peerings[{p}]"),
                    message: format!(
                        "`{}` peers with `{peer}` but `{peer}` does not list `{}`: nsgd treats the peering as connected both ways",
                        vnet.name, vnet.name
                    ),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subtraction_covers_exactly() {
        let a: Box6 = [(4, 4), (0, 255), (0, 100), (0, 100), (0, 10), (0, 10)];
        let b: Box6 = [(4, 4), (6, 6), (50, 60), (0, 100), (0, 10), (5, 5)];
        let mut pieces = Vec::new();
        subtract(&a, &b, &mut pieces);
        let volume = |x: &Box6| x.iter().map(|(lo, hi)| hi - lo + 1).product::<u128>();
        let total: u128 = pieces.iter().map(volume).sum();
        assert_eq!(total, volume(&a) - volume(&b));
        assert!(pieces.iter().all(|p| !intersects(p, &b)));
    }
}
