//! The traffic generator: deterministic, valid frames (checksums included),
//! the packet and flow counts asked for, increasing timestamps, IPv6 and
//! SYN-flood options.

use std::collections::BTreeMap;
use std::path::Path;

use etherparse::{NetHeaders, PacketHeaders, TransportHeader};
use nsgd::io::{
    generate, CaptureReader, GenerateOptions, GenerateStats, PcapWriter, TimestampPrecision,
    LINKTYPE_ETHERNET,
};

fn policy(name: &str) -> nsgd::policy::Policy {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("configs")
        .join(name);
    nsgd::policy::load(&path).expect("example config loads")
}

fn run(policy: &nsgd::policy::Policy, options: &GenerateOptions) -> (Vec<u8>, GenerateStats) {
    let mut writer = PcapWriter::new(
        Vec::new(),
        LINKTYPE_ETHERNET,
        TimestampPrecision::Microseconds,
    )
    .unwrap();
    let stats = generate(policy, options, &mut writer).unwrap();
    (writer.finish().unwrap(), stats)
}

#[derive(Default, Debug)]
struct Check {
    packets: u64,
    tcp: u64,
    syn_only: u64,
    syn_ack: u64,
    fin: u64,
    rst: u64,
    udp: u64,
    dns: u64,
    icmp_echo: u64,
    ipv6: u64,
}

/// Parses every frame back, checking checksums and timestamps.
fn check(bytes: &[u8]) -> Check {
    let mut reader = CaptureReader::new(bytes).unwrap();
    let mut result = Check::default();
    let mut last = 0;
    let mut first_of_flow: BTreeMap<(Vec<u8>, Vec<u8>, u16, u16), u8> = BTreeMap::new();
    while let Some(record) = reader.next_record().unwrap() {
        assert_eq!(record.link_type, 1);
        assert!(record.timestamp_ns > last, "timestamps strictly increase");
        last = record.timestamp_ns;
        assert_eq!(record.caplen, record.orig_len);
        result.packets += 1;
        let headers = PacketHeaders::from_ethernet_slice(record.data)
            .unwrap_or_else(|e| panic!("frame {} does not parse: {e}", result.packets));
        let payload = headers.payload.slice();
        let (source, destination) = match &headers.net {
            Some(NetHeaders::Ipv4(ip, _)) => {
                assert_eq!(
                    ip.header_checksum,
                    ip.calc_header_checksum(),
                    "IPv4 checksum"
                );
                (ip.source.to_vec(), ip.destination.to_vec())
            }
            Some(NetHeaders::Ipv6(ip, _)) => {
                result.ipv6 += 1;
                (ip.source.to_vec(), ip.destination.to_vec())
            }
            other => panic!("not IP: {other:?}"),
        };
        let checksum_ok = |computed: u16, stored: u16| assert_eq!(computed, stored, "L4 checksum");
        match (&headers.net, &headers.transport) {
            (Some(net), Some(TransportHeader::Tcp(tcp))) => {
                let computed = match net {
                    NetHeaders::Ipv4(ip, _) => tcp.calc_checksum_ipv4(ip, payload).unwrap(),
                    NetHeaders::Ipv6(ip, _) => tcp.calc_checksum_ipv6(ip, payload).unwrap(),
                    _ => unreachable!(),
                };
                checksum_ok(computed, tcp.checksum);
                result.tcp += 1;
                result.syn_only += u64::from(tcp.syn && !tcp.ack);
                result.syn_ack += u64::from(tcp.syn && tcp.ack);
                result.fin += u64::from(tcp.fin);
                result.rst += u64::from(tcp.rst);
                let key = (
                    source.clone(),
                    destination.clone(),
                    tcp.source_port,
                    tcp.destination_port,
                );
                let reverse = (destination, source, tcp.destination_port, tcp.source_port);
                if !first_of_flow.contains_key(&key) && !first_of_flow.contains_key(&reverse) {
                    assert!(tcp.syn && !tcp.ack, "a TCP conversation starts with a SYN");
                    first_of_flow.insert(key, 0);
                }
            }
            (Some(net), Some(TransportHeader::Udp(udp))) => {
                let computed = match net {
                    NetHeaders::Ipv4(ip, _) => udp.calc_checksum_ipv4(ip, payload).unwrap(),
                    NetHeaders::Ipv6(ip, _) => udp.calc_checksum_ipv6(ip, payload).unwrap(),
                    _ => unreachable!(),
                };
                checksum_ok(computed, udp.checksum);
                result.udp += 1;
                result.dns += u64::from(udp.destination_port == 53 || udp.source_port == 53);
            }
            (Some(NetHeaders::Ipv4(_, _)), Some(TransportHeader::Icmpv4(icmp))) => {
                assert_eq!(icmp.checksum, icmp.icmp_type.calc_checksum(payload));
                result.icmp_echo += 1;
            }
            (Some(NetHeaders::Ipv6(ip, _)), Some(TransportHeader::Icmpv6(icmp))) => {
                let computed = icmp
                    .icmp_type
                    .calc_checksum(ip.source, ip.destination, payload)
                    .unwrap();
                assert_eq!(icmp.checksum, computed);
                result.icmp_echo += 1;
            }
            other => panic!("unexpected transport: {other:?}"),
        }
    }
    result
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let policy = policy("hub-spoke.yaml");
    let options = GenerateOptions {
        flows: 300,
        seed: 7,
        syn_flood_rate: 0.05,
        ..GenerateOptions::default()
    };
    let (first, first_stats) = run(&policy, &options);
    let (second, second_stats) = run(&policy, &options);
    assert_eq!(first, second);
    assert_eq!(first_stats, second_stats);
    let (other, _) = run(&policy, &GenerateOptions { seed: 8, ..options });
    assert_ne!(first, other);
}

