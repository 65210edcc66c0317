//! Policy loading end to end: fixtures, one test per validation rule (exact
//! path, message fragment, position), error collection, hostile input.

use std::path::Path;
use std::time::{Duration, Instant};

use nsgd::policy::{
    load, parse_str, AddressMatch, Format, PolicyError, PolicyErrors, PortMatch, Protocol,
};

const BASE_RULE: &[(&str, &str)] = &[
    ("name", "r0"),
    ("priority", "100"),
    ("direction", "Inbound"),
    ("access", "Allow"),
    ("protocol", "Tcp"),
    ("sourceAddressPrefix", "'*'"),
    ("sourcePortRange", "'*'"),
    ("destinationAddressPrefix", "'*'"),
    ("destinationPortRange", "'80'"),
];

const ESTATE: &str = "\
vnets:
  - name: hub
    addressSpace: [10.0.0.0/16]
    peerings: [spoke]
    subnets:
      - name: web
        addressPrefix: 10.0.1.0/24
  - name: spoke
    addressSpace: [10.1.0.0/16]
    subnets:
      - name: db
        addressPrefixes: [10.1.2.0/24]
nics:
  - name: web-1
    subnet: hub/web
    ipAddresses: [10.0.1.4]
    applicationSecurityGroups: [AsgWeb]
  - name: db-1
    subnet: spoke/db
    ipAddresses: [10.1.2.4]
    applicationSecurityGroups: [AsgDb]
";

/// The estate plus one NSG holding one rule: the base rule with `changes`
/// applied (`Some(v)` sets a field, `None` removes it).
fn policy_with_rule(changes: &[(&str, Option<&str>)]) -> String {
    let mut fields: Vec<(String, String)> = BASE_RULE
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    for (key, value) in changes {
        fields.retain(|(k, _)| k != key);
        if let Some(v) = value {
            fields.push((key.to_string(), v.to_string()));
        }
    }
    let mut text = format!("{ESTATE}networkSecurityGroups:\n  - name: nsg\n    securityRules:\n");
    for (i, (k, v)) in fields.iter().enumerate() {
        let lead = if i == 0 { "      - " } else { "        " };
        text.push_str(&format!("{lead}{k}: {v}\n"));
    }
    text
}

fn errors_of(text: &str) -> Vec<PolicyError> {
    match parse_str(text, Format::Yaml, "t.yaml") {
        Ok(p) => panic!("expected errors, got {p:#?}"),
        Err(e) => e.into_vec(),
    }
}

/// 1-based line of the first line containing `needle`, and the column where it starts.
fn position_of(text: &str, needle: &str) -> (usize, usize) {
    for (i, line) in text.lines().enumerate() {
        if let Some(col) = line.find(needle) {
            return (i + 1, line[..col].chars().count() + 1);
        }
    }
    panic!("`{needle}` not in text");
}

/// Asserts exactly one error, at `path`, containing `fragment`, at the position
/// of `at` in the text (if given).
#[track_caller]
fn assert_one(text: &str, path: &str, fragment: &str, at: Option<&str>) -> PolicyError {
    let errors = errors_of(text);
    assert_eq!(
        errors.len(),
        1,
        "expected one error, got:\n{}",
        show(&errors)
    );
    let e = errors.into_iter().next().unwrap();
    assert_eq!(e.path, path, "{e}");
    assert!(e.message.contains(fragment), "`{fragment}` not in: {e}");
    if let Some(at) = at {
        let (line, column) = position_of(text, at);
        assert_eq!((e.line, e.column), (Some(line), Some(column)), "{e}");
    }
    e
}

fn show(errors: &[PolicyError]) -> String {
    errors.iter().map(|e| format!("{e}\n")).collect()
}

const R: &str = "networkSecurityGroups[0].securityRules[0]";

fn rp(field: &str) -> String {
    format!("{R}.{field}")
}

// ---------------------------------------------------------------- fixtures

#[test]
fn hub_spoke_yaml_and_json_load_to_the_same_policy() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/policy");
    let yaml = load(&dir.join("hub-spoke.yaml")).unwrap_or_else(|e| panic!("{e}"));
    let json = load(&dir.join("hub-spoke.json")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(yaml, json);
    assert_eq!(yaml.vnets.len(), 2);
    assert_eq!(yaml.nics.len(), 2);
    assert_eq!(yaml.network_security_groups.len(), 3);
    assert_eq!(
        yaml.service_tags["OnPrem"],
        vec!["192.168.0.0/16".parse().unwrap()]
    );
    let web = yaml.nsg("web-nsg").unwrap();
    let rule = &web.security_rules[0];
    assert_eq!(rule.source, AddressMatch::Tag("Internet".into()));
    assert_eq!(
        rule.destination,
        AddressMatch::ApplicationSecurityGroups(vec!["AsgWeb".into()])
    );
    assert_eq!(
        rule.destination_ports,
        PortMatch::Ranges(vec![(443, 443), (8000, 8080)])
    );
    let ssh = &web.security_rules[1];
    assert_eq!(ssh.protocol, Protocol::Tcp);
    assert_eq!(
        ssh.destination,
        AddressMatch::Prefixes(vec!["10.0.1.4/32".parse().unwrap()])
    );
    assert_eq!(ssh.destination_ports, PortMatch::Ranges(vec![(22, 22)]));
    assert_eq!(ssh.description.as_deref(), Some("SSH from the office"));
    assert!(yaml.nsg("web-1-nsg").unwrap().flush_connection);
    let icmp = &yaml.nsg("db-nsg").unwrap().security_rules[1];
    assert_eq!(
        icmp.destination,
        AddressMatch::Prefixes(vec!["0.0.0.0/0".parse().unwrap()])
    );
    assert!(yaml.subnet("spoke1/db").is_some());
}

#[test]
fn every_config_and_fixture_that_should_load_loads() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for dir in [root.join("tests/fixtures/policy"), root.join("configs")] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if Format::from_path(&path).is_some() {
                load(&path).unwrap_or_else(|e| panic!("{}:\n{e}", path.display()));
            }
        }
    }
}

#[test]
fn empty_documents_are_empty_policies() {
    for (text, format) in [
        ("", Format::Yaml),
        ("# only a comment\n", Format::Yaml),
        ("---\n", Format::Yaml),
        ("{}", Format::Yaml),
        ("~", Format::Yaml),
        ("", Format::Json),
        ("{}", Format::Json),
        (" \n", Format::Json),
    ] {
        let p = parse_str(text, format, "t").unwrap_or_else(|e| panic!("{text:?}: {e}"));
        assert_eq!(p, Default::default());
    }
}

#[test]
fn the_estate_without_nsgs_loads() {
    let p = parse_str(ESTATE, Format::Yaml, "t").unwrap();
    assert_eq!(p.nics[1].subnet, "spoke/db");
    let p = parse_str(&policy_with_rule(&[]), Format::Yaml, "t").unwrap();
    assert_eq!(p.network_security_groups[0].security_rules.len(), 1);
}

