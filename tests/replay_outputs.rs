//! Output captures of `replay` when a pcapng mixes link types: a pcap holds
//! one link type, so packets of the others are left out of it — and counted,
//! never silently lost.

use std::path::Path;
use std::sync::Arc;

use nsgd::compile::Program;
use nsgd::pipeline::{replay, ReplayOptions};

fn ipv4_udp(source: [u8; 4], destination: [u8; 4], port: u16) -> Vec<u8> {
    let payload = b"probe";
    let udp_len = 8 + payload.len();
    let total = 20 + udp_len;
    let mut ip = vec![
        0x45,
        0,
        (total >> 8) as u8,
        total as u8,
        0,
        1,
        0,
        0,
        64,
        17,
        0,
        0,
    ];
    ip.extend_from_slice(&source);
    ip.extend_from_slice(&destination);
    let mut sum: u32 = ip
        .chunks(2)
        .map(|w| u32::from(w[0]) << 8 | u32::from(w[1]))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let checksum = !(sum as u16);
    ip[10..12].copy_from_slice(&checksum.to_be_bytes());
    ip.extend_from_slice(&40000u16.to_be_bytes());
    ip.extend_from_slice(&port.to_be_bytes());
    ip.extend_from_slice(&(udp_len as u16).to_be_bytes());
    ip.extend_from_slice(&[0, 0]);
    ip.extend_from_slice(payload);
    ip
}

fn block(kind: u32, body: &[u8]) -> Vec<u8> {
    let padded = body.len().div_ceil(4) * 4;
    let total = (12 + padded) as u32;
    let mut out = Vec::new();
    out.extend_from_slice(&kind.to_le_bytes());
    out.extend_from_slice(&total.to_le_bytes());
    out.extend_from_slice(body);
    out.resize(8 + padded, 0);
    out.extend_from_slice(&total.to_le_bytes());
    out
}

/// A pcapng with an Ethernet interface and a raw-IP interface, one packet
/// on each.
fn mixed_capture(path: &Path) {
    let mut file = Vec::new();
    let mut section = Vec::new();
    section.extend_from_slice(&0x1A2B_3C4Du32.to_le_bytes());
    section.extend_from_slice(&1u16.to_le_bytes());
    section.extend_from_slice(&0u16.to_le_bytes());
    section.extend_from_slice(&(-1i64).to_le_bytes());
    file.extend(block(0x0A0D_0D0A, &section));
    for link_type in [1u16, 101] {
        let mut interface = Vec::new();
        interface.extend_from_slice(&link_type.to_le_bytes());
        interface.extend_from_slice(&0u16.to_le_bytes());
        interface.extend_from_slice(&65535u32.to_le_bytes());
        file.extend(block(1, &interface));
    }
    let packet = ipv4_udp([10, 20, 1, 10], [10, 20, 2, 20], 9000);
    let mut ethernet = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
    ethernet.extend_from_slice(&packet);
    for (interface, data) in [(0u32, &ethernet), (1, &packet)] {
        let mut record = Vec::new();
        record.extend_from_slice(&interface.to_le_bytes());
        record.extend_from_slice(&0u32.to_le_bytes());
        record.extend_from_slice(&(1_000_000u32 + interface).to_le_bytes());
        record.extend_from_slice(&(data.len() as u32).to_le_bytes());
        record.extend_from_slice(&(data.len() as u32).to_le_bytes());
        record.extend_from_slice(data);
        file.extend(block(6, &record));
    }
    std::fs::write(path, file).unwrap();
}

#[test]
fn packets_of_a_second_link_type_are_counted_not_lost() {
    let dir = std::env::temp_dir().join(format!("nsgd-outputs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let capture = dir.join("mixed.pcapng");
    mixed_capture(&capture);
    let policy =
        nsgd::policy::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/live-lab.yaml"))
            .unwrap();
    let program = Arc::new(Program::compile(&policy).unwrap());
    let options = ReplayOptions {
        workers: 1,
        allowed_output: Some(dir.join("allowed.pcap")),
        denied_output: Some(dir.join("denied.pcap")),
        ..ReplayOptions::default()
    };
    let report = replay(program, std::slice::from_ref(&capture), &options).unwrap();
    assert_eq!(report.packets_in, 2);
    assert_eq!(report.packets_allowed, 2, "{report:?}");
    assert_eq!(report.packets_not_written, 1, "{report:?}");
    // The Ethernet packet is in the pcap (24-byte header + 16 + frame).
    let written = std::fs::read(dir.join("allowed.pcap")).unwrap();
    assert_eq!(written.len(), 24 + 16 + 14 + 33);
    std::fs::remove_dir_all(&dir).unwrap();
}
