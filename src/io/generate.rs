//! The traffic generator: an Ethernet pcap of realistic stateful traffic for
//! an estate. Endpoints come from the policy (NIC addresses, undeclared
//! addresses of its subnets) and from documentation ranges standing in for
//! the internet (203.0.113.0/24, 198.51.100.0/24, 2001:db8::/64). Services
//! come from the policy's inbound allow rules, so much of the traffic is what
//! the estate means to carry; a share of flows go to random ports between
//! random endpoints, which the policy will mostly deny. The generator does
//! not evaluate the policy.
//!
//! Conversations: TCP (handshake, request/response rounds with realistic
//! sizes and delayed ACKs, FIN teardown or RST; refused and unanswered SYNs
//! for random ports), UDP request/response (DNS messages on port 53), ICMP
//! and ICMPv6 echo. Flows start at random intervals and are interleaved in
//! time order on a virtual clock; timestamps are whole microseconds and
//! strictly increase.
//!
//! Determinism: the same policy, options and seed give a byte-identical
//! file. The random source is a fixed SplitMix64 here (no crate whose
//! stream could change between versions) and no floating-point function
//! beyond multiplication is used, so the output does not depend on the
//! platform's libm.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use etherparse::PacketBuilder;
use ipnet::IpNet;

use super::{PcapWriter, LINKTYPE_ETHERNET};
use crate::policy::{Access, AddressMatch, Direction, Policy, PortMatch, Protocol};

/// What to generate. `Default` gives 1 000 flows, no packet limit, seed 1.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateOptions {
    /// Conversations to start (SYN-flood packets are not flows). Without a
    /// packet limit the generator runs until every one has ended, so pair a
    /// huge value with `packets`.
    pub flows: u64,
    /// Stop after this many packets, even inside a conversation.
    pub packets: Option<u64>,
    pub seed: u64,
    /// Fraction (0..1) of all packets that are extra SYNs from random
    /// spoofed IPv4 sources to one target service.
    pub syn_flood_rate: f64,
    /// Include IPv6 flows (about a third) where NICs have IPv6 addresses.
    pub ipv6: bool,
    /// Fraction (0..1) of flows to random ports between random endpoints.
    pub random_fraction: f64,
    /// New conversations per second of capture time (on average).
    pub flows_per_second: u64,
    /// Timestamp of the first flow, in ns since the Unix epoch.
    pub start_ns: u64,
}

impl Default for GenerateOptions {
    fn default() -> GenerateOptions {
        GenerateOptions {
            flows: 1_000,
            packets: None,
            seed: 1,
            syn_flood_rate: 0.0,
            ipv6: false,
            random_fraction: 0.2,
            flows_per_second: 200,
            // 2026-01-01T00:00:00Z.
            start_ns: 1_767_225_600 * 1_000_000_000,
        }
    }
}

/// What was written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GenerateStats {
    pub packets: u64,
    /// Frame bytes written (without pcap headers).
    pub bytes: u64,
    /// Conversations started.
    pub flows: u64,
    pub tcp_flows: u64,
    pub udp_flows: u64,
    pub icmp_flows: u64,
    /// Flows to random ports between random endpoints (part of the above).
    pub random_flows: u64,
    pub ipv6_flows: u64,
    pub flood_syns: u64,
    pub first_timestamp_ns: u64,
    pub last_timestamp_ns: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("cannot write the capture: {0}")]
    Io(#[from] std::io::Error),
    #[error("the policy declares no NIC with an IP address, so there is no endpoint to generate traffic for")]
    NoEndpoints,
    #[error("invalid generator option: {0}")]
    InvalidOption(String),
    #[error("the generator writes Ethernet frames, but the writer's link type is {0}")]
    LinkType(u32),
    #[error("cannot build a frame: {0}")]
    Build(String),
}

/// Writes generated traffic for `policy` into `writer` (which must have the
/// Ethernet link type); the caller finishes the writer.
pub fn generate<W: Write>(
    policy: &Policy,
    options: &GenerateOptions,
    writer: &mut PcapWriter<W>,
) -> Result<GenerateStats, GenerateError> {
    if writer.link_type() != LINKTYPE_ETHERNET {
        return Err(GenerateError::LinkType(writer.link_type()));
    }
    for (name, value) in [
        ("syn_flood_rate", options.syn_flood_rate),
        ("random_fraction", options.random_fraction),
    ] {
        if !(0.0..1.0).contains(&value) {
            return Err(GenerateError::InvalidOption(format!(
                "{name} is {value}; it must be at least 0 and below 1"
            )));
        }
    }
    if options.flows_per_second == 0 {
        return Err(GenerateError::InvalidOption(
            "flows_per_second must be at least 1".into(),
        ));
    }
    let estate = Estate::new(policy, options.ipv6)?;
    Generator::new(estate, options).run(writer)
}

// ---------------------------------------------------------------------------
// Random numbers

