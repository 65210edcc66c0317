//! A flow as the classifier sees it: protocol, addresses and ports, with the
//! text forms users type (`tcp 10.0.1.4:5000 -> 10.1.2.4:1433`) and the CSV flow
//! list of policy-format.md.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use super::classifier::NO_PORT;

/// IP protocol numbers nsgd names.
pub const TCP: u8 = 6;
pub const UDP: u8 = 17;
pub const ICMP: u8 = 1;
pub const ICMPV6: u8 = 58;
pub const ESP: u8 = 50;
pub const AH: u8 = 51;

/// One direction of a connection. Both addresses are of one family; ports are
/// meaningful only for TCP and UDP (others carry none, whatever was given).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Flow {
    protocol: u8,
    source: IpAddr,
    source_port: u16,
    destination: IpAddr,
    destination_port: u16,
}

/// Why a flow could not be built or parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlowError {
    #[error("source {0} and destination {1} are of different address families")]
    MixedFamilies(IpAddr, IpAddr),
    #[error("`{0}` is not a protocol: use tcp, udp, icmp, icmpv6, esp, ah or a number 0-255")]
    Protocol(String),
    #[error("`{0}` is not an address (IPv4, or IPv6 in brackets when a port follows)")]
    Address(String),
    #[error("`{0}` is not a port number 0-65535")]
    Port(String),
    #[error("expected `PROTOCOL SRC[:PORT] -> DST[:PORT]`, got `{0}`")]
    Shape(String),
    #[error(
        "expected 5 comma-separated fields (protocol,src_ip,src_port,dst_ip,dst_port), got {0}"
    )]
    CsvFields(usize),
}

impl Flow {
    pub fn new(
        protocol: u8,
        source: IpAddr,
        source_port: u16,
        destination: IpAddr,
        destination_port: u16,
    ) -> Result<Flow, FlowError> {
        if source.is_ipv4() != destination.is_ipv4() {
            return Err(FlowError::MixedFamilies(source, destination));
        }
        let has_ports = has_ports(protocol);
        Ok(Flow {
            protocol,
            source,
            source_port: if has_ports { source_port } else { 0 },
            destination,
            destination_port: if has_ports { destination_port } else { 0 },
        })
    }

    pub fn protocol(&self) -> u8 {
        self.protocol
    }
    pub fn source(&self) -> IpAddr {
        self.source
    }
    pub fn destination(&self) -> IpAddr {
        self.destination
    }
    pub fn source_port(&self) -> u16 {
        self.source_port
    }
    pub fn destination_port(&self) -> u16 {
        self.destination_port
    }
    pub fn is_ipv4(&self) -> bool {
        self.source.is_ipv4()
    }
    pub fn has_ports(&self) -> bool {
        has_ports(self.protocol)
    }

    /// Source port as a classifier key: [`NO_PORT`] for portless protocols.
    #[inline]
    pub fn source_port_key(&self) -> u32 {
        if self.has_ports() {
            u32::from(self.source_port)
        } else {
            NO_PORT
        }
    }

    #[inline]
    pub fn destination_port_key(&self) -> u32 {
        if self.has_ports() {
            u32::from(self.destination_port)
        } else {
            NO_PORT
        }
    }

    /// Parses one line of the CSV flow list (without the header).
    pub fn from_csv_line(line: &str) -> Result<Flow, FlowError> {
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if fields.len() != 5 {
            return Err(FlowError::CsvFields(fields.len()));
        }
        let protocol = parse_protocol(fields[0])?;
        let source = parse_ip(fields[1])?;
        let source_port = parse_port(fields[2])?;
        let destination = parse_ip(fields[3])?;
        let destination_port = parse_port(fields[4])?;
        Flow::new(protocol, source, source_port, destination, destination_port)
    }
}

/// Only TCP and UDP carry ports in NSG rules.
#[inline]
pub fn has_ports(protocol: u8) -> bool {
    protocol == TCP || protocol == UDP
}

pub fn protocol_name(protocol: u8) -> Option<&'static str> {
    Some(match protocol {
        TCP => "tcp",
        UDP => "udp",
        ICMP => "icmp",
        ICMPV6 => "icmpv6",
        ESP => "esp",
        AH => "ah",
        _ => return None,
    })
}

pub fn parse_protocol(text: &str) -> Result<u8, FlowError> {
    let lower = text.trim().to_ascii_lowercase();
    Ok(match lower.as_str() {
        "tcp" => TCP,
        "udp" => UDP,
        "icmp" => ICMP,
        "icmpv6" | "ipv6-icmp" => ICMPV6,
        "esp" => ESP,
        "ah" => AH,
        number => number
            .parse::<u8>()
            .map_err(|_| FlowError::Protocol(text.to_string()))?,
    })
}