#[test]
fn frames_are_valid_and_counts_match() {
    let policy = policy("hub-spoke.yaml");
    let options = GenerateOptions {
        flows: 500,
        seed: 3,
        ..GenerateOptions::default()
    };
    let (bytes, stats) = run(&policy, &options);
    let check = check(&bytes);
    eprintln!("{stats:?}\n{check:?}");
    assert_eq!(stats.flows, 500);
    assert_eq!(stats.tcp_flows + stats.udp_flows + stats.icmp_flows, 500);
    assert_eq!(check.packets, stats.packets);
    assert_eq!(stats.flood_syns, 0);
    assert_eq!(stats.ipv6_flows, 0);
    assert_eq!(check.ipv6, 0);
    // Every conversation kind is there.
    assert!(
        check.syn_ack > 100 && check.fin > 100 && check.rst > 10,
        "{check:?}"
    );
    assert!(check.dns > 20 && check.icmp_echo > 20, "{check:?}");
    assert!(stats.random_flows > 50, "{stats:?}");
    // Each TCP flow sends at least one SYN; at most one SYN-ACK.
    assert!(check.syn_only >= stats.tcp_flows);
    assert!(check.syn_ack <= stats.tcp_flows);
}

#[test]
fn packet_limit_is_exact() {
    let policy = policy("hub-spoke.yaml");
    let options = GenerateOptions {
        flows: 1_000_000,
        packets: Some(12_345),
        seed: 5,
        syn_flood_rate: 0.1,
        ..GenerateOptions::default()
    };
    let (bytes, stats) = run(&policy, &options);
    assert_eq!(stats.packets, 12_345);
    let check = check(&bytes);
    assert_eq!(check.packets, 12_345);
    let flood_share = stats.flood_syns as f64 / stats.packets as f64;
    assert!((0.08..0.12).contains(&flood_share), "{flood_share}");
    assert!(stats.flows < 1_000_000);
}

#[test]
fn ipv6_flows_on_a_dual_stack_estate() {
    let policy = policy("dual-stack.yaml");
    let options = GenerateOptions {
        flows: 400,
        seed: 11,
        ipv6: true,
        ..GenerateOptions::default()
    };
    let (bytes, stats) = run(&policy, &options);
    let check = check(&bytes);
    assert!(stats.ipv6_flows > 60, "{stats:?}");
    assert!(check.ipv6 > 0 && check.ipv6 < check.packets, "{check:?}");
    let (bytes, _) = run(
        &policy,
        &GenerateOptions {
            ipv6: false,
            ..options
        },
    );
    assert_eq!(check_ipv6(&bytes), 0);
}

fn check_ipv6(bytes: &[u8]) -> u64 {
    check(bytes).ipv6
}

#[test]
fn bad_options_and_link_types_are_errors() {
    let policy = policy("hub-spoke.yaml");
    let mut writer = PcapWriter::new(Vec::new(), 101, TimestampPrecision::Nanoseconds).unwrap();
    assert!(generate(&policy, &GenerateOptions::default(), &mut writer).is_err());
    let mut writer = PcapWriter::new(Vec::new(), 1, TimestampPrecision::Nanoseconds).unwrap();
    let options = GenerateOptions {
        syn_flood_rate: 1.5,
        ..GenerateOptions::default()
    };
    assert!(generate(&policy, &options, &mut writer).is_err());
    let empty = nsgd::policy::Policy::default();
    assert!(generate(&empty, &GenerateOptions::default(), &mut writer).is_err());
}