/// SplitMix64: tiny, fast, and fixed forever (the committed samples depend
/// on its exact stream).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `low..=high`.
    fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.below(high - low + 1)
    }

    /// True with probability `percent` / 100.
    fn percent(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn chance(&mut self, threshold: u64) -> bool {
        self.next() < threshold
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// A probability as a threshold for [`Rng::chance`].
fn threshold(probability: f64) -> u64 {
    if probability <= 0.0 {
        0
    } else {
        (probability * 18_446_744_073_709_551_616.0) as u64
    }
}

// ---------------------------------------------------------------------------
// The estate as endpoints and services

/// Where one end of a conversation comes from.
#[derive(Debug, Clone, PartialEq)]
enum Source {
    Address(IpAddr),
    /// Any address inside (a rule's source prefix, an undeclared subnet host).
    Prefix(IpNet),
    Internet,
}

impl Source {
    fn fits(&self, ipv6: bool) -> bool {
        match self {
            Source::Address(address) => address.is_ipv6() == ipv6,
            Source::Prefix(prefix) => matches!(prefix, IpNet::V6(_)) == ipv6,
            Source::Internet => true,
        }
    }
}

#[derive(Debug, Clone)]
struct Service {
    protocol: u8,
    port: u16,
    servers: Vec<Source>,
    clients: Vec<Source>,
}

const TCP: u8 = 6;
const UDP: u8 = 17;
const ICMP: u8 = 1;
/// Azure's platform DNS (and health probe) address.
const AZURE_DNS: IpAddr = IpAddr::V4(Ipv4Addr::new(168, 63, 129, 16));
/// Ports scanners and misconfigured clients try.
const RANDOM_PORTS: [u16; 14] = [
    21, 23, 25, 135, 139, 445, 1433, 3306, 3389, 5432, 5900, 6379, 8443, 9200,
];
const RESOLVER_NAMES: [&str; 6] = ["api", "db", "login", "update", "cdn", "mail"];

struct Estate {
    nics: Vec<IpAddr>,
    nic_sources: Vec<Source>,
    /// NIC addresses plus undeclared subnet hosts: every address the estate owns.
    inside: Vec<Source>,
    services: Vec<Service>,
    has_ipv6: bool,
}

impl Estate {
    fn new(policy: &Policy, ipv6: bool) -> Result<Estate, GenerateError> {
        let family_ok = |address: &IpAddr| ipv6 || address.is_ipv4();
        let nics: Vec<IpAddr> = policy
            .nics
            .iter()
            .flat_map(|nic| nic.ip_addresses.iter().copied())
            .filter(family_ok)
            .collect();
        if nics.is_empty() {
            return Err(GenerateError::NoEndpoints);
        }
        let mut inside: Vec<Source> = nics.iter().copied().map(Source::Address).collect();
        for vnet in &policy.vnets {
            for subnet in &vnet.subnets {
                for prefix in &subnet.address_prefixes {
                    if ipv6 || matches!(prefix, IpNet::V4(_)) {
                        inside.push(Source::Prefix(*prefix));
                    }
                }
            }
        }

        let mut services = Vec::new();
        for nsg in &policy.network_security_groups {
            // NIC addresses this NSG guards, directly or through the subnet.
            let guarded: Vec<(&crate::policy::NetworkInterface, IpAddr)> = policy
                .nics
                .iter()
                .filter(|nic| {
                    nic.network_security_group.as_deref() == Some(nsg.name.as_str())
                        || policy.subnet(&nic.subnet).is_some_and(|(_, subnet)| {
                            subnet.network_security_group.as_deref() == Some(nsg.name.as_str())
                        })
                })
                .flat_map(|nic| nic.ip_addresses.iter().map(move |address| (nic, *address)))
                .filter(|(_, address)| family_ok(address))
                .collect();
            for rule in &nsg.security_rules {
                if rule.access != Access::Allow || rule.direction != Direction::Inbound {
                    continue;
                }
                let protocol = match rule.protocol {
                    Protocol::Tcp | Protocol::Any => TCP,
                    Protocol::Udp => UDP,
                    _ => continue,
                };
                let servers: Vec<Source> = guarded
                    .iter()
                    .filter(|(nic, address)| match &rule.destination {
                        AddressMatch::Prefixes(prefixes) => {
                            prefixes.iter().any(|prefix| prefix.contains(address))
                        }
                        AddressMatch::ApplicationSecurityGroups(groups) => nic
                            .application_security_groups
                            .iter()
                            .any(|group| groups.contains(group)),
                        AddressMatch::Any | AddressMatch::Tag(_) => true,
                    })
                    .map(|(_, address)| Source::Address(*address))
                    .collect();
                if servers.is_empty() {
                    continue;
                }
                let clients: Vec<Source> = match &rule.source {
                    AddressMatch::Any => {
                        let mut clients = vec![Source::Internet];
                        clients.extend(nics.iter().copied().map(Source::Address));
                        clients
                    }
                    AddressMatch::Tag(tag) if tag == "VirtualNetwork" => inside.clone(),
                    AddressMatch::Tag(_) => vec![Source::Internet],
                    AddressMatch::Prefixes(prefixes) => {
                        prefixes.iter().copied().map(Source::Prefix).collect()
                    }
                    AddressMatch::ApplicationSecurityGroups(groups) => policy
                        .nics
                        .iter()
                        .filter(|nic| {
                            nic.application_security_groups
                                .iter()
                                .any(|g| groups.contains(g))
                        })
                        .flat_map(|nic| nic.ip_addresses.iter().copied())
                        .filter(family_ok)
                        .map(Source::Address)
                        .collect(),
                };
                let ports: Vec<u16> = match &rule.destination_ports {
                    PortMatch::Any => vec![22, 443],
                    PortMatch::Ranges(ranges) => ranges
                        .iter()
                        .flat_map(|&(low, high)| {
                            if low == high {
                                vec![low]
                            } else {
                                vec![low, high]
                            }
                        })
                        .collect(),
                };
                for port in ports.into_iter().take(8) {
                    services.push(Service {
                        protocol,
                        port,
                        servers: servers.clone(),
                        clients: clients.clone(),
                    });
                }
            }
        }
        // Outbound traffic every estate has: web to the internet and DNS to
        // the platform resolver.
        let nic_sources: Vec<Source> = nics.iter().copied().map(Source::Address).collect();
        services.push(Service {
            protocol: TCP,
            port: 443,
            servers: vec![Source::Internet],
            clients: nic_sources.clone(),
        });
        services.push(Service {
            protocol: UDP,
            port: 53,
            servers: vec![Source::Address(AZURE_DNS), Source::Internet],
            clients: nic_sources.clone(),
        });
        let has_ipv6 = nics.iter().any(IpAddr::is_ipv6);
        Ok(Estate {
            nics,
            nic_sources,
            inside,
            services,
            has_ipv6,
        })
    }
}

// ---------------------------------------------------------------------------
// Endpoints and flows

#[derive(Debug, Clone, Copy)]
struct Endpoint {
    address: IpAddr,
    mac: [u8; 6],
    ttl: u8,
}

/// Frames from outside the estate arrive from the gateway's MAC.
const GATEWAY_MAC: [u8; 6] = [0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc];

impl Endpoint {
    fn inside(address: IpAddr) -> Endpoint {
        let octets = match address {
            IpAddr::V4(v4) => v4.octets(),
            IpAddr::V6(v6) => {
                let o = v6.octets();
                [o[12], o[13], o[14], o[15]]
            }
        };
        // Azure's own MAC prefix, the rest from the address.
        Endpoint {
            address,
            mac: [
                0x00,
                0x0d,
                octets[0] ^ 0x3a,
                octets[1],
                octets[2],
                octets[3],
            ],
            ttl: 64,
        }
    }

    fn outside(address: IpAddr, hops: u8) -> Endpoint {
        Endpoint {
            address,
            mac: GATEWAY_MAC,
            ttl: 64 - hops,
        }
    }
}

/// One endpoint from `sources` of the given family (`None` when none fits).
/// `inside` tells estate prefixes (reached directly) from rule prefixes
/// outside the estate (reached through the gateway).
fn pick_endpoint(
    rng: &mut Rng,
    inside: &[Source],
    sources: &[Source],
    ipv6: bool,
) -> Option<Endpoint> {
    let fitting = sources.iter().filter(|s| s.fits(ipv6)).count();
    if fitting == 0 {
        return None;
    }
    let index = rng.below(fitting as u64) as usize;
    Some(match sources.iter().filter(|s| s.fits(ipv6)).nth(index)? {
        Source::Address(address) if *address == AZURE_DNS => Endpoint::outside(*address, 0),
        Source::Address(address) => Endpoint::inside(*address),
        Source::Prefix(prefix) => {
            let address = address_in(rng, prefix);
            let in_estate = inside.iter().any(|s| match s {
                Source::Prefix(p) => p.contains(&address),
                _ => false,
            });
            if in_estate {
                Endpoint::inside(address)
            } else {
                Endpoint::outside(address, 8)
            }
        }
        Source::Internet => {
            let address = internet_address(rng, ipv6);
            let hops = rng.between(6, 20) as u8;
            Endpoint::outside(address, hops)
        }
    })
}

fn internet_address(rng: &mut Rng, ipv6: bool) -> IpAddr {
    if ipv6 {
        IpAddr::V6(Ipv6Addr::new(
            0x2001,
            0xdb8,
            0,
            0,
            0,
            0,
            0,
            rng.between(1, 0xfffe) as u16,
        ))
    } else if rng.percent(50) {
        IpAddr::V4(Ipv4Addr::new(203, 0, 113, rng.between(1, 254) as u8))
    } else {
        IpAddr::V4(Ipv4Addr::new(198, 51, 100, rng.between(1, 254) as u8))
    }
}

fn address_in(rng: &mut Rng, prefix: &IpNet) -> IpAddr {
    match prefix {
        IpNet::V4(net) => {
            let size = 1u64 << (32 - net.prefix_len());
            // Azure reserves the first four and the last address.
            let host = if size > 8 {
                rng.between(4, (size - 2).min(254))
            } else {
                0
            };
            IpAddr::V4(Ipv4Addr::from(u32::from(net.network()) + host as u32))
        }
        IpNet::V6(net) => {
            let host = rng.between(4, 0x1ff);
            IpAddr::V6(Ipv6Addr::from(u128::from(net.network()) + u128::from(host)))
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Syn { retries: u8 },
    SynAck,
    HandshakeAck,
    Request,
    Response,
    ClientAck,
    Close,
    ServerFin,
    FinalAck,
    Refuse,
    Query,
    Answer,
    EchoRequest,
    EchoReply,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    Fin,
    ClientReset,
    ServerReset,
}

#[derive(Debug, Clone, Copy)]
struct Flow {
    client: Endpoint,
    server: Endpoint,
    client_port: u16,
    server_port: u16,
    protocol: u8,
    phase: Phase,
    /// One round trip, ns.
    rtt: u64,
    client_seq: u32,
    server_seq: u32,
    /// TCP: request/response rounds still to come; UDP: transactions; ICMP: echoes.
    rounds: u16,
    /// Response bytes the server still has to send in this round.
    response_left: u32,
    unacked: u8,
    ending: Ending,
    /// A random-port flow that nobody answers (TCP: SYN retries; UDP: no reply).
    unanswered: bool,
    refused: bool,
    /// DNS transaction id / ICMP echo id.
    ident: u16,
    sequence: u16,
    name: u8,
}

/// One packet a flow asks for.
#[derive(Debug, Clone, Copy)]
struct Packet {
    from_client: bool,
    kind: PacketKind,
}

#[derive(Debug, Clone, Copy)]
enum PacketKind {
    Tcp {
        flags: u8,
        seq: u32,
        ack: u32,
        payload: u16,
    },
    Udp {
        payload: u16,
    },
    Dns {
        answer: bool,
        ident: u16,
        name: u8,
    },
    Echo {
        request: bool,
        ident: u16,
        sequence: u16,
    },
}

const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;
const MSS: u32 = 1448;
const MILLISECOND: u64 = 1_000_000;

impl Flow {
    fn tcp(&mut self, from_client: bool, flags: u8, payload: u16) -> Packet {
        let (seq, ack) = if from_client {
            (self.client_seq, self.server_seq)
        } else {
            (self.server_seq, self.client_seq)
        };
        let ack = if flags & ACK != 0 { ack } else { 0 };
        Packet {
            from_client,
            kind: PacketKind::Tcp {
                flags,
                seq,
                ack,
                payload,
            },
        }
    }

    fn response_size(rng: &mut Rng) -> u32 {
        // Mostly one-segment answers (API calls, probes), some pages, a few
        // downloads.
        match rng.below(100) {
            0..=64 => rng.between(100, 1_500) as u32,
            65..=91 => rng.between(1_500, 16_000) as u32,
            _ => rng.between(16_000, 128_000) as u32,
        }
    }

    /// The flow's next packet, and the delay until the one after it (`None`
    /// when this packet ends the flow).
    fn step(&mut self, rng: &mut Rng) -> (Packet, Option<u64>) {
        let half = self.rtt / 2;
        let small = || 20_000;
        match self.phase {
            Phase::Syn { retries } => {
                let packet = self.tcp(true, SYN, 0);
                if self.unanswered {
                    if retries == 0 {
                        return (packet, None);
                    }
                    self.phase = Phase::Syn {
                        retries: retries - 1,
                    };
                    // Linux doubles the SYN timeout: 1 s, 2 s, ...
                    return (packet, Some((1_000 * MILLISECOND) << (2 - retries.min(2))));
                }
                self.phase = if self.refused {
                    Phase::Refuse
                } else {
                    Phase::SynAck
                };
                (packet, Some(half))
            }
            Phase::Refuse => {
                self.client_seq = self.client_seq.wrapping_add(1);
                self.server_seq = 0;
                (self.tcp(false, RST | ACK, 0), None)
            }
            Phase::SynAck => {
                self.client_seq = self.client_seq.wrapping_add(1);
                let packet = self.tcp(false, SYN | ACK, 0);
                self.server_seq = self.server_seq.wrapping_add(1);
                self.phase = Phase::HandshakeAck;
                (packet, Some(half))
            }
            Phase::HandshakeAck => {
                self.phase = Phase::Request;
                (self.tcp(true, ACK, 0), Some(small() + rng.below(200_000)))
            }
            Phase::Request => {
                let length = rng.between(80, 700) as u16;
                let packet = self.tcp(true, PSH | ACK, length);
                self.client_seq = self.client_seq.wrapping_add(u32::from(length));
                self.response_left = Flow::response_size(rng);
                self.unacked = 0;
                self.phase = Phase::Response;
                (packet, Some(half + rng.below(2 * MILLISECOND)))
            }
            Phase::Response => {
                let length = self.response_left.min(MSS);
                self.response_left -= length;
                let flags = if self.response_left == 0 {
                    PSH | ACK
                } else {
                    ACK
                };
                let packet = self.tcp(false, flags, length as u16);
                self.server_seq = self.server_seq.wrapping_add(length);
                self.unacked += 1;
                if self.unacked >= 2 || self.response_left == 0 {
                    self.phase = Phase::ClientAck;
                    (packet, Some(half))
                } else {
                    (packet, Some(12_000 + rng.below(8_000)))
                }
            }
            Phase::ClientAck => {
                let packet = self.tcp(true, ACK, 0);
                self.unacked = 0;
                if self.response_left > 0 {
                    self.phase = Phase::Response;
                    (packet, Some(half))
                } else if self.rounds > 1 {
                    self.rounds -= 1;
                    self.phase = Phase::Request;
                    (packet, Some(rng.between(MILLISECOND, 300 * MILLISECOND)))
                } else {
                    self.phase = Phase::Close;
                    (packet, Some(rng.between(small(), 50 * MILLISECOND)))
                }
            }
            Phase::Close => match self.ending {
                Ending::Fin => {
                    let packet = self.tcp(true, FIN | ACK, 0);
                    self.client_seq = self.client_seq.wrapping_add(1);
                    self.phase = Phase::ServerFin;
                    (packet, Some(half))
                }
                Ending::ClientReset => (self.tcp(true, RST | ACK, 0), None),
                Ending::ServerReset => (self.tcp(false, RST | ACK, 0), None),
            },
            Phase::ServerFin => {
                let packet = self.tcp(false, FIN | ACK, 0);
                self.server_seq = self.server_seq.wrapping_add(1);
                self.phase = Phase::FinalAck;
                (packet, Some(half))
            }
            Phase::FinalAck => (self.tcp(true, ACK, 0), None),
            Phase::Query => {
                let kind = if self.server_port == 53 {
                    PacketKind::Dns {
                        answer: false,
                        ident: self.ident,
                        name: self.name,
                    }
                } else {
                    PacketKind::Udp {
                        payload: rng.between(20, 300) as u16,
                    }
                };
                let packet = Packet {
                    from_client: true,
                    kind,
                };
                if self.unanswered {
                    self.rounds -= 1;
                    if self.rounds == 0 {
                        return (packet, None);
                    }
                    return (packet, Some(1_000 * MILLISECOND));
                }
                self.phase = Phase::Answer;
                (packet, Some(self.rtt + rng.below(MILLISECOND)))
            }
            Phase::Answer => {
                let kind = if self.server_port == 53 {
                    PacketKind::Dns {
                        answer: true,
                        ident: self.ident,
                        name: self.name,
                    }
                } else {
                    PacketKind::Udp {
                        payload: rng.between(20, 1_200) as u16,
                    }
                };
                let packet = Packet {
                    from_client: false,
                    kind,
                };
                self.rounds -= 1;
                if self.rounds == 0 {
                    return (packet, None);
                }
                self.ident = self.ident.wrapping_add(1);
                self.name = rng.below(RESOLVER_NAMES.len() as u64) as u8;
                self.phase = Phase::Query;
                (packet, Some(rng.between(MILLISECOND, 100 * MILLISECOND)))
            }
            Phase::EchoRequest => {
                self.phase = Phase::EchoReply;
                let packet = Packet {
                    from_client: true,
                    kind: PacketKind::Echo {
                        request: true,
                        ident: self.ident,
                        sequence: self.sequence,
                    },
                };
                (packet, Some(self.rtt))
            }
            Phase::EchoReply => {
                let packet = Packet {
                    from_client: false,
                    kind: PacketKind::Echo {
                        request: false,
                        ident: self.ident,
                        sequence: self.sequence,
                    },
                };
                self.sequence = self.sequence.wrapping_add(1);
                self.rounds -= 1;
                if self.rounds == 0 {
                    return (packet, None);
                }
                self.phase = Phase::EchoRequest;
                (
                    packet,
                    Some(1_000 * MILLISECOND - self.rtt.min(MILLISECOND)),
                )
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The generator loop

struct Generator<'a> {
    estate: Estate,
    options: &'a GenerateOptions,
    rng: Rng,
    flows: Vec<Flow>,
    free: Vec<usize>,
    /// (time, sequence, slot): the sequence breaks ties deterministically.
    queue: BinaryHeap<Reverse<(u64, u64, usize)>>,
    sequence: u64,
    frame: Vec<u8>,
    payload: Vec<u8>,
    dns: Vec<u8>,
    last_timestamp: u64,
    stats: GenerateStats,
    flood_target: Option<Endpoint>,
    flood_port: u16,
}

impl<'a> Generator<'a> {
    fn new(estate: Estate, options: &'a GenerateOptions) -> Generator<'a> {
        let mut rng = Rng(options.seed);
        let payload = (0..MSS as usize + 64).map(|_| rng.next() as u8).collect();
        // The SYN flood hits the first inbound TCP service (or port 443 of
        // the first NIC).
        let (flood_target, flood_port) = estate
            .services
            .iter()
            .filter(|s| s.protocol == TCP)
            .find_map(|s| match s.servers.first() {
                Some(Source::Address(address)) if address.is_ipv4() => Some((*address, s.port)),
                _ => None,
            })
            .or_else(|| estate.nics.iter().find(|a| a.is_ipv4()).map(|a| (*a, 443)))
            .map_or((None, 0), |(address, port)| {
                (Some(Endpoint::inside(address)), port)
            });
        Generator {
            estate,
            options,
            rng,
            flows: Vec::new(),
            free: Vec::new(),
            queue: BinaryHeap::new(),
            sequence: 0,
            frame: Vec::with_capacity(2048),
            payload,
            dns: Vec::with_capacity(512),
            last_timestamp: 0,
            stats: GenerateStats::default(),
            flood_target,
            flood_port,
        }
    }

    fn run<W: Write>(mut self, writer: &mut PcapWriter<W>) -> Result<GenerateStats, GenerateError> {
        let packet_limit = self.options.packets.unwrap_or(u64::MAX);
        let flood = threshold(self.options.syn_flood_rate);
        let mean_gap = 1_000_000_000 / self.options.flows_per_second;
        let mut next_start = self.options.start_ns;
        while self.stats.packets < packet_limit {
            let next_event = self.queue.peek().map(|Reverse((time, _, _))| *time);
            let starts_first = self.stats.flows < self.options.flows
                && next_event.is_none_or(|time| next_start <= time);
            if starts_first {
                self.start_flow(next_start);
                next_start += self.rng.between(1, 2 * mean_gap);
                continue;
            }
            let Some(event_time) = next_event else { break };
            if flood != 0 && self.flood_target.is_some() && self.rng.chance(flood) {
                let gap = event_time.saturating_sub(self.last_timestamp);
                let time = self.last_timestamp + self.rng.between(1, (gap / 2).max(1));
                self.emit_flood_syn(writer, time)?;
                continue;
            }
            let Some(Reverse((time, _, slot))) = self.queue.pop() else {
                break;
            };
            let (packet, delay) = self.flows[slot].step(&mut self.rng);
            let flow = self.flows[slot];
            self.emit(writer, time, &flow, packet)?;
            match delay {
                Some(delay) => self.schedule(time + delay.max(1), slot),
                None => self.free.push(slot),
            }
        }
        Ok(self.stats)
    }

    fn schedule(&mut self, time: u64, slot: usize) {
        self.sequence += 1;
        self.queue.push(Reverse((time, self.sequence, slot)));
    }

    /// Picks a conversation and queues its first packet at `time`.
    fn start_flow(&mut self, time: u64) {
        let rng = &mut self.rng;
        let ipv6 = self.options.ipv6 && self.estate.has_ipv6 && rng.percent(35);
        let random = rng.chance(threshold(self.options.random_fraction));
        let roll = rng.below(100);
        let mut flow = Flow {
            client: Endpoint::inside(self.estate.nics[0]),
            server: Endpoint::inside(self.estate.nics[0]),
            client_port: rng.between(32_768, 60_999) as u16,
            server_port: 0,
            protocol: TCP,
            phase: Phase::Syn { retries: 0 },
            rtt: 0,
            client_seq: rng.next() as u32,
            server_seq: rng.next() as u32,
            rounds: rng.between(1, 3) as u16,
            response_left: 0,
            unacked: 0,
            ending: match rng.below(20) {
                0 | 1 => Ending::ClientReset,
                2 => Ending::ServerReset,
                _ => Ending::Fin,
            },
            unanswered: false,
            refused: false,
            ident: rng.next() as u16,
            sequence: 0,
            name: rng.below(RESOLVER_NAMES.len() as u64) as u8,
        };
        let picked = if random {
            self.random_endpoints(&mut flow, ipv6)
        } else if roll < 12 {
            self.echo_endpoints(&mut flow, ipv6)
        } else {
            self.service_endpoints(&mut flow, ipv6)
        };
        if !picked {
            // No endpoint of that family: an IPv4 echo between two NICs
            // always exists.
            self.echo_endpoints(&mut flow, false);
        }
        let ipv6 = flow.client.address.is_ipv6();
        let outside = flow.client.mac == GATEWAY_MAC || flow.server.mac == GATEWAY_MAC;
        flow.rtt = if outside {
            self.rng.between(8 * MILLISECOND, 90 * MILLISECOND)
        } else {
            self.rng.between(150_000, 2 * MILLISECOND)
        };
        self.stats.flows += 1;
        self.stats.ipv6_flows += u64::from(ipv6);
        self.stats.random_flows += u64::from(random);
        match flow.protocol {
            TCP => self.stats.tcp_flows += 1,
            UDP => self.stats.udp_flows += 1,
            _ => self.stats.icmp_flows += 1,
        }
        let slot = match self.free.pop() {
            Some(slot) => {
                self.flows[slot] = flow;
                slot
            }
            None => {
                self.flows.push(flow);
                self.flows.len() - 1
            }
        };
        self.schedule(time, slot);
    }

    fn service_endpoints(&mut self, flow: &mut Flow, ipv6: bool) -> bool {
        let Estate {
            services, inside, ..
        } = &self.estate;
        let rng = &mut self.rng;
        let service = rng.pick(services);
        let Some(server) = pick_endpoint(rng, inside, &service.servers, ipv6) else {
            return false;
        };
        let client = pick_endpoint(rng, inside, &service.clients, ipv6)
            .or_else(|| pick_endpoint(rng, inside, &[Source::Internet], ipv6));
        let Some(client) = client else { return false };
        if client.address == server.address {
            return false;
        }
        flow.client = client;
        flow.server = server;
        flow.server_port = service.port;
        flow.protocol = service.protocol;
        if service.protocol == UDP {
            flow.phase = Phase::Query;
            flow.rounds = if self.rng.percent(25) { 2 } else { 1 };
        }
        true
    }

    fn random_endpoints(&mut self, flow: &mut Flow, ipv6: bool) -> bool {
        let inside = &self.estate.inside;
        let rng = &mut self.rng;
        let clients = if rng.percent(40) {
            &[Source::Internet][..]
        } else {
            inside
        };
        let (Some(client), Some(server)) = (
            pick_endpoint(rng, inside, clients, ipv6),
            pick_endpoint(rng, inside, inside, ipv6),
        ) else {
            return false;
        };
        if client.address == server.address {
            return false;
        }
        flow.client = client;
        flow.server = server;
        flow.server_port = if self.rng.percent(60) {
            *self.rng.pick(&RANDOM_PORTS)
        } else {
            self.rng.between(1, 65_535) as u16
        };
        if self.rng.percent(80) {
            flow.protocol = TCP;
            match self.rng.below(10) {
                0..=3 => {}
                4..=6 => flow.refused = true,
                _ => {
                    flow.unanswered = true;
                    flow.phase = Phase::Syn { retries: 2 };
                }
            }
        } else {
            flow.protocol = UDP;
            flow.phase = Phase::Query;
            flow.unanswered = self.rng.percent(50);
            flow.rounds = if flow.unanswered { 2 } else { 1 };
        }
        true
    }

    fn echo_endpoints(&mut self, flow: &mut Flow, ipv6: bool) -> bool {
        let Estate {
            nic_sources,
            inside,
            ..
        } = &self.estate;
        let rng = &mut self.rng;
        let internet = &[Source::Internet][..];
        let Some(client) = pick_endpoint(rng, inside, nic_sources, ipv6) else {
            return false;
        };
        let targets = if rng.percent(30) {
            internet
        } else {
            nic_sources
        };
        let Some(mut server) = pick_endpoint(rng, inside, targets, ipv6) else {
            return false;
        };
        if client.address == server.address {
            server = pick_endpoint(rng, inside, internet, ipv6).unwrap_or(server);
        }
        flow.client = client;
        flow.server = server;
        flow.protocol = ICMP;
        flow.client_port = 0;
        flow.server_port = 0;
        flow.phase = Phase::EchoRequest;
        flow.sequence = 1;
        true
    }

    /// The timestamp of the next packet: whole microseconds (so a
    /// microsecond pcap keeps them distinct), strictly increasing.
    fn timestamp(&mut self, time: u64) -> u64 {
        let timestamp = time
            .next_multiple_of(1_000)
            .max(self.last_timestamp + 1_000);
        if self.stats.packets == 0 {
            self.stats.first_timestamp_ns = timestamp;
        }
        self.last_timestamp = timestamp;
        self.stats.last_timestamp_ns = timestamp;
        timestamp
    }

    fn emit_flood_syn<W: Write>(
        &mut self,
        writer: &mut PcapWriter<W>,
        time: u64,
    ) -> Result<(), GenerateError> {
        let Some(target) = self.flood_target else {
            return Ok(());
        };
        let first = loop {
            let octet = self.rng.between(1, 223) as u8;
            if octet != 10 && octet != 127 {
                break octet;
            }
        };
        let source =
            Ipv4Addr::from((u32::from(first) << 24) | (self.rng.next() as u32 & 0x00ff_ffff));
        let IpAddr::V4(destination) = target.address else {
            return Ok(());
        };
        self.frame.clear();
        PacketBuilder::ethernet2(GATEWAY_MAC, target.mac)
            .ipv4(
                source.octets(),
                destination.octets(),
                self.rng.between(40, 250) as u8,
            )
            .tcp(
                self.rng.between(1_024, 65_535) as u16,
                self.flood_port,
                self.rng.next() as u32,
                self.rng.between(512, 65_535) as u16,
            )
            .syn()
            .write(&mut self.frame, &[])
            .map_err(|e| GenerateError::Build(e.to_string()))?;
        let timestamp = self.timestamp(time);
        writer.write_frame(timestamp, &self.frame, self.frame.len() as u32)?;
        self.stats.packets += 1;
        self.stats.flood_syns += 1;
        self.stats.bytes += self.frame.len() as u64;
        Ok(())
    }

    fn emit<W: Write>(
        &mut self,
        writer: &mut PcapWriter<W>,
        time: u64,
        flow: &Flow,
        packet: Packet,
    ) -> Result<(), GenerateError> {
        let (from, to, from_port, to_port) = if packet.from_client {
            (flow.client, flow.server, flow.client_port, flow.server_port)
        } else {
            (flow.server, flow.client, flow.server_port, flow.client_port)
        };
        let ethernet = PacketBuilder::ethernet2(from.mac, to.mac);
        let ip = match (from.address, to.address) {
            (IpAddr::V4(a), IpAddr::V4(b)) => ethernet.ipv4(a.octets(), b.octets(), from.ttl),
            (IpAddr::V6(a), IpAddr::V6(b)) => ethernet.ipv6(a.octets(), b.octets(), from.ttl),
            _ => return Err(GenerateError::Build("a flow mixes address families".into())),
        };
        let ipv6 = from.address.is_ipv6();
        self.frame.clear();
        let frame = &mut self.frame;
        let build =
            |e: etherparse::err::packet::BuildWriteError| GenerateError::Build(e.to_string());
        match packet.kind {
            PacketKind::Tcp {
                flags,
                seq,
                ack,
                payload,
            } => {
                let window = if packet.from_client { 64_240 } else { 65_160 };
                let mut tcp = ip.tcp(from_port, to_port, seq, window);
                if flags & SYN != 0 {
                    tcp = tcp.syn();
                    // MSS 1460.
                    tcp = tcp
                        .options_raw(&[2, 4, 0x05, 0xb4])
                        .map_err(|e| GenerateError::Build(e.to_string()))?;
                }
                if flags & ACK != 0 {
                    tcp = tcp.ack(ack);
                }
                if flags & FIN != 0 {
                    tcp = tcp.fin();
                }
                if flags & RST != 0 {
                    tcp = tcp.rst();
                }
                if flags & PSH != 0 {
                    tcp = tcp.psh();
                }
                tcp.write(frame, &self.payload[..usize::from(payload)])
                    .map_err(build)?;
            }
            PacketKind::Udp { payload } => {
                ip.udp(from_port, to_port)
                    .write(frame, &self.payload[..usize::from(payload)])
                    .map_err(build)?;
            }
            PacketKind::Dns {
                answer,
                ident,
                name,
            } => {
                dns_message(&mut self.dns, ident, name, answer, ipv6);
                ip.udp(from_port, to_port)
                    .write(frame, &self.dns)
                    .map_err(build)?;
            }
            PacketKind::Echo {
                request,
                ident: id,
                sequence: seq,
            } => {
                let payload = &self.payload[..56];
                match (ipv6, request) {
                    (false, true) => ip.icmpv4_echo_request(id, seq).write(frame, payload),
                    (false, false) => ip.icmpv4_echo_reply(id, seq).write(frame, payload),
                    (true, true) => ip.icmpv6_echo_request(id, seq).write(frame, payload),
                    (true, false) => ip.icmpv6_echo_reply(id, seq).write(frame, payload),
                }
                .map_err(build)?;
            }
        }
        let timestamp = self.timestamp(time);
        writer.write_frame(timestamp, &self.frame, self.frame.len() as u32)?;
        self.stats.packets += 1;
        self.stats.bytes += self.frame.len() as u64;
        Ok(())
    }
}

/// A DNS query or answer for one of a few names (A for IPv4, AAAA for IPv6).
fn dns_message(buffer: &mut Vec<u8>, ident: u16, name: u8, answer: bool, ipv6: bool) {
    buffer.clear();
    buffer.extend_from_slice(&ident.to_be_bytes());
    buffer.extend_from_slice(if answer { &[0x81, 0x80] } else { &[0x01, 0x00] });
    buffer.extend_from_slice(&[0, 1, 0, u8::from(answer), 0, 0, 0, 0]);
    let label = RESOLVER_NAMES[usize::from(name) % RESOLVER_NAMES.len()];
    for label in [label, "contoso", "com"] {
        buffer.push(label.len() as u8);
        buffer.extend_from_slice(label.as_bytes());
    }
    buffer.push(0);
    let record_type: u16 = if ipv6 { 28 } else { 1 };
    buffer.extend_from_slice(&record_type.to_be_bytes());
    buffer.extend_from_slice(&[0, 1]);
    if answer {
        buffer.extend_from_slice(&[0xc0, 0x0c]);
        buffer.extend_from_slice(&record_type.to_be_bytes());
        buffer.extend_from_slice(&[0, 1, 0, 0, 0x01, 0x2c]);
        if ipv6 {
            buffer.extend_from_slice(&[0, 16]);
            buffer.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0a]);
            buffer.push(name);
        } else {
            buffer.extend_from_slice(&[0, 4, 203, 0, 113, 10 + name]);
        }
    }
}