#[test]
fn null_optional_fields_are_absent() {
    let text = "\
serviceTags:
applicationSecurityGroups: ~
vnets:
  - name: v
    addressSpace: [10.9.0.0/16]
    peerings:
    subnets:
      - {name: s, addressPrefix: 10.9.0.0/24, networkSecurityGroup: null}
nics:
networkSecurityGroups:
  - name: n
    flushConnection:
    securityRules:
";
    let p = parse_str(text, Format::Yaml, "t").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(p.vnets[0].subnets[0].network_security_group, None);
    assert!(p.network_security_groups[0].security_rules.is_empty());
    let text = policy_with_rule(&[("description", Some("null"))]);
    let p = parse_str(&text, Format::Yaml, "t").unwrap();
    assert_eq!(
        p.network_security_groups[0].security_rules[0].description,
        None
    );
}

#[test]
fn declared_asgs_as_names_or_objects() {
    let text = format!("{ESTATE}applicationSecurityGroups: [AsgA, {{name: AsgB}}]\n");
    let p = parse_str(&text, Format::Yaml, "t").unwrap();
    assert_eq!(p.application_security_groups, vec!["AsgA", "AsgB"]);
}

#[test]
fn format_from_path_and_sniff() {
    assert_eq!(Format::from_path(Path::new("a.YML")), Some(Format::Yaml));
    assert_eq!(Format::from_path(Path::new("a.yaml")), Some(Format::Yaml));
    assert_eq!(Format::from_path(Path::new("a.json")), Some(Format::Json));
    assert_eq!(Format::from_path(Path::new("a.txt")), None);
    assert_eq!(Format::sniff("  {\"vnets\": []}"), Format::Json);
    assert_eq!(Format::sniff("vnets: []"), Format::Yaml);
}

// ---------------------------------------------------------------- display

#[test]
fn display_is_file_line_col_path_message() {
    let text = policy_with_rule(&[("priority", Some("99"))]);
    let errors = parse_str(&text, Format::Yaml, "p.yaml").unwrap_err();
    let (line, col) = position_of(&text, "99");
    assert_eq!(
        errors.to_string(),
        format!(
            "p.yaml:{line}:{col}: {}: priority `99` is out of range; a priority must be an \
             integer from 100 to 4096",
            rp("priority")
        )
    );
    assert_eq!(errors.len(), 1);
    assert_eq!(errors.iter().count(), 1);
}

// ---------------------------------------------------------------- schema

#[test]
fn unknown_field_is_an_error_with_a_suggestion() {
    let text = policy_with_rule(&[("destinationPortRnage", Some("'80'"))]);
    let errors = errors_of(&text);
    let e = errors
        .iter()
        .find(|e| e.path == rp("destinationPortRnage"))
        .unwrap_or_else(|| panic!("{}", show(&errors)));
    assert!(e
        .message
        .starts_with("unknown field `destinationPortRnage`; expected one of `name`, "));
    assert!(e
        .message
        .ends_with("; did you mean `destinationPortRange`?"));
    assert_eq!(
        (e.line, e.column),
        (Some(position_of(&text, "destinationPortRnage").0), Some(9))
    );
}

#[test]
fn unknown_top_level_field() {
    assert_one("vnet: []\n", "vnet", "unknown field `vnet`", Some("vnet"));
}

#[test]
fn wrong_types_are_errors() {
    assert_one(
        "vnets: {}\n",
        "vnets",
        "expected a list, found a mapping",
        Some("{}"),
    );
    assert_one(
        "vnets: [{name: [a], addressSpace: [10.0.0.0/8]}]\n",
        "vnets[0].name",
        "expected a string, found a list",
        Some("[a]"),
    );
    let text = policy_with_rule(&[("direction", Some("1"))]);
    assert_one(
        &text,
        &rp("direction"),
        "expected a string, found an integer",
        None,
    );
    let text = format!("{ESTATE}networkSecurityGroups: [{{name: n, flushConnection: 'yes'}}]\n");
    assert_one(
        &text,
        "networkSecurityGroups[0].flushConnection",
        "expected a boolean",
        None,
    );
}

#[test]
fn missing_required_fields() {
    let text = policy_with_rule(&[("access", None)]);
    assert_one(
        &text,
        R,
        "missing the required field `access`",
        Some("name: r0"),
    );
    assert_one(
        "vnets: [{addressSpace: [10.0.0.0/8]}]\n",
        "vnets[0]",
        "missing the required field `name`",
        Some("{addressSpace"),
    );
}

#[test]
fn enums_are_case_insensitive() {
    let text = policy_with_rule(&[
        ("direction", Some("OUTBOUND")),
        ("access", Some("deny")),
        ("protocol", Some("uDP")),
    ]);
    let p = parse_str(&text, Format::Yaml, "t").unwrap();
    let rule = &p.network_security_groups[0].security_rules[0];
    assert_eq!(rule.protocol, Protocol::Udp);
    let text = policy_with_rule(&[("protocol", Some("Sctp"))]);
    assert_one(
        &text,
        &rp("protocol"),
        "`Sctp` is not a valid protocol",
        Some("Sctp"),
    );
    let text = policy_with_rule(&[("access", Some("Permit"))]);
    assert_one(
        &text,
        &rp("access"),
        "`Permit` is not a valid access",
        Some("Permit"),
    );
}

#[test]
fn duplicate_keys_are_errors() {
    let text = policy_with_rule(&[("priority", Some("100\n        priority: 200"))]);
    let e = assert_one(
        &text,
        &rp("priority"),
        "duplicate key `priority`",
        Some("priority: 200"),
    );
    assert!(e.message.contains("first given at line"));
}

// ---------------------------------------------------------------- priority

#[test]
fn priority_range() {
    for (value, fragment) in [
        ("99", "out of range"),
        ("4097", "out of range"),
        ("-1", "out of range"),
        ("1e300", "is not an integer"),
        ("99999999999999999999", "out of range"),
        ("100.5", "is not an integer"),
        ("'100'", "expected an integer priority, found a string"),
        ("null", "expected an integer priority, found null"),
    ] {
        let text = policy_with_rule(&[("priority", Some(value))]);
        let e = assert_one(&text, &rp("priority"), fragment, None);
        let (line, column) = position_of(&text, &format!("priority: {value}"));
        assert_eq!((e.line, e.column), (Some(line), Some(column + 10)), "{e}");
    }
    for ok in ["100", "4096"] {
        parse_str(
            &policy_with_rule(&[("priority", Some(ok))]),
            Format::Yaml,
            "t",
        )
        .unwrap();
    }
}

