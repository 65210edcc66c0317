//! The `nsgd` binary end to end: the commands on the bundled configs, their
//! machine-readable contracts, and their failures on bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn nsgd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nsgd"))
        .args(args)
        .current_dir(repo())
        .output()
        .expect("the nsgd binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn policy_configs() -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(repo().join("configs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml" | "json")
            )
        })
        .collect();
    found.sort();
    found
}

#[test]
fn every_bundled_config_passes_check() {
    let configs = policy_configs();
    assert!(
        configs.len() >= 3,
        "configs/ holds the example estates: {configs:?}"
    );
    for config in configs {
        let output = nsgd(&["check", config.to_str().unwrap()]);
        assert!(
            output.status.success(),
            "{}: {}",
            config.display(),
            stderr(&output)
        );
        assert!(stdout(&output).contains("valid"), "{}", stdout(&output));
    }
}

#[test]
fn bundled_flow_lists_meet_their_expectations() {
    for (policy, flows) in [
        ("configs/hub-spoke.yaml", "configs/hub-spoke.flows.csv"),
        ("configs/dual-stack.yaml", "configs/dual-stack.flows.csv"),
    ] {
        let output = nsgd(&["verify", policy, "--flows", flows, "--json"]);
        assert!(output.status.success(), "{policy}: {}", stderr(&output));
        let lines = std::fs::read_to_string(repo().join(flows)).unwrap();
        let flow_count = lines
            .lines()
            .skip(1)
            .filter(|l| !l.trim().is_empty())
            .count();
        assert_eq!(stdout(&output).lines().count(), flow_count);
    }
}

