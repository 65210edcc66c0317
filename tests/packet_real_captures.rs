//! `packet::parse` against the shared corpus of real captures
//! (`../shared/pcaps/`, or `$NSGD_PCAPS`): every record of every file is
//! parsed (no panic), the Ip/NonIp/Drop counts per file are printed, and the
//! files with a known story are checked against it.
//!
//! The capture reader here is a deliberately tiny, test-only classic-pcap /
//! pcapng record iterator; the product reader lives in `io`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use nsgd::packet::{parse, DropReason, IcmpInfo, LinkType, PacketMeta, Parsed};

/// One captured record: the link type of its interface and the captured
/// bytes.
struct Record {
    linktype: u32,
    data: Vec<u8>,
}

/// Read every record that can be read; a damaged tail ends the list (the
/// second value says so).
fn read_capture(bytes: &[u8]) -> (Vec<Record>, bool) {
    let magic = u32_at(bytes, 0, true);
    match magic {
        Some(0x0a0d_0d0a) => read_pcapng(bytes),
        _ => read_pcap(bytes),
    }
}

fn u32_at(bytes: &[u8], at: usize, little: bool) -> Option<u32> {
    let raw: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
    Some(if little {
        u32::from_le_bytes(raw)
    } else {
        u32::from_be_bytes(raw)
    })
}

fn u16_at(bytes: &[u8], at: usize, little: bool) -> Option<u16> {
    let raw: [u8; 2] = bytes.get(at..at + 2)?.try_into().ok()?;
    Some(if little {
        u16::from_le_bytes(raw)
    } else {
        u16::from_be_bytes(raw)
    })
}

fn read_pcap(bytes: &[u8]) -> (Vec<Record>, bool) {
    let little = match u32_at(bytes, 0, true) {
        Some(0xa1b2_c3d4 | 0xa1b2_3c4d) => true,
        Some(0xd4c3_b2a1 | 0x4d3c_b2a1) => false,
        other => panic!("not a capture file (magic {other:x?})"),
    };
    let linktype = u32_at(bytes, 20, little).expect("pcap file header");
    let mut records = Vec::new();
    let mut at = 24;
    while at < bytes.len() {
        let (Some(captured), Some(_original)) = (
            u32_at(bytes, at + 8, little),
            u32_at(bytes, at + 12, little),
        ) else {
            return (records, true);
        };
        let start = at + 16;
        let Some(data) = bytes.get(start..start + captured as usize) else {
            return (records, true);
        };
        records.push(Record {
            linktype,
            data: data.to_vec(),
        });
        at = start + captured as usize;
    }
    (records, false)
}

fn read_pcapng(bytes: &[u8]) -> (Vec<Record>, bool) {
    let mut records = Vec::new();
    let mut interfaces: Vec<u32> = Vec::new();
    let mut little = true;
    let mut at = 0;
    while at < bytes.len() {
        let Some(kind) = u32_at(bytes, at, little) else {
            return (records, true);
        };
        if kind == 0x0a0d_0d0a {
            little = match u32_at(bytes, at + 8, true) {
                Some(0x1a2b_3c4d) => true,
                Some(0x4d3c_2b1a) => false,
                _ => return (records, true),
            };
            interfaces.clear();
        }
        let Some(length) = u32_at(bytes, at + 4, little).map(|l| l as usize) else {
            return (records, true);
        };
        let Some(block) = bytes.get(at..at + length).filter(|_| length >= 12) else {
            return (records, true);
        };
        match kind {
            1 => interfaces.push(u32::from(u16_at(block, 8, little).unwrap_or(0))),
            6 => {
                let interface = u32_at(block, 8, little).unwrap_or(0) as usize;
                let captured = u32_at(block, 20, little).unwrap_or(0) as usize;
                // The data is padded to 32 bits: slice it to caplen.
                let Some(data) = block.get(28..28 + captured) else {
                    return (records, true);
                };
                let linktype = *interfaces
                    .get(interface)
                    .expect("EPB names a known interface");
                records.push(Record {
                    linktype,
                    data: data.to_vec(),
                });
            }
            3 if length >= 16 => {
                let original = u32_at(block, 8, little).unwrap_or(0) as usize;
                let captured = original.min(length - 16);
                let data = &block[12..12 + captured];
                records.push(Record {
                    linktype: interfaces[0],
                    data: data.to_vec(),
                });
            }
            _ => {}
        }
        at += length;
    }
    (records, false)
}

#[derive(Default, Debug)]
struct Summary {
    ip: usize,
    non_ip: usize,
    drops: BTreeMap<&'static str, usize>,
    metas: Vec<PacketMeta>,
    damaged_tail: bool,
}

impl Summary {
    fn dropped(&self) -> usize {
        self.drops.values().sum()
    }
}

fn corpus() -> Option<PathBuf> {
    let directory = std::env::var_os("NSGD_PCAPS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/pcaps"));
    directory.is_dir().then_some(directory)
}