fn nsg_with_rules(rules: &[&[(&str, Option<&str>)]]) -> String {
    let mut text = format!("{ESTATE}networkSecurityGroups:\n  - name: nsg\n    securityRules:\n");
    for changes in rules {
        let one = policy_with_rule(changes);
        let rule = one.split("securityRules:\n").nth(1).unwrap();
        text.push_str(rule);
    }
    text
}

#[test]
fn priorities_unique_per_direction() {
    let text = nsg_with_rules(&[
        &[("name", Some("a"))],
        &[("name", Some("b")), ("direction", Some("Outbound"))],
        &[("name", Some("c"))],
    ]);
    let errors = errors_of(&text);
    assert_eq!(errors.len(), 1, "{}", show(&errors));
    let e = &errors[0];
    assert_eq!(e.path, "networkSecurityGroups[0].securityRules[2].priority");
    assert!(
        e.message
            .contains("priority 100 is already used by rule `a`"),
        "{e}"
    );
    assert!(
        e.message
            .contains("networkSecurityGroups[0].securityRules[0]"),
        "{e}"
    );
}

// ---------------------------------------------------------------- names

#[test]
fn rule_name_syntax() {
    for (name, fragment) in [
        ("-bad", "must start with a letter or digit"),
        ("bad-", "must end with a letter, digit or `_`"),
        ("'has space'", "contains ` `"),
        ("'a@b'", "contains `@`"),
    ] {
        let text = policy_with_rule(&[("name", Some(name))]);
        assert_one(&text, &rp("name"), fragment, Some(name));
    }
    let long = "a".repeat(81);
    let text = policy_with_rule(&[("name", Some(&long))]);
    assert_one(&text, &rp("name"), "81 characters long; at most 80", None);
    let ok = "a".repeat(80);
    parse_str(&policy_with_rule(&[("name", Some(&ok))]), Format::Yaml, "t").unwrap();
    parse_str(
        &policy_with_rule(&[("name", Some("x_"))]),
        Format::Yaml,
        "t",
    )
    .unwrap();
}

#[test]
fn other_names_follow_the_same_syntax() {
    let text = ESTATE.replace("name: web-1", "name: web-1.");
    assert_one(&text, "nics[0].name", "must end with", Some("web-1."));
    let text = ESTATE.replace("[AsgWeb]", "['Asg Web']");
    assert_one(
        &text,
        "nics[0].applicationSecurityGroups[0]",
        "contains ` `",
        Some("'Asg Web'"),
    );
    let text = ESTATE.replace("name: hub", "name: _hub");
    let errors = errors_of(&text);
    assert_eq!(errors[0].path, "vnets[0].name", "{}", show(&errors));
}

#[test]
fn description_length() {
    let long = "d".repeat(141);
    let text = policy_with_rule(&[("description", Some(&long))]);
    assert_one(
        &text,
        &rp("description"),
        "141 characters long; at most 140",
        None,
    );
}

#[test]
fn rule_names_unique_within_an_nsg() {
    let text = nsg_with_rules(&[&[], &[("priority", Some("200"))]]);
    let e = assert_one(
        &text,
        "networkSecurityGroups[0].securityRules[1].name",
        "duplicate rule name `r0`",
        None,
    );
    assert!(e
        .message
        .contains("networkSecurityGroups[0].securityRules[0].name"));
}

#[test]
fn object_names_unique() {
    let text = format!("{ESTATE}networkSecurityGroups: [{{name: a}}, {{name: A}}]\n");
    assert_one(
        &text,
        "networkSecurityGroups[1].name",
        "duplicate network security group name `A`",
        None,
    );
    let text = ESTATE.replace("name: spoke\n", "name: hub\n");
    let errors = errors_of(&text);
    assert!(errors
        .iter()
        .any(|e| e.path == "vnets[1].name" && e.message.contains("duplicate virtual network")));
    let text = ESTATE.replace("name: db-1", "name: web-1");
    assert_one(
        &text,
        "nics[1].name",
        "duplicate network interface name",
        None,
    );
    let text = ESTATE.replace(
        "      - name: web\n        addressPrefix: 10.0.1.0/24\n",
        "      - name: web\n        addressPrefix: 10.0.1.0/24\n      - name: web\n        addressPrefix: 10.0.2.0/24\n",
    );
    assert_one(
        &text,
        "vnets[0].subnets[1].name",
        "duplicate subnet name `web`",
        None,
    );
}

// ---------------------------------------------------------------- addresses

#[test]
fn cidr_host_bits_in_rules() {
    let text = policy_with_rule(&[("sourceAddressPrefix", Some("10.0.0.1/24"))]);
    assert_one(
        &text,
        &rp("sourceAddressPrefix"),
        "use `10.0.0.0/24`",
        Some("10.0.0.1/24"),
    );
    let text = policy_with_rule(&[
        ("sourceAddressPrefix", None),
        ("sourceAddressPrefixes", Some("[10.0.0.0/24, 10.1.0.1/16]")),
    ]);
    assert_one(
        &text,
        &rp("sourceAddressPrefixes[1]"),
        "host bits set",
        Some("10.1.0.1/16"),
    );
}

#[test]
fn cidr_host_bits_elsewhere() {
    let text = ESTATE.replace("[10.0.0.0/16]", "[10.0.0.1/16]");
    let errors = errors_of(&text);
    assert_eq!(errors.len(), 1, "{}", show(&errors));
    assert_eq!(errors[0].path, "vnets[0].addressSpace[0]");
    let text = ESTATE.replace("addressPrefix: 10.0.1.0/24", "addressPrefix: 10.0.1.9/24");
    let errors = errors_of(&text);
    assert_eq!(errors[0].path, "vnets[0].subnets[0].addressPrefix");
    assert!(errors[0].message.contains("`10.0.1.0/24`"));
    let text = format!("serviceTags:\n  OnPrem: [192.168.1.1/16]\n{ESTATE}");
    assert_one(
        &text,
        "serviceTags.OnPrem[0]",
        "use `192.168.0.0/16`",
        Some("192.168.1.1/16"),
    );
}

#[test]
fn tags_and_star_only_in_the_singular_field() {
    for item in ["Internet", "'*'"] {
        let text = policy_with_rule(&[
            ("sourceAddressPrefix", None),
            (
                "sourceAddressPrefixes",
                Some(&format!("[10.0.0.0/24, {item}]")),
            ),
        ]);
        assert_one(
            &text,
            &rp("sourceAddressPrefixes[1]"),
            "only allowed in the singular field `sourceAddressPrefix`",
            None,
        );
    }
}

#[test]
fn one_item_in_the_singular_field() {
    let text = policy_with_rule(&[("sourceAddressPrefix", Some("'10.0.0.0/24,10.1.0.0/24'"))]);
    assert_one(
        &text,
        &rp("sourceAddressPrefix"),
        "use `sourceAddressPrefixes`",
        None,
    );
    let text = policy_with_rule(&[("sourceAddressPrefix", Some("[10.0.0.0/24]"))]);
    assert_one(&text, &rp("sourceAddressPrefix"), "found a list", None);
}

