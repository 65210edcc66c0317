//! Reading the address context from exports: VNets (address space, subnets,
//! peerings), NICs (addresses, subnet, ASG membership, NSG), ASG resources and
//! Service Tags entries. Like `nsg`, reads one resource at a time and resolves
//! no references.

use serde_json::{Map, Value};

use super::error::ImportError;
use super::json::{subnet_path, Node};
use super::nsg::{one_or_many, OneOrMany};
use super::{resource_name, Origin};

#[derive(Debug, Clone)]
pub(crate) struct ParsedVnet {
    pub name: String,
    pub origin: Origin,
    pub address_space: Vec<String>,
    pub subnets: Vec<ParsedSubnet>,
    /// Names of the remote VNets of connected peerings.
    pub peerings: Vec<String>,
    /// Remote VNets of connected peerings that do not allow virtual network
    /// access: not part of `VirtualNetwork` on either side.
    pub closed_peerings: Vec<String>,
    /// The address space the peering reports for each remote VNet, which
    /// stands in for a remote VNet that is not among the inputs.
    pub remote_spaces: Vec<(String, Vec<String>)>,
}

#[derive(Debug, Clone)]
pub(crate) struct ParsedSubnet {
    pub name: String,
    pub origin: Origin,
    pub prefixes: OneOrMany,
    pub network_security_group: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct ParsedNic {
    pub name: String,
    pub origin: Origin,
    /// `<vnet>/<subnet>`.
    pub subnet: String,
    pub ip_addresses: Vec<String>,
    pub application_security_groups: Vec<String>,
    pub network_security_group: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct ParsedServiceTag {
    pub name: String,
    pub origin: Origin,
    pub prefixes: Vec<String>,
    /// False when the file's `networkFeatures` leaves out `NSG`.
    pub usable_in_nsg: bool,
}

impl ParsedVnet {
    pub fn read(node: &Node<'_>, warnings: &mut Vec<String>) -> Result<ParsedVnet, ImportError> {
        let name = resource_name(node)?;
        let space = node
            .field("addressSpace")
            .ok_or_else(|| node.invalid("the virtual network has no `addressSpace`"))?;
        let address_space = match space.key("addressPrefixes") {
            Some(prefixes) => prefixes.strings()?,
            None => return Err(space.invalid("the address space has no `addressPrefixes`")),
        };
        let mut subnets = Vec::new();
        if let Some(list) = node.field("subnets") {
            for subnet in list.items()? {
                subnets.push(ParsedSubnet::read(&subnet)?);
            }
        }
        let mut vnet = ParsedVnet {
            name,
            origin: Origin::of(node),
            address_space,
            subnets,
            peerings: Vec::new(),
            closed_peerings: Vec::new(),
            remote_spaces: Vec::new(),
        };
        if let Some(list) = node.field("virtualNetworkPeerings") {
            for peering in list.items()? {
                vnet.add_peering(&peering, warnings)?;
            }
        }
        Ok(vnet)
    }

    /// Takes one peering of this VNet (inline, or a template child resource
    /// `virtualNetworks/virtualNetworkPeerings`): connected and open to
    /// virtual network access, it joins `peerings`; otherwise it is left
    /// out with a warning.
    pub fn add_peering(
        &mut self,
        peering: &Node<'_>,
        warnings: &mut Vec<String>,
    ) -> Result<(), ImportError> {
        let name = &self.name;
        let remote = peering
            .field("remoteVirtualNetwork")
            .ok_or_else(|| peering.invalid("the peering has no `remoteVirtualNetwork`"))?;
        let remote = remote.reference_name()?;
        if let Some(state) = peering.field("peeringState") {
            let state = state.string()?;
            if !state.eq_ignore_ascii_case("Connected") {
                warnings.push(format!(
                    "{}: the peering of VNet {name} with {remote} is {state}, not \
                     Connected; it is left out",
                    peering.source.file
                ));
                return Ok(());
            }
        }
        let access = peering.field("allowVirtualNetworkAccess");
        if let Some(false) = access.map(|a| a.boolean()).transpose()? {
            warnings.push(format!(
                "{}: the peering of VNet {name} with {remote} does not allow virtual \
                 network access; it is left out on both sides (neither VNet's \
                 VirtualNetwork includes the other)",
                peering.source.file
            ));
            self.closed_peerings.push(remote);
            return Ok(());
        }
        let remote_space = ["remoteAddressSpace", "remoteVirtualNetworkAddressSpace"]
            .iter()
            .find_map(|key| peering.field(key))
            .and_then(|space| space.key("addressPrefixes"));
        if let Some(prefixes) = remote_space {
            let prefixes = prefixes.strings()?;
            if !prefixes.is_empty() {
                self.remote_spaces.push((remote.clone(), prefixes));
            }
        }
        if !self
            .peerings
            .iter()
            .any(|known| known.eq_ignore_ascii_case(&remote))
        {
            self.peerings.push(remote);
        }
        Ok(())
    }

    pub fn to_json(&self) -> Value {
        let mut out = Map::new();
        out.insert("name".into(), self.name.clone().into());
        out.insert("addressSpace".into(), self.address_space.clone().into());
        if !self.peerings.is_empty() {
            out.insert("peerings".into(), self.peerings.clone().into());
        }
        out.insert(
            "subnets".into(),
            self.subnets.iter().map(ParsedSubnet::to_json).collect(),
        );
        Value::Object(out)
    }
}

impl ParsedSubnet {
    pub fn read(node: &Node<'_>) -> Result<ParsedSubnet, ImportError> {
        node.object()?;
        let name = resource_name(node)?;
        let prefixes = one_or_many(node, "addressPrefix", "addressPrefixes")?.ok_or_else(|| {
            node.invalid("the subnet has neither `addressPrefix` nor `addressPrefixes`")
        })?;
        let network_security_group = node
            .field("networkSecurityGroup")
            .map(|nsg| nsg.reference_name())
            .transpose()?;
        Ok(ParsedSubnet {
            name,
            origin: Origin::of(node),
            prefixes,
            network_security_group,
        })
    }

    fn to_json(&self) -> Value {
        let mut out = Map::new();
        out.insert("name".into(), self.name.clone().into());
        match &self.prefixes {
            OneOrMany::One(prefix) => out.insert("addressPrefix".into(), prefix.clone().into()),
            OneOrMany::Many(prefixes) => {
                out.insert("addressPrefixes".into(), prefixes.clone().into())
            }
        };
        if let Some(nsg) = &self.network_security_group {
            out.insert("networkSecurityGroup".into(), nsg.clone().into());
        }
        Value::Object(out)
    }
}

impl ParsedNic {
    pub fn read(node: &Node<'_>, warnings: &mut Vec<String>) -> Result<ParsedNic, ImportError> {
        let name = resource_name(node)?;
        let configurations = node
            .field("ipConfigurations")
            .ok_or_else(|| node.invalid("the network interface has no `ipConfigurations`"))?;
        let mut subnet: Option<String> = None;
        let mut ip_addresses = Vec::new();
        let mut application_security_groups: Vec<String> = Vec::new();
        // Each configuration's ASG set, to warn when they differ.
        let mut configuration_asgs: Vec<Vec<String>> = Vec::new();
        for configuration in configurations.items()? {
            configuration.object()?;
            if let Some(subnet_node) = configuration.field("subnet") {
                let id_node = match subnet_node.value {
                    Value::Object(_) => subnet_node
                        .key("id")
                        .ok_or_else(|| subnet_node.invalid("the subnet reference has no `id`"))?,
                    _ => subnet_node.clone(),
                };
                let id = id_node.string()?;
                let path = subnet_path(&id).ok_or_else(|| {
                    id_node.invalid(format!(
                        "`{id}` is not a subnet id (…/virtualNetworks/<vnet>/subnets/<subnet>)"
                    ))
                })?;
                match &subnet {
                    Some(first) if !first.eq_ignore_ascii_case(&path) => {
                        return Err(id_node.invalid(format!(
                            "this IP configuration is in subnet {path} but an earlier one is \
                             in {first}; nsgd places each NIC in one subnet"
                        )))
                    }
                    Some(_) => {}
                    None => subnet = Some(path),
                }
            }
            match configuration.field("privateIPAddress") {
                Some(address) => ip_addresses.push(address.string()?),
                None => warnings.push(format!(
                    "{}: NIC {name}: {} has no private IP address (deallocated?); that configuration is left out",
                    node.source.file,
                    configuration.display_path()
                )),
            }
            let mut members = match configuration.field("applicationSecurityGroups") {
                Some(list) => list.reference_names()?,
                None => Vec::new(),
            };
            let mut key: Vec<String> = members.iter().map(|a| a.to_ascii_lowercase()).collect();
            key.sort();
            key.dedup();
            configuration_asgs.push(key);
            for asg in members.drain(..) {
                if !application_security_groups
                    .iter()
                    .any(|known| known.eq_ignore_ascii_case(&asg))
                {
                    application_security_groups.push(asg);
                }
            }
        }
        if configuration_asgs.windows(2).any(|pair| pair[0] != pair[1]) {
            warnings.push(format!(
                "{}: NIC {name}: its IP configurations belong to different ASGs; nsgd keeps \
                 ASG membership per NIC, so every address of the NIC is placed in all of \
                 them ({})",
                node.source.file,
                application_security_groups.join(", ")
            ));
        }
        let subnet =
            subnet.ok_or_else(|| configurations.invalid("no IP configuration names a subnet"))?;
        let network_security_group = node
            .field("networkSecurityGroup")
            .map(|nsg| nsg.reference_name())
            .transpose()?;
        Ok(ParsedNic {
            name,
            origin: Origin::of(node),
            subnet,
            ip_addresses,
            application_security_groups,
            network_security_group,
        })
    }

    pub fn to_json(&self) -> Value {
        let mut out = Map::new();
        out.insert("name".into(), self.name.clone().into());
        out.insert("subnet".into(), self.subnet.clone().into());
        out.insert("ipAddresses".into(), self.ip_addresses.clone().into());
        if let Some(nsg) = &self.network_security_group {
            out.insert("networkSecurityGroup".into(), nsg.clone().into());
        }
        if !self.application_security_groups.is_empty() {
            out.insert(
                "applicationSecurityGroups".into(),
                self.application_security_groups.clone().into(),
            );
        }
        Value::Object(out)
    }
}

impl ParsedServiceTag {
    pub fn read(node: &Node<'_>) -> Result<ParsedServiceTag, ImportError> {
        let name = resource_name(node)?;
        let prefixes = match node.field("addressPrefixes") {
            Some(list) => list.strings()?,
            None => Vec::new(),
        };
        let usable_in_nsg = match node.field("networkFeatures") {
            Some(features) => features
                .strings()?
                .iter()
                .any(|feature| feature.eq_ignore_ascii_case("NSG")),
            None => true,
        };
        Ok(ParsedServiceTag {
            name,
            origin: Origin::of(node),
            prefixes,
            usable_in_nsg,
        })
    }
}
