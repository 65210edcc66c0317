//! Azure import: every export form gives the same document, references and
//! associations resolve across files, warnings and errors say where, hostile
//! JSON never panics, and the YAML writer reads back as the same value.

use std::path::{Path, PathBuf};

use nsgd::policy::import::{
    import_documents, import_files, to_json_pretty, to_yaml, ImportError, Imported,
};
use proptest::prelude::*;
use serde_json::{json, Value};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/azure");

fn fixture(name: &str) -> Value {
    let text = std::fs::read_to_string(Path::new(FIXTURES).join(name)).expect("fixture exists");
    serde_json::from_str(&text).expect("fixture is JSON")
}

fn input(name: &str) -> (String, Value) {
    (name.to_string(), fixture(name))
}

fn import(names: &[&str]) -> Imported {
    let inputs: Vec<_> = names.iter().map(|name| input(name)).collect();
    import_documents(&inputs).unwrap_or_else(|error| panic!("import failed: {error}"))
}

fn import_error(inputs: Vec<(String, Value)>) -> String {
    match import_documents(&inputs) {
        Ok(imported) => panic!("expected an error, got {}", to_yaml(&imported.document)),
        Err(error) => error.to_string(),
    }
}

/// What the import writes loads without errors.
fn assert_loads(imported: &Imported) {
    let yaml = to_yaml(&imported.document);
    if let Err(errors) = nsgd::policy::parse_str(&yaml, nsgd::policy::Format::Yaml, "imported") {
        panic!("{errors}\n{yaml}");
    }
}

fn keys(value: &Value) -> Vec<&str> {
    value
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect()
}

fn web_nsg() -> Value {
    json!({
        "name": "webNsg",
        "flushConnection": true,
        "securityRules": [
            {
                "name": "AllowHttpsFromInternet",
                "description": "Public HTTPS to the web tier",
                "priority": 100, "direction": "Inbound", "access": "Allow", "protocol": "Tcp",
                "sourceAddressPrefix": "Internet", "sourcePortRange": "*",
                "destinationApplicationSecurityGroups": ["webAsg"],
                "destinationPortRanges": ["443", "8000-8080"]
            },
            {
                "name": "AllowSshFromOnPrem",
                "priority": 110, "direction": "Inbound", "access": "Allow", "protocol": "Tcp",
                "sourceAddressPrefixes": ["192.168.10.0/24", "192.168.20.0/24"], "sourcePortRange": "*",
                "destinationAddressPrefix": "*", "destinationPortRange": "22"
            },
            {
                "name": "AllowHealthProbes",
                "priority": 120, "direction": "Inbound", "access": "Allow", "protocol": "*",
                "sourceAddressPrefix": "AzureLoadBalancer", "sourcePortRange": "*",
                "destinationAddressPrefix": "*", "destinationPortRange": "*"
            },
            {
                "name": "AllowStorageOut",
                "priority": 200, "direction": "Outbound", "access": "Allow", "protocol": "Tcp",
                "sourceApplicationSecurityGroups": ["webAsg"], "sourcePortRange": "*",
                "destinationAddressPrefix": "Storage.WestEurope", "destinationPortRange": "443"
            },
            {
                "name": "AllowMonitoringOut",
                "priority": 210, "direction": "Outbound", "access": "Allow", "protocol": "Tcp",
                "sourceAddressPrefix": "VirtualNetwork", "sourcePortRange": "*",
                "destinationAddressPrefix": "AzureMonitor", "destinationPortRange": "443"
            },
            {
                "name": "DenyInternetOut",
                "priority": 4000, "direction": "Outbound", "access": "Deny", "protocol": "*",
                "sourceAddressPrefix": "*", "sourcePortRange": "*",
                "destinationAddressPrefix": "Internet", "destinationPortRange": "*"
            }
        ]
    })
}

#[test]
fn arm_nsg_alone_is_imported_field_by_field() {
    let imported = import(&["nsg-web.arm.json"]);
    assert_eq!(
        imported.document,
        json!({
            "serviceTags": { "Storage.WestEurope": [], "AzureMonitor": [] },
            "applicationSecurityGroups": ["webAsg"],
            "networkSecurityGroups": [web_nsg()]
        })
    );
    assert_eq!(
        keys(&imported.document),
        [
            "serviceTags",
            "applicationSecurityGroups",
            "networkSecurityGroups"
        ]
    );
    assert_eq!(
        keys(&imported.document["networkSecurityGroups"][0]["securityRules"][0]),
        [
            "name",
            "description",
            "priority",
            "direction",
            "access",
            "protocol",
            "sourceAddressPrefix",
            "sourcePortRange",
            "destinationApplicationSecurityGroups",
            "destinationPortRanges"
        ]
    );
    let warnings = &imported.warnings;
    assert_eq!(warnings.len(), 3, "{warnings:#?}");
    assert!(warnings[0].contains("NSG webNsg is associated with subnet hubVnet/web, but no VNet among the inputs defines that subnet"));
    assert!(warnings[1].contains("service tag Storage.WestEurope (used by rule AllowStorageOut of NSG webNsg) is not defined"));
    assert!(warnings[1].contains("Service Tags JSON"));
    assert!(warnings[2].contains("service tag AzureMonitor"));
}

#[test]
fn flattened_cli_form_gives_the_same_document() {
    let nested = import(&["nsg-web.arm.json"]);
    let flattened = import(&["nsg-web.cli.json"]);
    assert_eq!(flattened, nested);
}