#[test]
fn hyphenated_ranges_are_rejected() {
    let text = policy_with_rule(&[("destinationAddressPrefix", Some("10.0.0.1-10.0.0.9"))]);
    assert_one(
        &text,
        &rp("destinationAddressPrefix"),
        "Azure Firewall",
        Some("10.0.0.1-"),
    );
}

#[test]
fn address_families_may_not_mix() {
    let text = policy_with_rule(&[
        ("sourceAddressPrefix", Some("10.0.0.0/8")),
        ("destinationAddressPrefix", Some("'fd00::/8'")),
    ]);
    let e = assert_one(
        &text,
        &rp("destinationAddressPrefix"),
        "mixes IPv4 and IPv6",
        None,
    );
    assert!(e.message.contains("`10.0.0.0/8`"));
    // Tags and `*` carry no family.
    let text = policy_with_rule(&[("destinationAddressPrefix", Some("'fd00::/8'"))]);
    parse_str(&text, Format::Yaml, "t").unwrap();
}

#[test]
fn zero_prefixes_are_prefixes_not_any() {
    let text = policy_with_rule(&[
        ("sourceAddressPrefix", Some("0.0.0.0/0")),
        ("destinationAddressPrefix", Some("'::/0'")),
    ]);
    assert_one(
        &text,
        &rp("destinationAddressPrefix"),
        "mixes IPv4 and IPv6",
        None,
    );
}

#[test]
fn bad_addresses() {
    for bad in ["300.0.0.1", "10.0.0.0/33", "'fd00::/129'", "'10.0.0.0/'"] {
        let text = policy_with_rule(&[("sourceAddressPrefix", Some(bad))]);
        assert_one(&text, &rp("sourceAddressPrefix"), "not a valid", None);
    }
}

#[test]
fn undefined_tags_are_errors_and_builtins_are_canonical() {
    let text = policy_with_rule(&[("sourceAddressPrefix", Some("Storage"))]);
    assert_one(
        &text,
        &rp("sourceAddressPrefix"),
        "unknown service tag `Storage`",
        Some("Storage"),
    );
    let text = policy_with_rule(&[("sourceAddressPrefix", Some("virtualnetwork"))]);
    let p = parse_str(&text, Format::Yaml, "t").unwrap();
    assert_eq!(
        p.network_security_groups[0].security_rules[0].source,
        AddressMatch::Tag("VirtualNetwork".into())
    );
    let text = format!(
        "serviceTags:\n  Storage.WestUS: [20.0.0.0/8]\n{}",
        policy_with_rule(&[("sourceAddressPrefix", Some("Storage.WestUS"))])
    );
    parse_str(&text, Format::Yaml, "t").unwrap();
}

// ---------------------------------------------------------------- rule sides

#[test]
fn prefixes_and_asgs_are_exclusive() {
    let text = policy_with_rule(&[("sourceApplicationSecurityGroups", Some("[AsgWeb]"))]);
    assert_one(
        &text,
        &rp("sourceApplicationSecurityGroups"),
        "on the source side, not both",
        None,
    );
}

#[test]
fn singular_and_plural_are_exclusive() {
    let text = policy_with_rule(&[("destinationAddressPrefixes", Some("[10.0.0.0/8]"))]);
    assert_one(
        &text,
        &rp("destinationAddressPrefixes"),
        "give either `destinationAddressPrefix` or `destinationAddressPrefixes`, not both",
        None,
    );
    let text = policy_with_rule(&[("destinationPortRanges", Some("['443']"))]);
    assert_one(
        &text,
        &rp("destinationPortRanges"),
        "give either `destinationPortRange` or `destinationPortRanges`, not both",
        None,
    );
}

#[test]
fn empty_plural_next_to_singular_is_tolerated() {
    let text = policy_with_rule(&[
        ("sourceAddressPrefixes", Some("[]")),
        ("sourcePortRanges", Some("[]")),
        ("destinationApplicationSecurityGroups", Some("[]")),
    ]);
    parse_str(&text, Format::Yaml, "t").unwrap();
}

#[test]
fn empty_plural_alone_is_an_error() {
    let text = policy_with_rule(&[
        ("sourceAddressPrefix", None),
        ("sourceAddressPrefixes", Some("[]")),
    ]);
    assert_one(&text, &rp("sourceAddressPrefixes"), "is empty", Some("[]"));
}

#[test]
fn sides_must_be_present() {
    let text = policy_with_rule(&[("sourceAddressPrefix", None)]);
    assert_one(&text, R, "no source address", Some("name: r0"));
    let text = policy_with_rule(&[("destinationPortRange", None)]);
    assert_one(&text, R, "no destination port condition", Some("name: r0"));
}

#[test]
fn ports() {
    for (value, fragment) in [
        ("'70000'", "out of range"),
        ("70000", "out of range"),
        ("'90-80'", "reversed"),
        ("'80,443'", "several port ranges"),
        ("'http'", "not a port range"),
        ("-5", "out of range"),
    ] {
        let text = policy_with_rule(&[("destinationPortRange", Some(value))]);
        assert_one(&text, &rp("destinationPortRange"), fragment, Some(value));
    }
    let text = policy_with_rule(&[
        ("destinationPortRange", None),
        ("destinationPortRanges", Some("[80, '*']")),
    ]);
    assert_one(
        &text,
        &rp("destinationPortRanges[1]"),
        "`*` is only allowed in the singular port field",
        None,
    );
    let text = policy_with_rule(&[
        ("destinationPortRange", None),
        ("destinationPortRanges", Some("[80, '0-65535', 1024-2048]")),
    ]);
    let p = parse_str(&text, Format::Yaml, "t").unwrap();
    assert_eq!(
        p.network_security_groups[0].security_rules[0].destination_ports,
        PortMatch::Ranges(vec![(80, 80), (0, 65535), (1024, 2048)])
    );
}

#[test]
fn portless_protocols_need_star_ports() {
    for protocol in ["Icmp", "Esp", "ah"] {
        let text = policy_with_rule(&[("protocol", Some(protocol))]);
        assert_one(
            &text,
            &rp("destinationPortRange"),
            "rules have no ports",
            None,
        );
    }
    // `*` itself (policy-format.md), not ranges that cover every port.
    for ranges in ["'0-65535'", "['0-100', '101-65535']"] {
        let field = if ranges.starts_with('[') {
            "destinationPortRanges"
        } else {
            "destinationPortRange"
        };
        let text = policy_with_rule(&[
            ("protocol", Some("Icmp")),
            ("destinationPortRange", None),
            (field, Some(ranges)),
        ]);
        assert_one(&text, &rp(field), "the port range must be `*`", None);
    }
    let text = policy_with_rule(&[
        ("protocol", Some("Icmp")),
        ("destinationPortRange", Some("'*'")),
    ]);
    parse_str(&text, Format::Yaml, "t").unwrap();
}

