//! Recognising what a document is: one resource, a list of them (`az ... list`
//! array or REST `{ "value": [...] }`), an ARM template, or a Service Tags file;
//! and which resource kind each object is, from `type` or, when that is absent
//! (PowerShell output, hand-trimmed files), from its shape. Owns no parsing of
//! resource fields.

use serde_json::Value;

use super::error::ImportError;
use super::json::Node;

/// The resource kinds the importer reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    NetworkSecurityGroup,
    /// A template child resource `networkSecurityGroups/securityRules`.
    SecurityRule,
    VirtualNetwork,
    /// A template child resource `virtualNetworks/subnets`.
    Subnet,
    /// A template child resource `virtualNetworks/virtualNetworkPeerings`.
    Peering,
    NetworkInterface,
    ApplicationSecurityGroup,
    /// One `values[]` entry of a Service Tags file.
    ServiceTag,
}

impl Kind {
    fn from_type(resource_type: &str) -> Option<Kind> {
        let lower = resource_type.to_ascii_lowercase();
        Some(match lower.as_str() {
            "microsoft.network/networksecuritygroups" => Kind::NetworkSecurityGroup,
            "microsoft.network/networksecuritygroups/securityrules" => Kind::SecurityRule,
            "microsoft.network/virtualnetworks" => Kind::VirtualNetwork,
            "microsoft.network/virtualnetworks/subnets" => Kind::Subnet,
            "microsoft.network/virtualnetworks/virtualnetworkpeerings" => Kind::Peering,
            "microsoft.network/networkinterfaces" => Kind::NetworkInterface,
            "microsoft.network/applicationsecuritygroups" => Kind::ApplicationSecurityGroup,
            _ => return None,
        })
    }

    fn full_type(self) -> &'static str {
        match self {
            Kind::NetworkSecurityGroup => "Microsoft.Network/networkSecurityGroups",
            Kind::SecurityRule => "Microsoft.Network/networkSecurityGroups/securityRules",
            Kind::VirtualNetwork => "Microsoft.Network/virtualNetworks",
            Kind::Subnet => "Microsoft.Network/virtualNetworks/subnets",
            Kind::Peering => "Microsoft.Network/virtualNetworks/virtualNetworkPeerings",
            Kind::NetworkInterface => "Microsoft.Network/networkInterfaces",
            Kind::ApplicationSecurityGroup => "Microsoft.Network/applicationSecurityGroups",
            Kind::ServiceTag => "service tag",
        }
    }
}

/// One resource object found in a document.
#[derive(Debug, Clone)]
pub(crate) struct Resource<'a> {
    pub kind: Kind,
    pub node: Node<'a>,
    /// For a template child resource nested in its parent's `resources`: the
    /// parent's name (the child's own `name` is then relative).
    pub parent: Option<String>,
}

/// Splits a document into its resources, in document order. Resources of kinds
/// nsgd does not model are skipped with a warning.
pub(crate) fn collect<'a>(
    root: Node<'a>,
    out: &mut Vec<Resource<'a>>,
    warnings: &mut Vec<String>,
) -> Result<(), ImportError> {
    match root.value {
        Value::Array(_) => {
            for item in root.items()? {
                resource(item, None, out, warnings)?;
            }
            Ok(())
        }
        Value::Object(_) if root.key("type").is_none() => {
            if let Some(resources) = root.key("resources") {
                for item in resources.in_template().items()? {
                    resource(item, None, out, warnings)?;
                }
            } else if let Some(list) = root.key("value").filter(|n| n.value.is_array()) {
                for item in list.items()? {
                    resource(item, None, out, warnings)?;
                }
            } else if let Some(values) = root.key("values").filter(|n| n.value.is_array()) {
                service_tags(values, out)?;
            } else {
                resource(root, None, out, warnings)?;
            }
            Ok(())
        }
        Value::Object(_) => match service_tags_with_type(&root) {
            Some(values) => service_tags(values, out),
            None => resource(root, None, out, warnings),
        },
        _ => Err(unknown(
            &root,
            "expected a JSON object or array (an Azure resource, a list of resources, \
             an ARM template or a Service Tags file)",
        )),
    }
}

/// `az network list-service-tags` and `Get-AzNetworkServiceTag` give the
/// downloadable file's content a `type` of its own: its `values`, if so.
fn service_tags_with_type<'a>(root: &Node<'a>) -> Option<Node<'a>> {
    let resource_type = root.key("type")?;
    let resource_type = resource_type.value.as_str()?;
    if !resource_type.eq_ignore_ascii_case("Microsoft.Network/serviceTags") {
        return None;
    }
    root.key("values").filter(|values| values.value.is_array())
}

/// The `values[]` entries of a Service Tags file, one service tag each.
fn service_tags<'a>(values: Node<'a>, out: &mut Vec<Resource<'a>>) -> Result<(), ImportError> {
    for item in values.items()? {
        item.object()?;
        out.push(Resource {
            kind: Kind::ServiceTag,
            node: item,
            parent: None,
        });
    }
    Ok(())
}

fn resource<'a>(
    node: Node<'a>,
    parent: Option<(Kind, String)>,
    out: &mut Vec<Resource<'a>>,
    warnings: &mut Vec<String>,
) -> Result<(), ImportError> {
    node.object()?;
    let kind = match node.key("type") {
        Some(type_node) => {
            let written = type_node.string()?;
            let full = match &parent {
                Some((parent_kind, _)) if !written.contains('/') => {
                    format!("{}/{written}", parent_kind.full_type())
                }
                _ => written.clone(),
            };
            match Kind::from_type(&full) {
                Some(kind) => kind,
                None => {
                    warnings.push(format!(
                        "{}: skipped {} (type {written}): nsgd does not import this resource type",
                        node.source.file,
                        node.display_path()
                    ));
                    return Ok(());
                }
            }
        }
        None => kind_from_shape(&node)?,
    };
    let parent_name = parent.map(|(_, name)| name);
    out.push(Resource {
        kind,
        node: node.clone(),
        parent: parent_name,
    });
    // ARM templates may nest child resources (securityRules, subnets) in their parent.
    if node.source.template {
        if let Some(children) = node.key("resources") {
            let name = node
                .key("name")
                .ok_or_else(|| {
                    node.invalid("a template resource with child resources needs a `name`")
                })?
                .string()?;
            for child in children.items()? {
                resource(child, Some((kind, name.clone())), out, warnings)?;
            }
        }
    }
    Ok(())
}

fn kind_from_shape(node: &Node<'_>) -> Result<Kind, ImportError> {
    if node.field("securityRules").is_some() || node.field("defaultSecurityRules").is_some() {
        Ok(Kind::NetworkSecurityGroup)
    } else if node.field("addressSpace").is_some() {
        Ok(Kind::VirtualNetwork)
    } else if node.field("ipConfigurations").is_some() {
        Ok(Kind::NetworkInterface)
    } else if node.field("effectiveSecurityRules").is_some() {
        Err(unknown(
            node,
            "this is an effective-rules view (`az network nic list-effective-nsg`), which \
             cannot be turned back into rules; import the NSG itself (`az network nsg show`)",
        ))
    } else {
        Err(unknown(
            node,
            "cannot tell which Azure resource this is: it has no `type` and none of \
             `securityRules`, `defaultSecurityRules`, `addressSpace`, `ipConfigurations`",
        ))
    }
}

fn unknown(node: &Node<'_>, message: &str) -> ImportError {
    ImportError::UnknownShape {
        file: node.source.file.to_string(),
        path: node.display_path(),
        message: message.to_string(),
    }
}