#[test]
fn powershell_form_gives_the_same_document_as_rest() {
    let rest = import(&["nsg-rest-list.json"]);
    let powershell = import(&["nsg-app.powershell.json"]);
    let rest_nsgs = rest.document["networkSecurityGroups"].as_array().unwrap();
    assert_eq!(rest_nsgs.len(), 2);
    assert_eq!(
        rest_nsgs[1],
        json!({ "name": "emptyNsg", "securityRules": [] })
    );
    assert_eq!(
        powershell.document["networkSecurityGroups"],
        json!([rest_nsgs[0]])
    );
    assert_eq!(
        rest_nsgs[0]["securityRules"][0],
        json!({
            "name": "AllowHttpsFromHub",
            "priority": 100, "direction": "Inbound", "access": "Allow", "protocol": "Tcp",
            "sourceAddressPrefix": "10.0.1.0/24", "sourcePortRange": "*",
            "destinationAddressPrefix": "*", "destinationPortRanges": ["443", "8443"]
        })
    );
    assert_eq!(powershell.warnings, rest.warnings);
    assert_eq!(powershell.warnings.len(), 1);
    assert!(powershell.warnings[0].contains("subnet spokeVnet/app"));
}

const ESTATE: [&str; 8] = [
    "ServiceTags_Public_20241118.json",
    "nsg-web.arm.json",
    "nsg-list.cli.json",
    "nsg-rest-list.json",
    "vnet-hub.cli.json",
    "vnet-spoke.arm.json",
    "nic-web-vm-1.arm.json",
    "nic-db-vm-1.cli.json",
];

#[test]
fn whole_estate_resolves_across_files() {
    let imported = import(&ESTATE);
    assert_eq!(imported.warnings, Vec::<String>::new());
    let doc = &imported.document;
    assert_eq!(
        keys(doc),
        [
            "serviceTags",
            "applicationSecurityGroups",
            "vnets",
            "nics",
            "networkSecurityGroups"
        ]
    );
    assert_eq!(
        doc["serviceTags"],
        json!({
            "Storage.WestEurope": ["20.38.108.0/23", "20.60.26.0/23", "20.150.8.0/23", "2603:1020:206:1::/64"],
            "AzureMonitor": ["13.65.96.175/32", "13.66.60.119/32", "20.21.32.0/24"]
        })
    );
    // webAsg and dbAsg have member NICs; reportingAsg is only named by a rule.
    assert_eq!(doc["applicationSecurityGroups"], json!(["reportingAsg"]));
    assert_eq!(
        doc["vnets"],
        json!([
            {
                "name": "hubVnet", "addressSpace": ["10.0.0.0/16"], "peerings": ["spokeVnet"],
                "subnets": [
                    { "name": "web", "addressPrefix": "10.0.1.0/24", "networkSecurityGroup": "webNsg" },
                    { "name": "db", "addressPrefix": "10.0.2.0/24", "networkSecurityGroup": "dbNsg" }
                ]
            },
            {
                "name": "spokeVnet", "addressSpace": ["10.1.0.0/16", "fd00:1::/48"], "peerings": ["hubVnet"],
                "subnets": [
                    { "name": "app", "addressPrefixes": ["10.1.1.0/24", "fd00:1:1::/64"], "networkSecurityGroup": "appNsg" }
                ]
            }
        ])
    );
    assert_eq!(
        doc["nics"],
        json!([
            {
                "name": "web-vm-1-nic", "subnet": "hubVnet/web", "ipAddresses": ["10.0.1.4"],
                "networkSecurityGroup": "webVm1Nsg", "applicationSecurityGroups": ["webAsg"]
            },
            {
                "name": "db-vm-1-nic", "subnet": "hubVnet/db", "ipAddresses": ["10.0.2.4"],
                "applicationSecurityGroups": ["dbAsg"]
            }
        ])
    );
    let names: Vec<&str> = doc["networkSecurityGroups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|nsg| nsg["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["webNsg", "dbNsg", "webVm1Nsg", "appNsg", "emptyNsg"]
    );
    assert_eq!(doc["networkSecurityGroups"][0], web_nsg());
    assert_eq!(
        doc["networkSecurityGroups"][1]["securityRules"][0],
        json!({
            "name": "AllowSqlFromWeb",
            "priority": 100, "direction": "Inbound", "access": "Allow", "protocol": "Tcp",
            "sourceApplicationSecurityGroups": ["webAsg"], "sourcePortRange": "*",
            "destinationApplicationSecurityGroups": ["dbAsg"], "destinationPortRange": "1433"
        })
    );
    // flushConnection false is the default and is left out.
    assert_eq!(
        keys(&doc["networkSecurityGroups"][1]),
        ["name", "securityRules"]
    );
}

#[test]
fn associations_declared_only_by_the_nsg_are_filled_in() {
    let mut vnet = fixture("vnet-hub.cli.json");
    vnet["subnets"][1]
        .as_object_mut()
        .unwrap()
        .remove("networkSecurityGroup");
    let mut nic = fixture("nic-web-vm-1.arm.json");
    nic["properties"]
        .as_object_mut()
        .unwrap()
        .remove("networkSecurityGroup");
    let inputs = vec![
        input("nsg-list.cli.json"),
        ("vnet.json".to_string(), vnet),
        ("nic.json".to_string(), nic),
        input("nic-db-vm-1.cli.json"),
    ];
    let imported = import_documents(&inputs).unwrap();
    let doc = &imported.document;
    assert_eq!(
        doc["vnets"][0]["subnets"][1]["networkSecurityGroup"],
        "dbNsg"
    );
    assert_eq!(doc["nics"][0]["networkSecurityGroup"], "webVm1Nsg");
    // webNsg is not imported: the VNet's reference to it is kept and reported.
    assert_eq!(
        doc["vnets"][0]["subnets"][0]["networkSecurityGroup"],
        "webNsg"
    );
    assert!(imported
        .warnings
        .iter()
        .any(|w| w.contains("NSG webNsg, which is not among the inputs")));
    // The hub VNet peers with spokeVnet, which is not among the inputs.
    assert!(doc["vnets"][0].get("peerings").is_none());
    assert!(imported
        .warnings
        .iter()
        .any(|w| w.contains("peering of VNet hubVnet with spokeVnet is left out")));
}