#[test]
fn verify_json_has_the_contract_shape() {
    let output = nsgd(&[
        "verify",
        "configs/hub-spoke.yaml",
        "--flow",
        "tcp 10.1.2.4:49152 -> 10.1.3.4:1433",
        "--json",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        stdout(&output).trim(),
        concat!(
            r#"{"decision":"Allow","evaluations":["#,
            r#"{"direction":"Outbound","nic":"logic-1","level":"subnet","nsg":"app-nsg","rule":"AllowVnetOutBound","access":"Allow"},"#,
            r#"{"direction":"Inbound","nic":"db-1","level":"subnet","nsg":"app-nsg","rule":"Allow-Database-BusinessLogic","access":"Allow"},"#,
            r#"{"direction":"Inbound","nic":"db-1","level":"nic","nsg":"db-1-nsg","rule":"Allow-Sql-From-Logic","access":"Allow"}]}"#
        )
    );
}

#[test]
fn verify_names_unnamed_nics_and_stops_at_the_first_deny() {
    let output = nsgd(&[
        "verify",
        "configs/hub-spoke.yaml",
        "--flow",
        "tcp 10.1.2.77:40000 -> 10.1.3.4:1433",
        "--json",
    ]);
    let line = stdout(&output);
    let value: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
    assert_eq!(value["decision"], "Deny");
    let evaluations = value["evaluations"].as_array().unwrap();
    assert_eq!(evaluations[0]["nic"], "spoke-app/logic/10.1.2.77");
    assert_eq!(evaluations.last().unwrap()["rule"], "Deny-Database-All");
    assert_eq!(
        evaluations.len(),
        2,
        "evaluation stops after the deny: {line}"
    );
}

#[test]
fn verify_explain_says_which_field_failed() {
    let output = nsgd(&[
        "verify",
        "configs/hub-spoke.yaml",
        "--flow",
        "tcp 203.0.113.9:5000 -> 10.1.3.4:80",
        "--json",
        "--explain",
    ]);
    let value: serde_json::Value = serde_json::from_str(stdout(&output).trim()).unwrap();
    let evaluation = &value["evaluations"][0];
    assert_eq!(evaluation["rule"], "DenyAllInBound");
    let skipped = evaluation["notMatched"].as_array().unwrap();
    let first = &skipped[0];
    assert_eq!(first["rule"], "Allow-HTTP-Inbound-Internet");
    assert_eq!(first["failed"], serde_json::json!(["destination"]));
    let vnet_rule = skipped
        .iter()
        .find(|s| s["rule"] == "AllowVnetInBound")
        .unwrap();
    assert_eq!(vnet_rule["failed"], serde_json::json!(["source"]));
}

/// With no NSG on the way, `verify` says whether the ends are outside the
/// estate or in it with no NSG (a level without an NSG allows).
#[test]
fn verify_says_why_no_nsg_applies() {
    let dir = std::env::temp_dir().join(format!("nsgd-cli-nonsg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let policy = dir.join("open.yaml");
    std::fs::write(
        &policy,
        "vnets:\n  - name: a\n    addressSpace: [10.0.0.0/16]\n    subnets:\n      - name: s\n        addressPrefix: 10.0.1.0/24\nnics:\n  - name: x\n    subnet: a/s\n    ipAddresses: [10.0.1.4]\n",
    )
    .unwrap();
    let verify = |flow: &str| {
        let output = nsgd(&["verify", policy.to_str().unwrap(), "--flow", flow]);
        assert!(output.status.success(), "{}", stderr(&output));
        stdout(&output)
    };
    let into_estate = verify("tcp 198.51.100.1:1000 -> 10.0.1.4:22");
    assert!(into_estate.contains(": Allow"), "{into_estate}");
    assert!(
        into_estate.contains("no NSG on either end's NIC or subnet"),
        "{into_estate}"
    );
    let outside = verify("tcp 198.51.100.1:1000 -> 198.51.100.2:22");
    assert!(
        outside.contains("neither end is in a subnet of the estate"),
        "{outside}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn verify_reports_unmet_expectations_and_bad_lines() {
    let dir = std::env::temp_dir().join(format!("nsgd-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let flows = dir.join("flows.csv");
    std::fs::write(
        &flows,
        "protocol,src_ip,src_port,dst_ip,dst_port,expected\n\
         tcp,203.0.113.9,5000,10.1.1.4,80,Deny\n\
         tcp,not-an-ip,1,10.1.1.4,80,Allow\n",
    )
    .unwrap();
    let output = nsgd(&[
        "verify",
        "configs/hub-spoke.yaml",
        "--flows",
        flows.to_str().unwrap(),
    ]);
    assert!(!output.status.success());
    let errors = stderr(&output);
    assert!(
        errors.contains(":2:") && errors.contains("expected Deny, got Allow"),
        "{errors}"
    );
    assert!(
        errors.contains(":3:") && errors.contains("not-an-ip"),
        "{errors}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// `effective --json` keeps Azure's shape (nsg-semantics.md §9.3): one entry
/// per associated NSG with the rules of both directions, `tagMap` a string
/// holding a JSON map, port items one range each as written, tags and ASGs
/// expanded to the prefixes they list.
#[test]
fn effective_json_has_one_entry_per_nsg_in_azures_shape() {
    let output = nsgd(&[
        "effective",
        "configs/hub-spoke.yaml",
        "--nic",
        "db-1",
        "--json",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let view: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    let groups = view["effectiveNetworkSecurityGroups"].as_array().unwrap();
    let order: Vec<(&str, &str)> = groups
        .iter()
        .map(|g| {
            (
                g["association"].as_str().unwrap(),
                g["networkSecurityGroup"]["id"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        order,
        [("subnet", "app-nsg"), ("networkInterface", "db-1-nsg")]
    );
    let rules = groups[0]["effectiveSecurityRules"].as_array().unwrap();
    let directions: Vec<&str> = rules
        .iter()
        .map(|r| r["direction"].as_str().unwrap())
        .collect();
    let inbound = directions.iter().filter(|d| **d == "Inbound").count();
    assert!(inbound > 0 && inbound < directions.len(), "{directions:?}");
    assert!(
        directions[..inbound].iter().all(|d| *d == "Inbound"),
        "inbound rules first: {directions:?}"
    );
    let priorities = |direction: &str| -> Vec<u64> {
        rules
            .iter()
            .filter(|r| r["direction"] == direction)
            .map(|r| r["priority"].as_u64().unwrap())
            .collect()
    };
    for direction in ["Inbound", "Outbound"] {
        let mut sorted = priorities(direction);
        sorted.sort_unstable();
        assert_eq!(priorities(direction), sorted, "{direction} by priority");
    }

    // The address spaces one by one (its own VNet's first, then the peer's),
    // not their union.
    let vnet = rules
        .iter()
        .find(|r| r["name"] == "defaultSecurityRules/AllowVnetInBound")
        .unwrap();
    let virtual_network = serde_json::json!(["10.1.0.0/16", "10.0.0.0/16", "168.63.129.16/32"]);
    assert_eq!(vnet["expandedSourceAddressPrefix"], virtual_network);
    assert_eq!(vnet["protocol"], "All");
    assert_eq!(vnet["destinationPortRange"], "0-65535");
    let tag_map: serde_json::Value =
        serde_json::from_str(groups[0]["tagMap"].as_str().expect("tagMap is a string")).unwrap();
    assert_eq!(tag_map["VirtualNetwork"], virtual_network);
    assert_eq!(
        tag_map["AzureLoadBalancer"],
        serde_json::json!(["168.63.129.16/32"])
    );

    let web = rules
        .iter()
        .find(|r| r["name"] == "securityRules/Allow-HTTP-Inbound-Internet")
        .unwrap();
    assert_eq!(web["appliesToNic"], false, "db-1 is not in AsgWeb");
    assert_eq!(
        web["expandedDestinationAddressPrefix"],
        serde_json::json!(["10.1.1.4/32", "10.1.1.5/32"]),
        "ASG members one by one"
    );
    assert_eq!(web["destinationPortRanges"], serde_json::json!(["80-80"]));
    // A plain prefix stands for itself.
    let ssh = rules
        .iter()
        .find(|r| r["name"] == "securityRules/Allow-SSH-From-Jump")
        .unwrap();
    assert_eq!(ssh["expandedSourceAddressPrefix"], serde_json::Value::Null);

    // Port items as written, in their order, each as a range.
    let output = nsgd(&[
        "effective",
        "configs/dual-stack.yaml",
        "--nic",
        "fe-1",
        "--direction",
        "inbound",
        "--json",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let view: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    let rules = view["effectiveNetworkSecurityGroups"][0]["effectiveSecurityRules"]
        .as_array()
        .unwrap();
    assert!(rules.iter().all(|r| r["direction"] == "Inbound"));
    let https = rules
        .iter()
        .find(|r| r["name"] == "securityRules/Allow-HTTPS-Internet")
        .unwrap();
    assert_eq!(
        https["destinationPortRanges"],
        serde_json::json!(["443-443", "80-80"])
    );
    assert_eq!(https["destinationPortRange"], "443-443");
}

/// `check --json` on an invalid policy still prints one JSON object: not
/// valid, every error with its file, path, line, column and message.
#[test]
fn check_json_reports_every_error_of_an_invalid_policy() {
    let dir = std::env::temp_dir().join(format!("nsgd-cli-invalid-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let policy = dir.join("bad.yaml");
    let text = std::fs::read_to_string("configs/hub-spoke.yaml")
        .unwrap()
        .replacen("priority: 100", "priority: 5", 1)
        .replacen(
            "destinationPortRange: '22'",
            "destinationPortRange: '22-21'",
            1,
        );
    std::fs::write(&policy, text).unwrap();
    let output = nsgd(&["check", policy.to_str().unwrap(), "--json"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let report: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(report["valid"], false);
    let errors = report["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors[0]["path"]
        .as_str()
        .unwrap()
        .ends_with("securityRules[0].priority"));
    assert!(errors[0]["message"]
        .as_str()
        .unwrap()
        .contains("out of range"));
    assert!(errors[1]["path"]
        .as_str()
        .unwrap()
        .ends_with("destinationPortRange"));
    for error in errors {
        assert_eq!(error["file"], policy.to_str().unwrap());
        assert!(error["line"].as_u64().unwrap() > 0);
        assert!(error["column"].as_u64().unwrap() > 0);
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn check_lints_the_hub_spoke_example() {
    let output = nsgd(&["check", "configs/hub-spoke.yaml", "--json"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let report: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(report["valid"], true);
    assert_eq!(report["summary"]["nics"], 6);
    let findings = report["findings"].as_array().unwrap();
    let has = |kind: &str, needle: &str| {
        findings
            .iter()
            .any(|f| f["kind"] == kind && f["message"].as_str().unwrap().contains(needle))
    };
    assert!(
        has("redundant-rule", "Allow-HTTP-Inbound-Internet-Again"),
        "{findings:#?}"
    );
    assert!(has("unattached-nsg", "spare-nsg"), "{findings:#?}");
    assert!(
        !has("redundant-rule", "Deny-Everything-Else"),
        "it blocks VNet traffic the defaults allow"
    );
}

#[test]
fn bad_policy_fails_with_path_and_location() {
    let dir = std::env::temp_dir().join(format!("nsgd-cli-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.yaml");
    std::fs::write(
        &file,
        "networkSecurityGroups:\n  - name: n\n    securityRules:\n      - name: r\n        priority: 99\n        direction: Inbound\n        access: Allow\n        protocol: Tcp\n        sourceAddressPrefix: '*'\n        sourcePortRange: '*'\n        destinationAddressPrefix: '*'\n        destinationPortRange: '80'\n",
    )
    .unwrap();
    let output = nsgd(&["check", file.to_str().unwrap()]);
    assert!(!output.status.success());
    let errors = stderr(&output);
    assert!(errors.contains("bad.yaml"), "{errors}");
    assert!(
        errors.contains("networkSecurityGroups[0].securityRules[0].priority"),
        "{errors}"
    );
    assert!(errors.contains(":5:"), "line of the priority: {errors}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn classbench_json_reports_zero_mismatches() {
    let shared = repo().join("../shared/classbench");
    assert!(
        Path::new(&shared).join("acl1_1k.rules.gz").exists(),
        "../shared/classbench is missing beside the repository"
    );
    let file = |name: &str| shared.join(name).to_str().unwrap().to_string();
    let output = nsgd(&[
        "classbench",
        "--rules",
        &file("acl1_1k.rules.gz"),
        "--trace",
        &file("acl1_1k.trace.gz"),
        "--expected",
        &file("acl1_1k.expected.gz"),
        "--json",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let report: serde_json::Value = serde_json::from_str(stdout(&output).trim()).unwrap();
    assert_eq!(report["mismatches"], 0);
    assert_eq!(report["rules"], 911);
    assert_eq!(report["lookups"], 9110);
    for field in ["build_ms", "lookups_per_sec", "table_bytes"] {
        assert!(report[field].is_number(), "{field} in {report}");
    }
}

#[test]
fn run_refuses_bad_ports_before_forwarding_anything() {
    let one = nsgd(&["run", "configs/live-lab.yaml", "--port", "lo"]);
    assert_eq!(one.status.code(), Some(1));
    assert!(
        stderr(&one).contains("exactly two --port"),
        "{}",
        stderr(&one)
    );

    let same = nsgd(&[
        "run",
        "configs/live-lab.yaml",
        "--port",
        "lo",
        "--port",
        "lo",
    ]);
    assert_eq!(same.status.code(), Some(1));
    assert!(
        stderr(&same).contains("different interfaces"),
        "{}",
        stderr(&same)
    );

    let missing = nsgd(&[
        "run",
        "configs/live-lab.yaml",
        "--port",
        "nsgd-nope0",
        "--port",
        "nsgd-nope1",
    ]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        stderr(&missing).contains("nsgd-nope0: look up interface"),
        "{}",
        stderr(&missing)
    );
    assert!(!stderr(&missing).contains("forwarding"));
}

#[test]
fn run_rejects_a_bad_policy_with_its_errors() {
    let dir = std::env::temp_dir().join(format!("nsgd-run-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let policy = dir.join("bad.yaml");
    std::fs::write(
        &policy,
        "vnets:\n  - name: a\n    addressSpace: [10.0.0.0/33]\n",
    )
    .unwrap();
    let out = nsgd(&[
        "run",
        policy.to_str().unwrap(),
        "--port",
        "lo",
        "--port",
        "nsgd-nope1",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("vnets[0].addressSpace[0]"),
        "{}",
        stderr(&out)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