// ---------------------------------------------------------------- references

#[test]
fn nsg_references_must_exist() {
    let text = ESTATE.replace(
        "addressPrefix: 10.0.1.0/24\n",
        "addressPrefix: 10.0.1.0/24\n        networkSecurityGroup: nope\n",
    );
    assert_one(
        &text,
        "vnets[0].subnets[0].networkSecurityGroup",
        "unknown network security group `nope`",
        Some("nope"),
    );
    let text = format!(
        "{}networkSecurityGroups: [{{name: Web-nsg}}]\n",
        ESTATE.replace(
            "subnet: hub/web\n",
            "subnet: hub/web\n    networkSecurityGroup: web-nsg\n"
        )
    );
    assert_one(
        &text,
        "nics[0].networkSecurityGroup",
        "did you mean `Web-nsg`?",
        None,
    );
}

#[test]
fn nic_subnet_must_exist() {
    let text = ESTATE.replace("subnet: hub/web", "subnet: hub/nope");
    assert_one(
        &text,
        "nics[0].subnet",
        "has no subnet `nope`",
        Some("hub/nope"),
    );
    let text = ESTATE.replace("subnet: hub/web", "subnet: hubx/web");
    assert_one(
        &text,
        "nics[0].subnet",
        "unknown virtual network `hubx`",
        None,
    );
    let text = ESTATE.replace("subnet: hub/web", "subnet: web");
    assert_one(&text, "nics[0].subnet", "expected `<vnet>/<subnet>`", None);
}

#[test]
fn peerings_must_exist_and_not_be_self() {
    let text = ESTATE.replace("peerings: [spoke]", "peerings: [spoke, nowhere]");
    assert_one(
        &text,
        "vnets[0].peerings[1]",
        "unknown virtual network `nowhere`",
        None,
    );
    let text = ESTATE.replace("peerings: [spoke]", "peerings: [hub]");
    assert_one(
        &text,
        "vnets[0].peerings[0]",
        "cannot peer with itself",
        None,
    );
}

#[test]
fn one_sided_peering_is_fine() {
    // hub lists spoke, spoke does not list hub.
    parse_str(ESTATE, Format::Yaml, "t").unwrap();
}

#[test]
fn rule_asgs_must_exist() {
    let text = policy_with_rule(&[
        ("sourceAddressPrefix", None),
        ("sourceApplicationSecurityGroups", Some("[AsgNope]")),
    ]);
    assert_one(
        &text,
        &rp("sourceApplicationSecurityGroups[0]"),
        "unknown application security group `AsgNope`",
        Some("AsgNope"),
    );
    let text = format!(
        "applicationSecurityGroups: [AsgLonely]\n{}",
        policy_with_rule(&[
            ("sourceAddressPrefix", None),
            ("sourceApplicationSecurityGroups", Some("[AsgLonely]")),
        ])
    );
    parse_str(&text, Format::Yaml, "t").unwrap();
}

// ---------------------------------------------------------------- address layout

#[test]
fn subnet_inside_address_space() {
    let text = ESTATE.replace("addressPrefix: 10.0.1.0/24", "addressPrefix: 10.9.1.0/24");
    let errors = errors_of(&text);
    let e = errors
        .iter()
        .find(|e| e.path == "vnets[0].subnets[0].addressPrefix")
        .unwrap_or_else(|| panic!("{}", show(&errors)));
    assert!(e
        .message
        .contains("not inside the address space of virtual network `hub`"));
}

#[test]
fn subnets_do_not_overlap() {
    let text = ESTATE.replace(
        "      - name: web\n        addressPrefix: 10.0.1.0/24\n",
        "      - name: web\n        addressPrefix: 10.0.1.0/24\n      - name: all\n        addressPrefix: 10.0.0.0/20\n",
    );
    let e = assert_one(
        &text,
        "vnets[0].subnets[0].addressPrefix",
        "overlaps `10.0.0.0/20`",
        None,
    );
    assert!(e.message.contains("hub/all"), "{e}");
}

/// Azure lets VNets that are not peered overlap; nsgd cannot (it finds a
/// flow's subnet by address), and says why.
#[test]
fn subnets_of_unpeered_vnets_do_not_overlap_either_and_the_error_says_why() {
    let text = ESTATE.replace("    peerings: [spoke]\n", "").replace(
        "  - name: spoke\n    addressSpace: [10.1.0.0/16]\n    subnets:\n      - name: db\n        addressPrefixes: [10.1.2.0/24]\n",
        "  - name: spoke\n    addressSpace: [10.0.0.0/16]\n    subnets:\n      - name: db\n        addressPrefixes: [10.0.1.0/24]\n",
    ).replace("ipAddresses: [10.1.2.4]", "ipAddresses: [10.0.1.5]");
    let e = assert_one(
        &text,
        "vnets[1].subnets[0].addressPrefixes[0]",
        "overlaps `10.0.1.0/24` of subnet `hub/web`",
        None,
    );
    assert!(
        e.message
            .contains("every address must belong to one subnet"),
        "{e}"
    );
}

#[test]
fn nic_ips_inside_subnet_and_unique() {
    let text = ESTATE.replace("[10.0.1.4]", "[10.0.2.4]");
    assert_one(
        &text,
        "nics[0].ipAddresses[0]",
        "not inside subnet `hub/web`",
        Some("10.0.2.4"),
    );
    let text = ESTATE.replace("[10.0.1.4]", "[10.0.1.4, 10.0.1.4]");
    assert_one(
        &text,
        "nics[0].ipAddresses[1]",
        "already used by network interface `web-1`",
        None,
    );
    let text = ESTATE.replace("[10.0.1.4]", "[10.0.1.0/24]");
    assert_one(
        &text,
        "nics[0].ipAddresses[0]",
        "is not an IP address",
        None,
    );
}

#[test]
fn peered_address_spaces_do_not_overlap() {
    let text = ESTATE
        .replace("[10.1.0.0/16]", "[10.0.128.0/17]")
        .replace(
            "addressPrefixes: [10.1.2.0/24]",
            "addressPrefixes: [10.0.130.0/24]",
        )
        .replace("[10.1.2.4]", "[10.0.130.4]");
    assert_one(
        &text,
        "vnets[0].peerings[0]",
        "peered virtual networks may not overlap",
        None,
    );
}

#[test]
fn subnet_needs_exactly_one_prefix_field() {
    let text = ESTATE.replace(
        "addressPrefix: 10.0.1.0/24",
        "addressPrefix: 10.0.1.0/24\n        addressPrefixes: [10.0.1.0/24]",
    );
    assert_one(
        &text,
        "vnets[0].subnets[0].addressPrefixes",
        "not both",
        None,
    );
    let text = ESTATE.replace("        addressPrefix: 10.0.1.0/24\n", "");
    assert_one(&text, "vnets[0].subnets[0]", "missing its prefix", None);
}