#[test]
fn nic_configurations_in_different_asgs_are_reported() {
    let mut nic = fixture("nic-web-vm-1.arm.json");
    let mut second = nic["properties"]["ipConfigurations"][0].clone();
    second["properties"]["privateIPAddress"] = json!("10.0.1.5");
    second["properties"]["applicationSecurityGroups"] = json!([
        { "id": "/subscriptions/s/resourceGroups/r/providers/Microsoft.Network/applicationSecurityGroups/adminAsg" }
    ]);
    nic["properties"]["ipConfigurations"]
        .as_array_mut()
        .unwrap()
        .push(second);
    let imported = import_documents(&[("nic.json".into(), nic)]).unwrap();
    assert_eq!(
        imported.document["nics"][0]["ipAddresses"],
        json!(["10.0.1.4", "10.0.1.5"])
    );
    assert_eq!(
        imported.document["nics"][0]["applicationSecurityGroups"],
        json!(["webAsg", "adminAsg"])
    );
    assert!(imported
        .warnings
        .iter()
        .any(|w| w.contains("NIC web-vm-1-nic: its IP configurations belong to different ASGs")));
}

#[test]
fn malformed_addresses_are_not_taken_for_service_tags() {
    let mut nsg = fixture("nsg-web.cli.json");
    nsg["securityRules"][4]["destinationAddressPrefix"] = json!("10.0.0.0/33");
    let imported = import_documents(&[("webNsg.json".into(), nsg)]).unwrap();
    assert!(imported.document["serviceTags"]
        .get("10.0.0.0/33")
        .is_none());
    assert_eq!(
        imported.document["networkSecurityGroups"][0]["securityRules"][4]
            ["destinationAddressPrefix"],
        "10.0.0.0/33"
    );
}

#[test]
fn nic_without_its_vnet_or_nsg_is_reported() {
    let imported = import(&["nic-web-vm-1.arm.json"]);
    assert_eq!(imported.warnings.len(), 2, "{:#?}", imported.warnings);
    assert!(imported.warnings[0].contains(
        "NIC web-vm-1-nic is associated with NSG webVm1Nsg, which is not among the inputs"
    ));
    assert!(imported.warnings[1].contains(
        "NIC web-vm-1-nic is in subnet hubVnet/web, which no VNet among the inputs defines"
    ));
}

#[test]
fn disconnected_peerings_are_left_out() {
    let mut spoke = fixture("vnet-spoke.arm.json");
    spoke["properties"]["virtualNetworkPeerings"][0]["properties"]["peeringState"] =
        json!("Disconnected");
    let imported =
        import_documents(&[input("vnet-hub.cli.json"), ("spoke.json".into(), spoke)]).unwrap();
    assert!(imported.document["vnets"][1].get("peerings").is_none());
    assert!(imported
        .warnings
        .iter()
        .any(|w| w.contains("spokeVnet with hubVnet is Disconnected")));
}

/// A NIC whose configurations have no private address (a deallocated VM)
/// is left out whole: a NIC with no address would not load.
#[test]
fn nic_without_any_address_is_left_out() {
    let mut nic = fixture("nic-db-vm-1.cli.json");
    for configuration in nic["ipConfigurations"].as_array_mut().unwrap() {
        configuration
            .as_object_mut()
            .unwrap()
            .remove("privateIPAddress");
    }
    let imported = import_documents(&[("nic.json".into(), nic)]).unwrap();
    assert!(
        imported.document.get("nics").is_none(),
        "{}",
        to_yaml(&imported.document)
    );
    assert!(imported
        .warnings
        .iter()
        .any(|w| w.contains("NIC db-vm-1-nic: no IP configuration has a private address")));
}

/// A peered VNet missing from the inputs still counts in `VirtualNetwork`:
/// the peering reports its address space, so it stands in without subnets.
#[test]
fn a_peered_vnet_missing_from_the_inputs_stands_in_with_its_reported_space() {
    let mut spoke = fixture("vnet-spoke.arm.json");
    spoke["properties"]["virtualNetworkPeerings"][0]["properties"]["remoteAddressSpace"] =
        json!({"addressPrefixes": ["10.0.0.0/16"]});
    let imported = import_documents(&[("spoke.json".into(), spoke.clone())]).unwrap();
    let vnets = imported.document["vnets"].as_array().unwrap();
    assert_eq!(vnets.len(), 2, "{}", to_yaml(&imported.document));
    assert_eq!(vnets[0]["peerings"], json!(["hubVnet"]));
    assert_eq!(vnets[1]["name"], "hubVnet");
    assert_eq!(vnets[1]["addressSpace"], json!(["10.0.0.0/16"]));
    assert_eq!(vnets[1]["subnets"], json!([]));
    assert!(imported
        .warnings
        .iter()
        .any(|w| w.contains("VNet hubVnet (peered with spokeVnet) is not among the inputs")));

    // Without a reported space there is nothing to stand in: left out.
    spoke["properties"]["virtualNetworkPeerings"][0]["properties"]
        .as_object_mut()
        .unwrap()
        .remove("remoteAddressSpace");
    let imported = import_documents(&[("spoke.json".into(), spoke)]).unwrap();
    assert_eq!(imported.document["vnets"].as_array().unwrap().len(), 1);
}

#[test]
fn peerings_closed_to_virtual_network_access_are_left_out_on_both_sides() {
    let mut spoke = fixture("vnet-spoke.arm.json");
    spoke["properties"]["virtualNetworkPeerings"][0]["properties"]["allowVirtualNetworkAccess"] =
        json!(false);
    let imported =
        import_documents(&[input("vnet-hub.cli.json"), ("spoke.json".into(), spoke)]).unwrap();
    for vnet in imported.document["vnets"].as_array().unwrap() {
        assert!(vnet.get("peerings").is_none(), "{vnet}");
    }
    assert!(imported
        .warnings
        .iter()
        .any(|w| w.contains("spokeVnet with hubVnet does not allow virtual network access")));
}