fn parse_ip(text: &str) -> Result<IpAddr, FlowError> {
    let trimmed = text.trim().trim_start_matches('[').trim_end_matches(']');
    trimmed
        .parse()
        .map_err(|_| FlowError::Address(text.to_string()))
}

fn parse_port(text: &str) -> Result<u16, FlowError> {
    let trimmed = text.trim();
    if trimmed.is_empty() || trimmed == "*" {
        return Ok(0);
    }
    trimmed
        .parse()
        .map_err(|_| FlowError::Port(text.to_string()))
}

/// `10.0.0.1:80`, `10.0.0.1`, `[2001:db8::1]:443`, `2001:db8::1`.
fn parse_endpoint(text: &str) -> Result<(IpAddr, u16), FlowError> {
    if let Some(rest) = text.strip_prefix('[') {
        let (address, after) = rest
            .split_once(']')
            .ok_or_else(|| FlowError::Address(text.to_string()))?;
        let ip = parse_ip(address)?;
        return match after.strip_prefix(':') {
            Some(port) => Ok((ip, parse_port(port)?)),
            None if after.is_empty() => Ok((ip, 0)),
            None => Err(FlowError::Address(text.to_string())),
        };
    }
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok((ip, 0));
    }
    match text.rsplit_once(':') {
        Some((address, port)) if !address.contains(':') => {
            Ok((parse_ip(address)?, parse_port(port)?))
        }
        _ => Err(FlowError::Address(text.to_string())),
    }
}

impl FromStr for Flow {
    type Err = FlowError;

    /// `PROTOCOL SRC[:PORT] -> DST[:PORT]`.
    fn from_str(text: &str) -> Result<Flow, FlowError> {
        let words: Vec<&str> = text.split_whitespace().collect();
        let [protocol, source, "->", destination] = words.as_slice() else {
            return Err(FlowError::Shape(text.to_string()));
        };
        let protocol = parse_protocol(protocol)?;
        let (source, source_port) = parse_endpoint(source)?;
        let (destination, destination_port) = parse_endpoint(destination)?;
        Flow::new(protocol, source, source_port, destination, destination_port)
    }
}

impl fmt::Display for Flow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match protocol_name(self.protocol) {
            Some(name) => write!(f, "{name} ")?,
            None => write!(f, "{} ", self.protocol)?,
        }
        let endpoint =
            |f: &mut fmt::Formatter<'_>, ip: IpAddr, port: u16| match (ip, self.has_ports()) {
                (IpAddr::V6(v6), true) => write!(f, "[{v6}]:{port}"),
                (ip, true) => write!(f, "{ip}:{port}"),
                (ip, false) => write!(f, "{ip}"),
            };
        endpoint(f, self.source, self.source_port)?;
        f.write_str(" -> ")?;
        endpoint(f, self.destination, self.destination_port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_forms() {
        let flow: Flow = "tcp 10.0.1.4:5000 -> 10.1.2.4:1433".parse().unwrap();
        assert_eq!(flow.protocol(), TCP);
        assert_eq!(flow.destination_port(), 1433);
        assert_eq!(flow.to_string(), "tcp 10.0.1.4:5000 -> 10.1.2.4:1433");
        let v6: Flow = "udp [fd00::4]:53 -> [2001:db8::1]:53".parse().unwrap();
        assert_eq!(v6.to_string(), "udp [fd00::4]:53 -> [2001:db8::1]:53");
        let icmp: Flow = "icmp 10.0.0.1 -> 10.0.0.2".parse().unwrap();
        assert_eq!(icmp.destination_port_key(), NO_PORT);
        let csv = Flow::from_csv_line("17,10.0.0.1,1000,10.0.0.2,53").unwrap();
        assert_eq!(csv.protocol(), UDP);
        assert_eq!(csv.source_port(), 1000);
    }

    #[test]
    fn rejects_bad_input() {
        assert!(matches!(
            "tcp 10.0.0.1:1 -> ::1".parse::<Flow>(),
            Err(FlowError::MixedFamilies(..))
        ));
        assert!(matches!(
            "tcp 10.0.0.1:70000 -> 10.0.0.2:1".parse::<Flow>(),
            Err(FlowError::Port(_))
        ));
        assert!(matches!(
            "gre 10.0.0.1 -> 10.0.0.2".parse::<Flow>(),
            Err(FlowError::Protocol(_))
        ));
        assert!(matches!(
            "tcp 10.0.0.1".parse::<Flow>(),
            Err(FlowError::Shape(_))
        ));
        assert!(matches!(
            Flow::from_csv_line("tcp,1.2.3.4"),
            Err(FlowError::CsvFields(2))
        ));
    }
}