fn summarise_all() -> Option<BTreeMap<String, Summary>> {
    let directory = corpus()?;
    let mut summaries = BTreeMap::new();
    let mut names: Vec<_> = std::fs::read_dir(&directory)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("pcap" | "pcapng")
            )
        })
        .collect();
    names.sort();
    for path in names {
        let bytes = std::fs::read(&path).unwrap();
        let (records, damaged_tail) = read_capture(&bytes);
        let mut summary = Summary {
            damaged_tail,
            ..Summary::default()
        };
        for record in &records {
            let link =
                LinkType::from_linktype(record.linktype).expect("corpus link types are supported");
            match parse(link, &record.data) {
                Parsed::Ip(meta) => {
                    summary.ip += 1;
                    summary.metas.push(meta);
                }
                Parsed::NonIp { .. } => summary.non_ip += 1,
                Parsed::Drop(reason) => *summary.drops.entry(reason.as_str()).or_default() += 1,
            }
        }
        summaries.insert(
            path.file_name().unwrap().to_string_lossy().into_owned(),
            summary,
        );
    }
    eprintln!(
        "{:<40} {:>6} {:>6} {:>5}  drop reasons",
        "capture", "ip", "non-ip", "drop"
    );
    for (name, summary) in &summaries {
        eprintln!(
            "{name:<40} {:>6} {:>6} {:>5}  {:?}{}",
            summary.ip,
            summary.non_ip,
            summary.dropped(),
            summary.drops,
            if summary.damaged_tail {
                " (damaged tail)"
            } else {
                ""
            }
        );
    }
    Some(summaries)
}

fn get<'a>(summaries: &'a BTreeMap<String, Summary>, name: &str) -> &'a Summary {
    summaries
        .get(name)
        .unwrap_or_else(|| panic!("{name} is in the corpus"))
}