/// Rules (and subnets) that an exported template lists both inline and as
/// child resources are one rule; the rule count stays as the NSG has it.
#[test]
fn rules_listed_inline_and_as_child_resources_are_imported_once() {
    let nsg = fixture("nsg-web.arm.json");
    let rules = nsg["properties"]["securityRules"]
        .as_array()
        .unwrap()
        .clone();
    let mut resources = vec![json!({
        "type": "Microsoft.Network/networkSecurityGroups",
        "name": "webNsg",
        "properties": nsg["properties"].clone(),
    })];
    for rule in &rules {
        resources.push(json!({
            "type": "Microsoft.Network/networkSecurityGroups/securityRules",
            "name": format!("webNsg/{}", rule["name"].as_str().unwrap()),
            "properties": rule["properties"].clone(),
        }));
    }
    let template = json!({
        "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
        "contentVersion": "1.0.0.0",
        "resources": resources,
    });
    let imported = import_documents(&[("export.json".into(), template)]).unwrap();
    let imported_rules = imported.document["networkSecurityGroups"][0]["securityRules"]
        .as_array()
        .unwrap();
    assert_eq!(imported_rules.len(), rules.len());
}

/// Azure accepts ports on Icmp/Esp/Ah rules; policy-format.md wants `*`.
/// Ports covering every port become `*`; others can never match a portless
/// packet, so the rule is left out with a warning.
#[test]
fn ports_on_portless_rules_become_star_or_the_rule_is_left_out() {
    let mut nsg = fixture("nsg-web.cli.json");
    nsg["securityRules"][0]["protocol"] = json!("Icmp");
    nsg["securityRules"][0]["destinationPortRanges"] = json!(["0-1000", "1001-65535"]);
    nsg["securityRules"][1]["protocol"] = json!("Esp");
    nsg["securityRules"][1]["destinationPortRange"] = json!("500");
    let imported = import_documents(&[("webNsg.json".into(), nsg)]).unwrap();
    let rules = imported.document["networkSecurityGroups"][0]["securityRules"]
        .as_array()
        .unwrap();
    assert_eq!(rules[0]["name"], "AllowHttpsFromInternet");
    assert_eq!(rules[0]["destinationPortRange"], "*");
    assert!(rules[0].get("destinationPortRanges").is_none());
    assert!(rules.iter().all(|r| r["name"] != "AllowSshFromOnPrem"));
    assert!(imported
        .warnings
        .iter()
        .any(|w| w.contains("rule `AllowSshFromOnPrem`: a `Esp` rule with ports `500`")));
    assert_loads(&imported);
}

/// `""` in a singular field means "not set", next to its plural or ASGs.
#[test]
fn empty_strings_in_singular_fields_mean_unset() {
    let mut nsg = fixture("nsg-web.cli.json");
    nsg["securityRules"][0]["destinationAddressPrefix"] = json!("");
    nsg["securityRules"][1]["sourceAddressPrefix"] = json!("");
    nsg["securityRules"][1]["destinationPortRanges"] = json!([]);
    nsg["securityRules"][0]["sourcePortRanges"] = json!([""]);
    let imported = import_documents(&[("webNsg.json".into(), nsg)]).unwrap();
    assert_eq!(imported.document["networkSecurityGroups"][0], web_nsg());
}

/// The `az network list-service-tags` form carries a `type` of its own; its
/// tags are imported as from the downloaded file. One tag spelled in two
/// cases is one entry.
#[test]
fn service_tags_from_the_cli_form_and_in_any_case_are_one_entry() {
    let mut tags = fixture("ServiceTags_Public_20241118.json");
    tags["type"] = json!("Microsoft.Network/serviceTags");
    let mut nsg = fixture("nsg-web.cli.json");
    nsg["securityRules"][4]["destinationAddressPrefix"] = json!("storage.westeurope");
    let imported =
        import_documents(&[("tags.json".into(), tags), ("webNsg.json".into(), nsg)]).unwrap();
    let section = imported.document["serviceTags"].as_object().unwrap();
    let storage: Vec<&String> = section
        .keys()
        .filter(|k| k.eq_ignore_ascii_case("Storage.WestEurope"))
        .collect();
    assert_eq!(storage, ["Storage.WestEurope"], "{section:?}");
    assert!(!section["Storage.WestEurope"].as_array().unwrap().is_empty());
    assert_loads(&imported);
}

#[test]
fn service_tags_not_usable_in_nsgs_are_reported() {
    let mut nsg = fixture("nsg-web.arm.json");
    nsg["properties"]["securityRules"][4]["properties"]["destinationAddressPrefix"] =
        json!("AzureDevOps");
    let imported = import_documents(&[
        input("ServiceTags_Public_20241118.json"),
        ("webNsg.json".into(), nsg),
    ])
    .unwrap();
    assert_eq!(imported.document["serviceTags"]["AzureDevOps"], json!([]));
    assert!(imported.warnings.iter().any(|w| w.contains(
        "service tag AzureDevOps (used by rule AllowMonitoringOut of NSG webNsg) is not usable in NSG rules according to ServiceTags_Public_20241118.json"
    )));
}

#[test]
fn legacy_tag_spellings_become_builtin_names() {
    let mut nsg = fixture("nsg-web.cli.json");
    nsg["securityRules"][4]["sourceAddressPrefix"] = json!("VIRTUAL_NETWORK");
    nsg["securityRules"][2]["sourceAddressPrefix"] = json!("AZURE_LOADBALANCER");
    let imported = import_documents(&[("webNsg.json".into(), nsg)]).unwrap();
    assert_eq!(imported.document["networkSecurityGroups"][0], web_nsg());
}