// ---------------------------------------------------------------- ASG locality

#[test]
fn asg_members_in_one_vnet() {
    let text = ESTATE.replace("[AsgDb]", "[AsgWeb]");
    assert_one(
        &text,
        "nics[1].applicationSecurityGroups[0]",
        "must lie in the same virtual network",
        None,
    );
}

#[test]
fn rule_asgs_on_both_sides_in_one_vnet() {
    let text = policy_with_rule(&[
        ("sourceAddressPrefix", None),
        ("sourceApplicationSecurityGroups", Some("[AsgWeb]")),
        ("destinationAddressPrefix", None),
        ("destinationApplicationSecurityGroups", Some("[AsgDb]")),
    ]);
    assert_one(
        &text,
        &rp("destinationApplicationSecurityGroups[0]"),
        "ASGs of one virtual network",
        None,
    );
}

// ---------------------------------------------------------------- limits

#[test]
fn limits_per_rule_side() {
    let asgs = (0..11)
        .map(|i| format!("A{i}"))
        .collect::<Vec<_>>()
        .join(", ");
    let text = format!(
        "applicationSecurityGroups: [{asgs}]\n{}",
        policy_with_rule(&[
            ("sourceAddressPrefix", None),
            (
                "sourceApplicationSecurityGroups",
                Some(&format!("[{asgs}]"))
            ),
        ])
    );
    assert_one(
        &text,
        &rp("sourceApplicationSecurityGroups"),
        "at most 10",
        None,
    );
    let many = (0..4001)
        .map(|i| format!("10.{}.{}.0/24", i / 256, i % 256))
        .collect::<Vec<_>>()
        .join(", ");
    let text = policy_with_rule(&[
        ("sourceAddressPrefix", None),
        ("sourceAddressPrefixes", Some(&format!("[{many}]"))),
    ]);
    assert_one(&text, R, "at most 4000 are allowed per side", None);
}

#[test]
fn limit_asgs_per_nic() {
    let asgs = (0..21)
        .map(|i| format!("A{i}"))
        .collect::<Vec<_>>()
        .join(", ");
    let text = ESTATE.replace("[AsgWeb]", &format!("[{asgs}]"));
    assert_one(
        &text,
        "nics[0].applicationSecurityGroups",
        "at most 20",
        None,
    );
}

#[test]
fn limit_distinct_asgs_per_nsg() {
    let mut text = String::from("applicationSecurityGroups: [");
    text.push_str(
        &(0..101)
            .map(|i| format!("A{i}"))
            .collect::<Vec<_>>()
            .join(", "),
    );
    text.push_str("]\nnetworkSecurityGroups:\n  - name: n\n    securityRules:\n");
    for i in 0..11 {
        let names = (i * 10..(i * 10 + 10).min(101))
            .map(|k| format!("A{k}"))
            .collect::<Vec<_>>()
            .join(", ");
        text.push_str(&format!(
            "      - {{name: r{i}, priority: {}, direction: Inbound, access: Allow, protocol: '*', \
             sourceApplicationSecurityGroups: [{names}], sourcePortRange: '*', \
             destinationAddressPrefix: '*', destinationPortRange: '*'}}\n",
            100 + i
        ));
    }
    let errors = errors_of(&text);
    assert_eq!(errors.len(), 1, "{}", show(&errors));
    assert!(errors[0].message.contains("more than 100 distinct"));
    assert_eq!(
        errors[0].path,
        "networkSecurityGroups[0].securityRules[10].sourceApplicationSecurityGroups[0]"
    );
}

#[test]
fn limit_nsgs() {
    let mut text = String::from("networkSecurityGroups:\n");
    for i in 0..5001 {
        text.push_str(&format!("  - name: n{i}\n"));
    }
    assert_one(&text, "networkSecurityGroups", "at most 5000", None);
}

#[test]
fn limit_asgs() {
    let names = (0..3001)
        .map(|i| format!("A{i}"))
        .collect::<Vec<_>>()
        .join(", ");
    let text = format!("applicationSecurityGroups: [{names}]\n");
    assert_one(
        &text,
        "applicationSecurityGroups[3000]",
        "at most 3000",
        None,
    );
}

#[test]
fn limit_members_per_asg() {
    let mut text = String::from(
        "vnets:\n  - name: v\n    addressSpace: [10.0.0.0/16]\n    subnets:\n      - name: s\n        addressPrefix: 10.0.0.0/16\nnics:\n",
    );
    for i in 0..4001 {
        text.push_str(&format!(
            "  - {{name: n{i}, subnet: v/s, ipAddresses: [10.0.{}.{}], applicationSecurityGroups: [Big]}}\n",
            i / 256,
            i % 256
        ));
    }
    assert_one(
        &text,
        "nics[4000].applicationSecurityGroups[0]",
        "more than 4000 members",
        None,
    );
}

fn big_nsg(rules: usize) -> String {
    let mut text = String::with_capacity(rules * 220);
    text.push_str("networkSecurityGroups:\n  - name: big\n    securityRules:\n");
    for i in 0..rules {
        let direction = if (i / 3997) % 2 == 0 {
            "Inbound"
        } else {
            "Outbound"
        };
        text.push_str(&format!(
            "      - {{name: r{i}, priority: {}, direction: {direction}, access: Allow, \
             protocol: Tcp, sourceAddressPrefix: '*', sourcePortRange: '*', \
             destinationAddressPrefix: '10.{}.{}.0/24', destinationPortRange: '{}'}}\n",
            100 + i % 3997,
            (i / 256) % 256,
            i % 256,
            i % 65536
        ));
    }
    text
}

#[test]
fn limit_rules_per_nsg() {
    let ok = big_nsg(1000);
    parse_str(&ok, Format::Yaml, "t").unwrap();
    let text = big_nsg(1001);
    assert_one(
        &text,
        "networkSecurityGroups[0].securityRules",
        "has 1001 rules; at most 1000",
        None,
    );
}

#[test]
fn a_100k_rule_nsg_fails_quickly() {
    let text = big_nsg(100_000);
    let start = Instant::now();
    let errors = parse_str(&text, Format::Yaml, "t").unwrap_err();
    let took = start.elapsed();
    assert!(took < Duration::from_secs(60), "took {took:?}");
    assert!(errors
        .iter()
        .any(|e| e.message.contains("has 100000 rules; at most 1000")));
    // The same in JSON.
    let json = {
        let mut t =
            String::from("{\"networkSecurityGroups\": [{\"name\": \"big\", \"securityRules\": [");
        for i in 0..100_000 {
            if i > 0 {
                t.push(',');
            }
            t.push_str(&format!(
                "{{\"name\": \"r{i}\", \"priority\": {}, \"direction\": \"Inbound\", \"access\": \"Allow\", \
                 \"protocol\": \"Tcp\", \"sourceAddressPrefix\": \"*\", \"sourcePortRange\": \"*\", \
                 \"destinationAddressPrefix\": \"*\", \"destinationPortRange\": \"80\"}}",
                100 + i % 3997
            ));
        }
        t.push_str("]}]}");
        t
    };
    let start = Instant::now();
    let errors = parse_str(&json, Format::Json, "t.json").unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(60));
    assert!(errors.iter().any(|e| e.message.contains("at most 1000")));
}