#[test]
fn real_captures() {
    let Some(summaries) = summarise_all() else {
        eprintln!("skipped: no ../shared/pcaps (set NSGD_PCAPS to the corpus)");
        return;
    };
    assert!(summaries.len() >= 31, "whole corpus read");

    // Only the deliberately malformed files drop anything.
    for (name, summary) in &summaries {
        if !name.starts_with("malformed-") && name != "fuzzed-udp-snaplen69.pcap" {
            assert_eq!(summary.dropped(), 0, "{name}: {:?}", summary.drops);
        }
    }

    let only_drop = |name: &str, reason: DropReason| {
        let summary = get(&summaries, name);
        assert_eq!(summary.ip + summary.non_ip, 0, "{name}");
        assert_eq!(
            summary.drops.get(reason.as_str()),
            Some(&1),
            "{name}: {:?}",
            summary.drops
        );
    };
    only_drop(
        "malformed-ipv4-broken-header.pcap",
        DropReason::BadIpv4TotalLength,
    );
    only_drop("malformed-ip4-trunc.pcap", DropReason::TruncatedIpv4);
    only_drop("malformed-ip6-ext-trunc.pcap", DropReason::BadIpv6Extension);

    // Snap-length cuts inside the payload are judged normally.
    let icmp_cut = get(&summaries, "malformed-icmp-payload-trunc.pcap");
    assert_eq!(icmp_cut.ip, 4);
    assert!(icmp_cut
        .metas
        .iter()
        .all(|m| matches!(m.icmp, IcmpInfo::Echo { .. })));
    let snaplen = get(&summaries, "snaplen-cut-http-rst.pcap");
    assert_eq!(snaplen.ip, 75);
    assert!(snaplen
        .metas
        .iter()
        .all(|m| m.key.protocol == 6 && m.key.destination_port != 0));
    // The capture cut the GRO frames but kept their IP headers (1328-byte
    // total length in 2670-byte frames): ip_length is the header's word.
    assert!(snaplen
        .metas
        .iter()
        .all(|m| (40..=1500).contains(&m.ip_length)));

    // Ping: equal ports (the identifier) on every echo.
    let ping = get(&summaries, "dns-icmp-ping.pcap");
    let echoes: Vec<_> = ping
        .metas
        .iter()
        .filter(|m| matches!(m.icmp, IcmpInfo::Echo { .. }))
        .collect();
    assert_eq!(echoes.len(), 22);
    assert!(echoes
        .iter()
        .all(|m| m.key.source_port == m.key.destination_port && m.key.protocol == 1));
    assert_eq!(
        ping.metas.iter().filter(|m| m.key.protocol == 17).count(),
        10
    );

    // ICMP errors quote TCP/UDP flows in the same family.
    for (name, ipv6) in [
        ("icmp-sample-libtrace.pcap", false),
        ("icmpv6-sample-libtrace.pcap", true),
    ] {
        let summary = get(&summaries, name);
        let quoted: Vec<_> = summary
            .metas
            .iter()
            .filter_map(|m| match m.icmp {
                IcmpInfo::Error { quoted } => Some(quoted),
                _ => None,
            })
            .collect();
        assert!(quoted.iter().all(|q| q.ipv6 == ipv6), "{name}");
        let transport = quoted
            .iter()
            .filter(|q| matches!(q.protocol, 6 | 17))
            .count();
        assert!(transport > 0, "{name}: {quoted:?}");
        assert!(
            quoted
                .iter()
                .filter(|q| matches!(q.protocol, 6 | 17))
                .all(|q| q.destination_port != 0 || q.source_port != 0),
            "{name}: quoted TCP/UDP carry ports"
        );
        eprintln!(
            "{name}: {} ICMP errors, {transport} quoting TCP/UDP",
            quoted.len()
        );
    }
    // An error travels back to the quoted packet's sender: the quote is in
    // its own direction, so its source is the error's destination (no NAT
    // in these traces).
    for name in [
        "icmp-sample-libtrace.pcap",
        "icmpv6-sample-libtrace.pcap",
        "nanosec-mixed.pcap",
    ] {
        let errors: Vec<_> = get(&summaries, name)
            .metas
            .iter()
            .filter_map(|m| match m.icmp {
                IcmpInfo::Error { quoted } => Some((m.key, quoted)),
                _ => None,
            })
            .collect();
        let back_to_sender = errors
            .iter()
            .filter(|(outer, quoted)| quoted.source == outer.destination)
            .count();
        eprintln!(
            "{name}: {back_to_sender} of {} errors go back to the quoted sender",
            errors.len()
        );
        assert!(
            !errors.is_empty() && back_to_sender == errors.len(),
            "{name}: {errors:?}"
        );
    }
    let v6 = get(&summaries, "icmpv6-sample-libtrace.pcap");
    assert!(v6.metas.iter().any(PacketMeta::is_neighbour_discovery));

    // Fragments: first ones carry UDP ports, later ones an offset.
    for name in ["ipv4-fragments-udp.pcap", "ipv6-fragments-udp.pcap"] {
        let summary = get(&summaries, name);
        let fragments: Vec<_> = summary
            .metas
            .iter()
            .filter(|m| m.fragment.is_some())
            .collect();
        assert!(!fragments.is_empty(), "{name}");
        let (first, later): (Vec<&PacketMeta>, Vec<&PacketMeta>) = fragments
            .into_iter()
            .partition(|m| m.fragment.unwrap().is_first());
        assert!(!first.is_empty() && !later.is_empty(), "{name}");
        assert!(
            first.iter().all(|m| m.key.protocol == 17
                && m.key.source_port != 0
                && m.key.destination_port != 0),
            "{name}"
        );
        assert!(
            later.iter().all(|m| m.fragment.unwrap().offset > 0
                && m.key.source_port == 0
                && m.key.destination_port == 0),
            "{name}"
        );
        eprintln!(
            "{name}: {} first fragments, {} later",
            first.len(),
            later.len()
        );
    }
    assert_eq!(
        get(&summaries, "ipv4-fragments-udp.pcap")
            .metas
            .iter()
            .filter(|m| m.fragment.is_some())
            .count(),
        50
    );
    assert_eq!(
        get(&summaries, "ipv6-fragments-udp.pcap")
            .metas
            .iter()
            .filter(|m| m.fragment.is_some())
            .count(),
        36
    );

    // Every link type and VLAN arrangement reaches IP keys.
    for name in [
        "sll-mixed.pcap",
        "sll2-tcp-handshake.pcap",
        "sll2-icmp-icmpv6-arp.pcap",
        "rawip-v4-v6-mixed.pcap",
        "rawip4-linktype228.pcap",
        "vlan-icmp-arp.pcap",
        "vlan-partial-tcp-syn-retransmit.pcap",
        "vlan-tcp-rst-with-data.pcap",
        "pcapng-2if-ns-and-us.pcapng",
        "pcapng-nanosec-tcp.pcapng",
    ] {
        let summary = get(&summaries, name);
        assert!(
            summary.ip > 0 && summary.dropped() == 0,
            "{name}: {summary:?}"
        );
    }
    let raw = get(&summaries, "rawip-v4-v6-mixed.pcap");
    assert_eq!(raw.metas.iter().filter(|m| m.key.ipv6).count(), 50);
    assert_eq!(raw.metas.iter().filter(|m| !m.key.ipv6).count(), 50);
    let vlan = get(&summaries, "vlan-icmp-arp.pcap");
    assert_eq!((vlan.ip, vlan.non_ip), (9, 6));
    // Tagged and untagged directions of one connection give one canonical key.
    let partial = get(&summaries, "vlan-partial-tcp-syn-retransmit.pcap");
    assert_eq!(partial.ip, 254);
    let canonical = partial.metas[0].key.canonical();
    assert!(partial.metas.iter().all(|m| m.key.canonical() == canonical));

    // Damaged files give their good records, then stop.
    assert!(get(&summaries, "damaged-record-header.pcap").damaged_tail);
    assert!(get(&summaries, "cut-short-dns.pcap").damaged_tail);
}