#[test]
fn arm_template_resources_are_imported() {
    let imported = import(&["template.json"]);
    assert_eq!(
        imported.document,
        json!({
            "applicationSecurityGroups": ["tplSpareAsg", "tplWebAsg"],
            "vnets": [{
                "name": "tplVnet", "addressSpace": ["10.2.0.0/16"],
                "subnets": [{ "name": "front", "addressPrefix": "10.2.1.0/24", "networkSecurityGroup": "tplNsg" }]
            }],
            "networkSecurityGroups": [{
                "name": "tplNsg",
                "securityRules": [
                    {
                        "name": "AllowHttp", "description": "[beta] plain HTTP",
                        "priority": 100, "direction": "Inbound", "access": "Allow", "protocol": "Tcp",
                        "sourceAddressPrefix": "Internet", "sourcePortRange": "*",
                        "destinationApplicationSecurityGroups": ["tplWebAsg"], "destinationPortRange": "80"
                    },
                    {
                        "name": "AllowHttpAlt",
                        "priority": 110, "direction": "Inbound", "access": "Allow", "protocol": "Tcp",
                        "sourceAddressPrefix": "Internet", "sourcePortRange": "*",
                        "destinationAddressPrefix": "10.2.1.0/24", "destinationPortRange": "8080"
                    },
                    {
                        "name": "DenyUdp",
                        "priority": 4000, "direction": "Inbound", "access": "Deny", "protocol": "Udp",
                        "sourceAddressPrefix": "*", "sourcePortRange": "*",
                        "destinationAddressPrefix": "*", "destinationPortRange": "*"
                    }
                ]
            }]
        })
    );
    assert_eq!(
        imported.warnings,
        ["template.json: skipped resources[6] (type Microsoft.Compute/virtualMachines): nsgd does not import this resource type"]
    );
}