// ---------------------------------------------------------------- collection

#[test]
fn many_errors_are_all_reported_in_position_order() {
    let text = format!(
        "serviceTags:\n  Bad: [1.2.3.4/8]\n{}",
        nsg_with_rules(&[
            &[
                ("priority", Some("5")),
                ("destinationPortRnage", Some("'1'"))
            ],
            &[("name", Some("r1")), ("protocol", Some("Icmp"))],
            &[
                ("name", Some("r2")),
                ("priority", Some("101")),
                ("sourceAddressPrefix", Some("Nope"))
            ],
            &[
                ("name", Some("r3")),
                ("priority", Some("102")),
                ("destinationPortRange", Some("'99999'"))
            ],
        ])
        .replace("subnet: hub/web", "subnet: hub/none")
    );
    let errors = errors_of(&text);
    let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        vec![
            "serviceTags.Bad[0]",
            "nics[0].subnet",
            "networkSecurityGroups[0].securityRules[0].priority",
            "networkSecurityGroups[0].securityRules[0].destinationPortRnage",
            "networkSecurityGroups[0].securityRules[1].destinationPortRange",
            "networkSecurityGroups[0].securityRules[2].sourceAddressPrefix",
            "networkSecurityGroups[0].securityRules[3].destinationPortRange",
        ],
        "{}",
        show(&errors)
    );
    let lines: Vec<usize> = errors.iter().map(|e| e.line.unwrap()).collect();
    assert!(lines.windows(2).all(|w| w[0] <= w[1]));
}

#[test]
fn json_errors_carry_positions_too() {
    let text =
        "{\n  \"vnets\": [\n    {\"name\": \"v\", \"addressSpace\": [\"10.0.0.1/8\"]}\n  ]\n}\n";
    let errors = parse_str(text, Format::Json, "t.json")
        .unwrap_err()
        .into_vec();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].path, "vnets[0].addressSpace[0]");
    assert_eq!((errors[0].line, errors[0].column), (Some(3), Some(36)));
    let errors = parse_str("{\"vnets\": [,]}", Format::Json, "t.json").unwrap_err();
    assert!(
        errors
            .to_string()
            .starts_with("t.json:1:12: JSON syntax error"),
        "{errors}"
    );
}

// ---------------------------------------------------------------- hostile input

fn no_panic(text: &str) {
    for format in [Format::Yaml, Format::Json] {
        let _ = parse_str(text, format, "t");
    }
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    for open in ["[", "{\"a\":", "- "] {
        let text = open.repeat(100_000);
        let errors = parse_str(&text, Format::Yaml, "t").unwrap_err();
        assert!(!errors.is_empty());
        let errors = parse_str(&text, Format::Json, "t").unwrap_err();
        assert!(!errors.is_empty());
    }
    let mut block = String::new();
    for depth in 0..200 {
        block.push_str(&" ".repeat(depth));
        block.push_str("a:\n");
    }
    let errors = parse_str(&block, Format::Yaml, "t").unwrap_err();
    assert!(errors.to_string().contains("deeper than 64"), "{errors}");
}

#[test]
fn alias_bombs_are_refused() {
    let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..15 {
        let p = i - 1;
        text.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    let start = Instant::now();
    let errors = parse_str(&text, Format::Yaml, "t").unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(10));
    assert!(errors.to_string().contains("alias"), "{errors}");
}

#[test]
fn small_aliases_work() {
    let text = policy_with_rule(&[
        ("sourcePortRange", Some("&any '*'")),
        ("destinationPortRange", Some("*any")),
    ]);
    parse_str(&text, Format::Yaml, "t").unwrap();
}

#[test]
fn huge_numbers_are_errors() {
    for n in [
        "1e300",
        "99999999999999999999999999999",
        "-99999999999999999999",
        ".inf",
        ".nan",
    ] {
        let text = policy_with_rule(&[("destinationPortRange", Some(n))]);
        assert!(parse_str(&text, Format::Yaml, "t").is_err());
        let text = policy_with_rule(&[("priority", Some(n))]);
        assert!(parse_str(&text, Format::Yaml, "t").is_err());
    }
}

#[test]
fn non_utf8_and_oversized_files() {
    let dir = std::env::temp_dir().join(format!("nsgd-policy-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.yaml");
    std::fs::write(&path, b"vnets:\n  - name: \xff\xfe\n").unwrap();
    let errors = load(&path).unwrap_err();
    let e = errors.iter().next().unwrap();
    assert!(e.message.contains("not valid UTF-8"), "{e}");
    assert_eq!((e.line, e.column), (Some(2), Some(11)));
    let empty = dir.join("empty.json");
    std::fs::write(&empty, b"").unwrap();
    assert_eq!(load(&empty).unwrap(), Default::default());
    let missing = load(&dir.join("missing.yaml")).unwrap_err();
    assert!(missing.to_string().contains("cannot open"));
    let big = dir.join("big.yaml");
    let file = std::fs::File::create(&big).unwrap();
    file.set_len(nsgd::policy::MAX_FILE_SIZE as u64 + 1)
        .unwrap();
    let errors = load(&big).unwrap_err();
    assert!(
        errors.to_string().contains("larger than 64 MiB"),
        "{errors}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn odd_yaml_is_handled() {
    for text in [
        "--- a\n--- b\n",
        "[a, b]",
        "? [a]\n: b\n",
        "a: !custom x\n",
        "*unknown",
        "vnets: [&x {name: a, addressSpace: [10.0.0.0/8]}, *x]",
        "\t\t{",
        "'unterminated",
        "vnets:\n- name: a\n  addressSpace: [10.0.0.0/8]\n  subnets: [{name: s, addressPrefix: 10.0.0.0/8, networkSecurityGroup: [x]}]",
    ] {
        let result = parse_str(text, Format::Yaml, "t");
        assert!(result.is_err(), "{text:?} should fail");
    }
}

#[test]
fn fuzz_corpus_replays_without_panics() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/policy_parse");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        if let Ok(text) = std::str::from_utf8(&bytes) {
            no_panic(text);
        }
        count += 1;
    }
    assert!(count > 0);
}