/// Exported templates name everything through parameters with defaults and
/// build ids with `resourceId`: evaluated, they import as the literal
/// template does.
#[test]
fn template_expressions_exports_use_are_evaluated() {
    let literal = fixture("template.json");
    let mut template = literal.clone();
    let nsg_name = literal["resources"][2]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let asg_id = literal["resources"][2]["properties"]["securityRules"][0]["properties"]
        ["destinationApplicationSecurityGroups"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let asg_name = asg_id.rsplit('/').next().unwrap().to_string();
    template["parameters"] = json!({"nsgName": {"type": "string", "defaultValue": nsg_name}});
    template["variables"] = json!({"asgName": asg_name});
    template["resources"][2]["name"] = json!("[parameters('nsgName')]");
    template["resources"][2]["properties"]["securityRules"][0]["properties"]
        ["destinationApplicationSecurityGroups"][0]["id"] =
        json!("[resourceId('Microsoft.Network/applicationSecurityGroups', variables('asgName'))]");
    let evaluated = import_documents(&[("template.json".into(), template)]).unwrap();
    let expected = import_documents(&[("template.json".into(), literal)]).unwrap();
    assert_eq!(evaluated.document, expected.document);
}

/// Exported templates write a VNet's peerings as child resources too.
/// `az network nsg rule list` gives rules under their own names; the id
/// names their NSG.
#[test]
fn rules_listed_on_their_own_find_their_nsg_by_id() {
    let nsg_id = "/subscriptions/1/resourceGroups/rg/providers/Microsoft.Network/networkSecurityGroups/web-nsg";
    let nsg = json!({"name": "web-nsg", "id": nsg_id,
        "type": "Microsoft.Network/networkSecurityGroups", "securityRules": []});
    let rules = json!([{
        "name": "AllowSsh", "id": format!("{nsg_id}/securityRules/AllowSsh"),
        "type": "Microsoft.Network/networkSecurityGroups/securityRules",
        "protocol": "Tcp", "access": "Allow", "priority": 100, "direction": "Inbound",
        "sourceAddressPrefix": "*", "sourcePortRange": "*",
        "destinationAddressPrefix": "*", "destinationPortRange": "22"
    }]);
    let imported =
        import_documents(&[("nsg.json".into(), nsg), ("rules.json".into(), rules)]).unwrap();
    let rule = &imported.document["networkSecurityGroups"][0]["securityRules"][0];
    assert_eq!(rule["name"], "AllowSsh");
    assert_eq!(rule["destinationPortRange"], "22");
}

#[test]
fn template_peering_child_resources_are_imported() {
    let vnet = |name: &str, space: &str| {
        json!({
            "type": "Microsoft.Network/virtualNetworks",
            "name": name,
            "properties": {"addressSpace": {"addressPrefixes": [space]}, "subnets": []}
        })
    };
    let template = json!({
        "contentVersion": "1.0.0.0",
        "parameters": {"hub": {"type": "string", "defaultValue": "hubVnet"}},
        "resources": [
            vnet("[parameters('hub')]", "10.0.0.0/16"),
            vnet("spokeVnet", "10.1.0.0/16"),
            {
                "type": "Microsoft.Network/virtualNetworks/virtualNetworkPeerings",
                "name": "[concat(parameters('hub'), '/hub-to-spoke')]",
                "properties": {
                    "peeringState": "Connected",
                    "remoteVirtualNetwork": {
                        "id": "[resourceId('Microsoft.Network/virtualNetworks', 'spokeVnet')]"
                    }
                }
            }
        ]
    });
    let imported = import_documents(&[("export.json".into(), template)]).unwrap();
    let vnets = imported.document["vnets"].as_array().unwrap();
    assert_eq!(vnets[0]["name"], "hubVnet");
    assert_eq!(vnets[0]["peerings"], json!(["spokeVnet"]));
    assert_loads(&imported);
}

#[test]
fn template_expressions_are_errors_naming_file_and_field() {
    let mut template = fixture("template.json");
    template["resources"][2]["name"] = json!("[parameters('nsgName')]");
    let message = import_error(vec![("template.json".into(), template)]);
    assert!(
        message.starts_with(
            "in template.json at resources[2].name: the ARM template expression `[parameters('nsgName')]` cannot be resolved"
        ),
        "{message}"
    );

    let mut template = fixture("template.json");
    template["resources"][2]["properties"]["securityRules"][0]["properties"]
        ["destinationApplicationSecurityGroups"][0]["id"] =
        json!("[resourceId('Microsoft.Network/applicationSecurityGroups', variables('asgName'))]");
    let message = import_error(vec![("template.json".into(), template)]);
    assert!(
        message.starts_with(
            "in template.json at resources[2].properties.securityRules[0].properties.destinationApplicationSecurityGroups[0].id: the ARM template expression `[resourceId("
        ),
        "{message}"
    );

    // An expression where a list belongs.
    let mut template = fixture("template.json");
    template["resources"][4]["properties"]["addressSpace"]["addressPrefixes"] =
        json!("[variables('space')]");
    let message = import_error(vec![("template.json".into(), template)]);
    assert!(
        message.starts_with("in template.json at resources[4].properties.addressSpace.addressPrefixes: the ARM template expression"),
        "{message}"
    );
}

#[test]
fn wrong_types_are_errors_with_file_and_path() {
    let mut nsg = fixture("nsg-web.arm.json");
    nsg["properties"]["securityRules"][2]["properties"]["priority"] = json!("120");
    assert_eq!(
        import_error(vec![("webNsg.json".into(), nsg)]),
        "in webNsg.json at properties.securityRules[2].properties.priority: expected an integer, found the string \"120\""
    );

    let mut nsg = fixture("nsg-web.cli.json");
    nsg["securityRules"][1]["priority"] = json!(-5);
    assert_eq!(
        import_error(vec![("webNsg.json".into(), nsg)]),
        "in webNsg.json at securityRules[1].priority: expected a non-negative integer, found the number -5"
    );

    let mut list = fixture("nsg-list.cli.json");
    list[1]["securityRules"][0]["destinationPortRanges"] = json!({ "a": 1 });
    assert_eq!(
        import_error(vec![("nsgs.json".into(), list)]),
        "in nsgs.json at [1].securityRules[0].destinationPortRanges: expected an array of strings, found an object"
    );

    let mut nsg = fixture("nsg-web.arm.json");
    nsg["properties"]["securityRules"] = json!(7);
    assert_eq!(
        import_error(vec![("webNsg.json".into(), nsg)]),
        "in webNsg.json at properties.securityRules: expected an array, found the number 7"
    );
}

#[test]
fn invalid_values_are_errors_with_file_and_path() {
    let mut nsg = fixture("nsg-web.arm.json");
    nsg["properties"]["securityRules"][0]["properties"]["protocol"] = json!("Gre");
    assert_eq!(
        import_error(vec![("webNsg.json".into(), nsg)]),
        "in webNsg.json at properties.securityRules[0].properties.protocol: protocol `Gre` is not one of Tcp, Udp, Icmp, Esp, Ah, *"
    );

    let mut nsg = fixture("nsg-web.arm.json");
    nsg["properties"]["securityRules"][0]["properties"]["destinationAddressPrefix"] =
        json!("10.0.1.0/24");
    let message = import_error(vec![("webNsg.json".into(), nsg)]);
    assert!(
        message.starts_with("in webNsg.json at properties.securityRules[0].properties.destinationApplicationSecurityGroups: the rule gives both address prefixes and application security groups"),
        "{message}"
    );

    let mut nsg = fixture("nsg-web.arm.json");
    nsg["properties"]["securityRules"][1]["properties"]["destinationPortRanges"] = json!(["80"]);
    let message = import_error(vec![("webNsg.json".into(), nsg)]);
    assert!(
        message.starts_with("in webNsg.json at properties.securityRules[1].properties.destinationPortRange: both `destinationPortRange` and `destinationPortRanges` are set"),
        "{message}"
    );

    let mut nsg = fixture("nsg-web.arm.json");
    nsg["properties"]["securityRules"][1]["properties"]["direction"] = json!("Sideways");
    assert_eq!(
        import_error(vec![("webNsg.json".into(), nsg)]),
        "in webNsg.json at properties.securityRules[1].properties.direction: direction `sideways` is neither Inbound nor Outbound"
    );

    let mut nsg = fixture("nsg-web.arm.json");
    nsg["properties"]["securityRules"][1]["properties"]
        .as_object_mut()
        .unwrap()
        .remove("access");
    assert_eq!(
        import_error(vec![("webNsg.json".into(), nsg)]),
        "in webNsg.json at properties.securityRules[1]: the rule has no `access`"
    );

    let mut nic = fixture("nic-db-vm-1.cli.json");
    nic["ipConfigurations"][0]["subnet"]["id"] = json!("/subscriptions/x/resourceGroups/y");
    let message = import_error(vec![("nic.json".into(), nic)]);
    assert!(message.starts_with("in nic.json at ipConfigurations[0].subnet.id: `/subscriptions/x/resourceGroups/y` is not a subnet id"), "{message}");
}

#[test]
fn singular_and_plural_that_agree_are_accepted() {
    let mut nsg = fixture("nsg-web.arm.json");
    nsg["properties"]["securityRules"][1]["properties"]["destinationPortRanges"] = json!(["22"]);
    let imported = import_documents(&[("webNsg.json".into(), nsg)]).unwrap();
    assert_eq!(
        imported.document["networkSecurityGroups"][0]["securityRules"][1]["destinationPortRanges"],
        json!(["22"])
    );
}

#[test]
fn unrecognised_documents_are_errors() {
    assert_eq!(
        import_error(vec![("x.json".into(), json!({ "name": "thing", "properties": {} }))]),
        "in x.json at the top level: cannot tell which Azure resource this is: it has no `type` and none of `securityRules`, `defaultSecurityRules`, `addressSpace`, `ipConfigurations`"
    );
    let effective = json!({ "value": [{ "networkSecurityGroup": { "id": "/x/nsg" }, "association": {}, "effectiveSecurityRules": [] }] });
    let message = import_error(vec![("eff.json".into(), effective)]);
    assert!(
        message.starts_with("in eff.json at value[0]: this is an effective-rules view"),
        "{message}"
    );
    assert_eq!(
        import_error(vec![("n.json".into(), json!(42))]),
        "in n.json at the top level: expected a JSON object or array (an Azure resource, a list of resources, an ARM template or a Service Tags file)"
    );
}

#[test]
fn truncated_powershell_output_gets_a_hint() {
    let mut nsg = fixture("nsg-app.powershell.json");
    nsg["SecurityRules"][0] = json!("Microsoft.Azure.Commands.Network.Models.PSSecurityRule");
    let message = import_error(vec![("app.json".into(), nsg)]);
    assert!(
        message.starts_with("in app.json at SecurityRules[0]: expected an object"),
        "{message}"
    );
    assert!(message.contains("ConvertTo-Json -Depth"), "{message}");
}

#[test]
fn duplicate_names_across_inputs_name_both_files() {
    let message = import_error(vec![input("nsg-web.arm.json"), input("nsg-web.cli.json")]);
    assert_eq!(
        message,
        "network security group `webNsg` is defined twice: in nsg-web.arm.json at the top level and in nsg-web.cli.json at the top level"
    );
    // Azure names are case-insensitive.
    let mut other = fixture("nsg-web.cli.json");
    other["name"] = json!("WEBNSG");
    let message = import_error(vec![
        input("nsg-web.arm.json"),
        ("other.json".into(), other),
    ]);
    assert!(
        message.contains("`WEBNSG` is defined twice: in nsg-web.arm.json"),
        "{message}"
    );
    let message = import_error(vec![input("nsg-list.cli.json"), input("nsg-list.cli.json")]);
    assert!(
        message.contains("in nsg-list.cli.json at [0] and in nsg-list.cli.json at [0]"),
        "{message}"
    );
}

#[test]
fn default_rules_that_differ_are_reported() {
    let mut nsg = fixture("nsg-web.arm.json");
    let defaults = nsg["properties"]["defaultSecurityRules"]
        .as_array_mut()
        .unwrap();
    defaults[0]["properties"]["priority"] = json!(65010);
    defaults[1]["properties"]["sourceAddressPrefix"] = json!("Internet");
    defaults.remove(5);
    // The documented spellings `0.0.0.0/0` and `0-65535` mean the same as `*`.
    defaults[2]["properties"]["sourceAddressPrefix"] = json!("0.0.0.0/0");
    defaults[2]["properties"]["destinationPortRange"] = json!("0-65535");
    let imported = import_documents(&[("webNsg.json".into(), nsg)]).unwrap();
    let defaults: Vec<&String> = imported
        .warnings
        .iter()
        .filter(|w| w.contains("default rule"))
        .collect();
    assert_eq!(defaults.len(), 3, "{defaults:#?}");
    assert_eq!(
        defaults[0],
        "webNsg.json: NSG webNsg: the default rule AllowVnetInBound differs from Azure's standard one: priority 65010 (standard: 65000); nsgd applies the standard rule"
    );
    assert!(defaults[1].contains("AllowAzureLoadBalancerInBound differs from Azure's standard one: source Internet (standard: AzureLoadBalancer)"));
    assert!(defaults[2].contains("NSG webNsg lacks the default rule DenyAllOutBound"));
}

#[test]
fn files_are_read_with_bom_and_utf16() {
    let dir = std::env::temp_dir().join(format!("nsgd-import-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let text = std::fs::read_to_string(Path::new(FIXTURES).join("nsg-web.cli.json")).unwrap();
    let bom = dir.join("bom.json");
    std::fs::write(&bom, [b"\xEF\xBB\xBF".as_slice(), text.as_bytes()].concat()).unwrap();
    let utf16 = dir.join("utf16.json");
    let mut bytes = vec![0xFF, 0xFE];
    bytes.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
    std::fs::write(&utf16, bytes).unwrap();
    let expected = import(&["nsg-web.cli.json"]);
    assert_eq!(import_files(std::slice::from_ref(&bom)).unwrap(), expected);
    assert_eq!(import_files(&[utf16]).unwrap(), expected);

    std::fs::write(&bom, "{ not json").unwrap();
    let message = import_files(std::slice::from_ref(&bom))
        .unwrap_err()
        .to_string();
    assert!(
        message.starts_with(&format!("{} is not valid JSON", bom.display())),
        "{message}"
    );
    let missing = dir.join("missing.json");
    assert!(matches!(
        import_files(&[missing]),
        Err(ImportError::Read { .. })
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---- YAML writer -------------------------------------------------------------

/// A YAML document read back with an independent parser, as JSON.
fn yaml_to_json(text: &str) -> Value {
    use saphyr::{LoadableYamlNode, Scalar, Yaml};
    fn convert(node: &Yaml) -> Value {
        match node {
            Yaml::Value(Scalar::Null) => Value::Null,
            Yaml::Value(Scalar::Boolean(flag)) => Value::Bool(*flag),
            Yaml::Value(Scalar::Integer(number)) => json!(number),
            Yaml::Value(Scalar::FloatingPoint(number)) => json!(number.into_inner()),
            Yaml::Value(Scalar::String(text)) => Value::String(text.to_string()),
            Yaml::Sequence(items) => items.iter().map(convert).collect(),
            Yaml::Mapping(map) => Value::Object(
                map.iter()
                    .map(|(key, value)| match key {
                        Yaml::Value(Scalar::String(text)) => (text.to_string(), convert(value)),
                        other => panic!("non-string key {other:?}"),
                    })
                    .collect(),
            ),
            other => panic!("unexpected YAML node {other:?}"),
        }
    }
    let documents = Yaml::load_from_str(text).unwrap_or_else(|error| panic!("{error}\n{text}"));
    assert_eq!(documents.len(), 1, "{text}");
    convert(&documents[0])
}

#[test]
fn yaml_of_the_estate_reads_back_as_the_same_value() {
    let imported = import(&ESTATE);
    let yaml = to_yaml(&imported.document);
    assert_eq!(yaml_to_json(&yaml), imported.document);
    // Key order survives too (serde_json keeps insertion order here).
    assert_eq!(keys(&yaml_to_json(&yaml)), keys(&imported.document));
    assert!(yaml.contains("        sourcePortRange: '*'\n"));
    assert!(yaml.contains("          - '443'\n          - '8000-8080'\n"));
    assert!(yaml.contains("      - 'fd00:1::/48'\n"));
    assert!(yaml.contains("    - 10.0.1.4\n"));
    assert!(yaml.contains("  - name: emptyNsg\n    securityRules: []\n"));
    let json = to_json_pretty(&imported.document);
    assert_eq!(
        serde_json::from_str::<Value>(&json).unwrap(),
        imported.document
    );
    assert!(json.ends_with("}\n"));
}

#[test]
fn yaml_quotes_strings_that_would_read_as_something_else() {
    let strings = [
        "*",
        "443",
        "8000-8080",
        "true",
        "False",
        "yes",
        "off",
        "null",
        "~",
        "",
        " lead",
        "trail ",
        "a: b",
        "a #b",
        "#c",
        "- x",
        "-1",
        "+1",
        "1e5",
        ".5",
        "0x1F",
        "0o17",
        "1_000",
        ".inf",
        ".NaN",
        "2024-01-31",
        "12:30",
        "fd00::",
        "'quoted'",
        "\"dq\"",
        "back\\slash",
        "tab\there",
        "new\nline",
        "bell\u{7}",
        "nel\u{85}",
        "ls\u{2028}",
        "bom\u{FEFF}",
        "é and 漢字",
        "[list]",
        "{map}",
        "&anchor",
        "!tag",
        "|",
        ">",
        "%",
        "@",
        "`",
        "...",
        "---",
        "? q",
        "a, b",
        "=",
        "<<",
    ];
    let long_key = "k".repeat(1500);
    let document = json!({
        "strings": strings.as_slice(),
        "keys": strings.iter().map(|s| (s.to_string(), json!(s))).collect::<serde_json::Map<_, _>>(),
        "numbers": [0, 1, -7, 100, 4096, 1.5, -0.25, 1e300],
        "long": [{ long_key.as_str(): 1, "after": 2 }, { "before": 1, long_key.as_str(): { "x": [] } }],
        "others": [true, false, null, [], {}, [[1, [2]], {"a": []}]]
    });
    let yaml = to_yaml(&document);
    assert_eq!(yaml_to_json(&yaml), document, "{yaml}");
}

fn arbitrary_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        (-1.0e6f64..1.0e6).prop_map(|n| json!(n)),
        any::<String>().prop_map(Value::String),
        "[-+ .:#*!&'\"0-9a-zA-Z_\\[\\]{}|>%@`?,\t\n~]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(("[a-zA-Z0-9 :#*'.-]{0,8}", inner), 0..6)
                .prop_map(|entries| Value::Object(entries.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn yaml_round_trips_any_json(value in arbitrary_json()) {
        let yaml = to_yaml(&value);
        prop_assert_eq!(yaml_to_json(&yaml), value);
    }
}

// ---- hostile input ---------------------------------------------------------------

/// Every value in a document, as a JSON pointer.
fn pointers(value: &Value, prefix: String, out: &mut Vec<String>) {
    out.push(prefix.clone());
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                let escaped = key.replace('~', "~0").replace('/', "~1");
                pointers(child, format!("{prefix}/{escaped}"), out);
            }
        }
        Value::Array(items) => {
            for (index, child) in items.iter().enumerate() {
                pointers(child, format!("{prefix}/{index}"), out);
            }
        }
        _ => {}
    }
}

fn replacement(kind: u8) -> Value {
    match kind % 10 {
        0 => Value::Null,
        1 => json!(true),
        2 => json!(-1),
        3 => json!(1.5),
        4 => json!(""),
        5 => json!("[parameters('x')]"),
        6 => json!([]),
        7 => json!({}),
        8 => json!([null, 3, {"id": 4}]),
        _ => json!(u64::MAX),
    }
}

const HOSTILE_INPUTS: [&str; 11] = [
    "ServiceTags_Public_20241118.json",
    "nsg-web.arm.json",
    "nsg-web.cli.json",
    "nsg-list.cli.json",
    "nsg-rest-list.json",
    "nsg-app.powershell.json",
    "vnet-hub.cli.json",
    "vnet-spoke.arm.json",
    "nic-web-vm-1.arm.json",
    "nic-db-vm-1.cli.json",
    "template.json",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]
    #[test]
    fn hostile_json_is_an_error_or_a_document_never_a_panic(
        file in 0..HOSTILE_INPUTS.len(),
        picks in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut document = fixture(HOSTILE_INPUTS[file]);
        for (pick, kind) in picks {
            let mut all = Vec::new();
            pointers(&document, String::new(), &mut all);
            let pointer = pick.get(&all).clone();
            if pointer.is_empty() {
                document = replacement(kind);
            } else if let Some(slot) = document.pointer_mut(&pointer) {
                *slot = replacement(kind);
            }
        }
        let inputs = vec![(HOSTILE_INPUTS[file].to_string(), document)];
        if let Ok(imported) = import_documents(&inputs) {
            let yaml = to_yaml(&imported.document);
            prop_assert_eq!(yaml_to_json(&yaml), imported.document);
        }
    }
}

// ---- the example in configs/ -----------------------------------------------------

#[test]
fn configs_example_is_what_the_importer_makes_of_the_export() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(root.join("azure-export"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    paths.sort();
    let imported = import_files(&paths).unwrap();
    assert_eq!(imported.warnings, Vec::<String>::new());
    let yaml = format!(
        "# Generated by the Azure importer from configs/azure-export/*.json\n\
         # (regenerate: NSGD_BLESS=1 cargo test --test import configs_example).\n{}",
        to_yaml(&imported.document)
    );
    let committed_path = root.join("imported-from-azure.yaml");
    if std::env::var_os("NSGD_BLESS").is_some() {
        std::fs::write(&committed_path, &yaml).unwrap();
    }
    let committed = std::fs::read_to_string(&committed_path).unwrap();
    assert_eq!(
        committed, yaml,
        "configs/imported-from-azure.yaml is stale; regenerate it with NSGD_BLESS=1"
    );
}