mod random {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let text = String::from_utf8_lossy(&bytes);
            no_panic(&text);
        }

        #[test]
        fn random_yamlish_never_panics(
            parts in proptest::collection::vec(
                prop_oneof![
                    Just("["), Just("]"), Just("{"), Just("}"), Just(":"), Just(","), Just("- "),
                    Just("\n"), Just("  "), Just("'"), Just("\""), Just("&a "), Just("*a"),
                    Just("name"), Just("vnets"), Just("10.0.0.0/8"), Just("priority"), Just("#"),
                    Just("securityRules"), Just("networkSecurityGroups"), Just("?"), Just("|"),
                ],
                0..64,
            )
        ) {
            no_panic(&parts.concat());
        }

        #[test]
        fn mutated_fixture_never_panics(cut in 0usize..3000, insert in any::<u8>()) {
            let text = include_str!("fixtures/policy/hub-spoke.yaml");
            let mut bytes = text.as_bytes().to_vec();
            let at = cut % bytes.len();
            bytes.insert(at, insert);
            no_panic(&String::from_utf8_lossy(&bytes));
            bytes.truncate(at);
            no_panic(&String::from_utf8_lossy(&bytes));
        }
    }
}

#[test]
fn errors_type_is_iterable() {
    let e: PolicyErrors = parse_str("vnets: 1", Format::Yaml, "t").unwrap_err();
    assert_eq!(e.len(), 1);
    for error in &e {
        assert_eq!(error.file, "t");
    }
}

#[test]
fn error_list_is_capped() {
    let ports = vec!["'x'"; 12_000].join(", ");
    let text = policy_with_rule(&[
        ("destinationPortRange", None),
        ("destinationPortRanges", Some(&format!("[{ports}]"))),
    ]);
    let errors = errors_of(&text);
    assert_eq!(errors.len(), 10_001);
    let last = errors.last().unwrap();
    assert!(
        last.message.contains("further problems were not reported"),
        "{last}"
    );
}

#[test]
fn collection_aliases_cannot_be_keys() {
    let errors = parse_str("a: &x [1]\n*x : 2\n", Format::Yaml, "t").unwrap_err();
    assert!(
        errors
            .to_string()
            .contains("mapping keys must be plain strings"),
        "{errors}"
    );
}

#[test]
fn node_count_is_capped() {
    let mut text = String::with_capacity(20_000_000);
    text.push_str("{\"vnets\": [");
    for i in 0..8_000_001 {
        if i > 0 {
            text.push(',');
        }
        text.push('1');
    }
    text.push_str("]}");
    let errors = parse_str(&text, Format::Json, "t").unwrap_err();
    assert!(
        errors.to_string().contains("more than 8000000 values"),
        "{errors}"
    );
}

#[test]
fn the_format_documents_example_loads() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/policy/format-doc-example.yaml");
    let p = load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(p.application_security_groups, Vec::<String>::new());
    assert_eq!(p.network_security_groups.len(), 3);
    let web = &p.nics[0];
    assert_eq!(web.network_security_group.as_deref(), Some("web-1-nsg"));
    assert_eq!(web.application_security_groups, vec!["AsgWeb"]);
}

#[test]
fn more_layout_checks() {
    let text = ESTATE.replace("[10.0.0.0/16]", "[10.0.0.0/16, 10.0.128.0/17]");
    assert_one(
        &text,
        "vnets[0].addressSpace[1]",
        "overlaps `10.0.0.0/16`",
        None,
    );
    let text = ESTATE.replace("peerings: [spoke]", "peerings: [spoke, spoke]");
    assert_one(&text, "vnets[0].peerings[1]", "listed twice", None);
    let text = ESTATE.replace("addressSpace: [10.0.0.0/16]", "addressSpace: []");
    assert_one(&text, "vnets[0].addressSpace", "is empty", None);
    let text = ESTATE.replace("ipAddresses: [10.0.1.4]", "ipAddresses: []");
    assert_one(&text, "nics[0].ipAddresses", "is empty", None);
}

#[test]
fn more_name_checks() {
    let text = format!("applicationSecurityGroups: [AsgWeb, asgweb]\n{ESTATE}");
    assert_one(
        &text,
        "applicationSecurityGroups[1]",
        "duplicate application security group name",
        None,
    );
    let text = format!("applicationSecurityGroups: [ASGWEB]\n{ESTATE}");
    assert_one(
        &text,
        "nics[0].applicationSecurityGroups[0]",
        "differs only in case",
        None,
    );
    let text = "serviceTags:\n  OnPrem: [10.0.0.0/8]\n  onprem: [11.0.0.0/8]\n";
    assert_one(text, "serviceTags.onprem", "defined twice", None);
    let text = "serviceTags:\n  '10.0.0.0/8': [10.0.0.0/8]\n";
    assert_one(
        text,
        "serviceTags.10.0.0.0/8",
        "not a valid service tag name",
        None,
    );
    let text = format!("{ESTATE}networkSecurityGroups: [{{name: n, securityRules: [5]}}]\n");
    assert_one(
        &text,
        "networkSecurityGroups[0].securityRules[0]",
        "expected a security rule as a mapping, found an integer",
        None,
    );
}

#[test]
fn json_text_read_as_yaml_gives_the_same_policy() {
    let json = include_str!("fixtures/policy/hub-spoke.json");
    let as_json = parse_str(json, Format::Json, "t.json").unwrap();
    let as_yaml = parse_str(json, Format::Yaml, "t.json").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(as_json, as_yaml);
    let compact: String = json.split_whitespace().collect::<Vec<_>>().join("");
    let compact = compact.replace("SSHfromtheoffice", "SSH");
    assert!(parse_str(&compact, Format::Json, "t").is_ok());
    assert_eq!(
        parse_str(&compact, Format::Yaml, "t").map_err(|e| e.to_string()),
        parse_str(&compact, Format::Json, "t").map_err(|e| e.to_string())
    );
}

#[test]
fn a_large_estate_validates_without_quadratic_blow_up() {
    const N: usize = 30_000;
    let mut text =
        String::from("vnets:\n  - name: big\n    addressSpace: [10.0.0.0/8]\n    subnets:\n");
    for i in 0..N {
        text.push_str(&format!(
            "      - {{name: s{i}, addressPrefix: 10.{}.{}.0/24}}\n",
            i / 256,
            i % 256
        ));
    }
    text.push_str("  - name: peer\n    addressSpace: [10.200.0.0/16]\n    peerings: [big]\n");
    text.push_str("nics:\n");
    for i in 0..N {
        text.push_str(&format!(
            "  - {{name: n{i}, subnet: big/s{i}, ipAddresses: [10.{}.{}.4], applicationSecurityGroups: [A{}]}}\n",
            i / 256,
            i % 256,
            i % 1000
        ));
    }
    let start = Instant::now();
    let errors = parse_str(&text, Format::Yaml, "t").unwrap_err();
    assert!(
        start.elapsed() < Duration::from_secs(60),
        "{:?}",
        start.elapsed()
    );
    // Only the peering overlap: 10.200.0.0/16 lies inside 10.0.0.0/8.
    assert_eq!(errors.len(), 1, "{errors}");
    assert!(errors
        .to_string()
        .contains("peered virtual networks may not overlap"));
}
