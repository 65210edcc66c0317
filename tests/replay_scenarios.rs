//! The stateful semantics, packet by packet: hand-built captures replayed
//! through the library pipeline, each verdict checked (nsg-semantics.md §5–§7).

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use etherparse::PacketBuilder;
use nsgd::compile::Program;
use nsgd::io::{PcapWriter, TimestampPrecision};
use nsgd::pipeline::{replay, ReplayOptions, ReplayReport};

const POLICY: &str = r#"
vnets:
  - name: app
    addressSpace: [10.0.0.0/16]
    subnets:
      - name: web
        addressPrefix: 10.0.1.0/24
        networkSecurityGroup: web-nsg
nics:
  - name: web-1
    subnet: app/web
    ipAddresses: [10.0.1.4]
networkSecurityGroups:
  - name: web-nsg
    securityRules:
      - name: allow-http-in
        priority: 100
        direction: Inbound
        access: Allow
        protocol: Tcp
        sourceAddressPrefix: Internet
        sourcePortRange: '*'
        destinationAddressPrefix: '*'
        destinationPortRange: '80'
      - name: allow-dns-out
        priority: 100
        direction: Outbound
        access: Allow
        protocol: Udp
        sourceAddressPrefix: '*'
        sourcePortRange: '*'
        destinationAddressPrefix: '*'
        destinationPortRange: '53'
      - name: deny-internet-out
        priority: 200
        direction: Outbound
        access: Deny
        protocol: '*'
        sourceAddressPrefix: '*'
        sourcePortRange: '*'
        destinationAddressPrefix: Internet
        destinationPortRange: '*'
"#;

const WEB: [u8; 4] = [10, 0, 1, 4];
const CLIENT: [u8; 4] = [203, 0, 113, 9];
const RESOLVER: [u8; 4] = [8, 8, 8, 8];

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const FIN: u8 = 0x01;
const SYN_ACK: u8 = SYN | ACK;

struct Capture {
    frames: Vec<(u64, Vec<u8>)>,
}

impl Capture {
    fn new() -> Self {
        Capture { frames: Vec::new() }
    }

    fn tcp(
        &mut self,
        t: f64,
        src: [u8; 4],
        sport: u16,
        dst: [u8; 4],
        dport: u16,
        flags: u8,
    ) -> usize {
        let mut builder = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4(src, dst, 64)
            .tcp(sport, dport, 1000, 65535);
        if flags & SYN != 0 {
            builder = builder.syn();
        }
        if flags & ACK != 0 {
            builder = builder.ack(1);
        }
        if flags & FIN != 0 {
            builder = builder.fin();
        }
        let mut frame = Vec::new();
        builder.write(&mut frame, &[]).unwrap();
        self.push(t, frame)
    }

    fn udp(&mut self, t: f64, src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> usize {
        let builder = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4(src, dst, 64)
            .udp(sport, dport);
        let mut frame = Vec::new();
        builder.write(&mut frame, &[0u8; 32]).unwrap();
        self.push(t, frame)
    }

    /// An ICMP port-unreachable from `from` quoting a UDP packet src→dst.
    fn icmp_unreachable(
        &mut self,
        t: f64,
        from: [u8; 4],
        to: [u8; 4],
        quoted: ([u8; 4], u16, [u8; 4], u16),
    ) -> usize {
        let mut inner = Vec::new();
        PacketBuilder::ipv4(quoted.0, quoted.2, 64)
            .udp(quoted.1, quoted.3)
            .write(&mut inner, &[])
            .unwrap();
        let builder = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4(from, to, 64)
            .icmpv4(etherparse::Icmpv4Type::DestinationUnreachable(
                etherparse::icmpv4::DestUnreachableHeader::Port,
            ));
        let mut frame = Vec::new();
        builder.write(&mut frame, &inner).unwrap();
        self.push(t, frame)
    }

    fn push(&mut self, t: f64, frame: Vec<u8>) -> usize {
        self.frames
            .push(((t * 1e9) as u64 + 1_700_000_000_000_000_000, frame));
        self.frames.len() - 1
    }

    fn write(&self, path: &Path) {
        let file = std::fs::File::create(path).unwrap();
        let mut writer = PcapWriter::new(
            std::io::BufWriter::new(file),
            1,
            TimestampPrecision::Nanoseconds,
        )
        .unwrap();
        for (t, frame) in &self.frames {
            writer.write_frame(*t, frame, frame.len() as u32).unwrap();
        }
        writer.finish().unwrap();
    }
}

struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("nsgd-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn program() -> Arc<Program> {
    let policy =
        nsgd::policy::parse_str(POLICY, nsgd::policy::Format::Yaml, "scenario.yaml").unwrap();
    Arc::new(Program::compile(&policy).unwrap())
}

/// Replays and returns the report and the verdict lines as JSON values.
fn run(
    capture: &Capture,
    name: &str,
    tune: impl Fn(&mut ReplayOptions),
) -> (ReplayReport, Vec<serde_json::Value>) {
    let scratch = Scratch::new(name);
    let pcap = scratch.0.join("in.pcap");
    capture.write(&pcap);
    let verdicts = scratch.0.join("verdicts.jsonl");
    let mut options = ReplayOptions {
        workers: 2,
        verdicts_output: Some(verdicts.clone()),
        ..ReplayOptions::default()
    };
    tune(&mut options);
    let report = replay(program(), &[pcap], &options).unwrap();
    let lines = std::fs::read_to_string(&verdicts)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (report, lines)
}

fn verdict(lines: &[serde_json::Value], index: usize) -> (String, String) {
    let line = &lines[index];
    assert_eq!(line["index"], index as u64);
    (
        line["verdict"].as_str().unwrap().to_string(),
        line["reason"].as_str().unwrap().to_string(),
    )
}

fn is(lines: &[serde_json::Value], index: usize, expected: (&str, &str)) {
    let got = verdict(lines, index);
    assert_eq!(
        (got.0.as_str(), got.1.as_str()),
        expected,
        "packet {index}: {}",
        lines[index]
    );
}

#[test]
fn return_traffic_of_an_allowed_flow_needs_no_rule() {
    let mut c = Capture::new();
    let syn = c.tcp(0.0, CLIENT, 40000, WEB, 80, SYN);
    let syn_ack = c.tcp(0.001, WEB, 80, CLIENT, 40000, SYN_ACK);
    let ack = c.tcp(0.002, CLIENT, 40000, WEB, 80, ACK);
    let (report, lines) = run(&c, "return", |_| {});
    is(&lines, syn, ("allow", "new-flow"));
    assert_eq!(lines[syn]["rule"], "allow-http-in");
    assert_eq!(lines[syn]["nsg"], "web-nsg");
    // web-1's outbound rules deny the internet, yet the reply passes.
    is(&lines, syn_ack, ("allow", "established"));
    is(&lines, ack, ("allow", "established"));
    assert_eq!(report.packets_in, 3);
    assert_eq!(report.flows.created, 1);
}

#[test]
fn unsolicited_inbound_is_denied_and_replies_to_denied_flows_too() {
    let mut c = Capture::new();
    let ssh = c.tcp(0.0, CLIENT, 40001, WEB, 22, SYN);
    let reply = c.tcp(0.001, WEB, 22, CLIENT, 40001, SYN_ACK);
    let retry = c.tcp(1.0, CLIENT, 40001, WEB, 22, SYN);
    let (report, lines) = run(&c, "unsolicited", |_| {});
    is(&lines, ssh, ("deny", "rule"));
    assert_eq!(lines[ssh]["rule"], "DenyAllInBound");
    // A reply seen in the capture must not open what the policy closed.
    is(&lines, reply, ("deny", "rule"));
    // The retry meets the cached deny entry, not the classifier again.
    is(&lines, retry, ("deny", "rule"));
    assert_eq!(report.flows.created, 1);
    assert_eq!(report.denied_by_reason["rule"], 3);
}

#[test]
fn teardown_and_timeout_end_flows() {
    let mut c = Capture::new();
    c.tcp(0.0, CLIENT, 40002, WEB, 80, SYN);
    c.tcp(0.001, WEB, 80, CLIENT, 40002, SYN_ACK);
    c.tcp(0.002, CLIENT, 40002, WEB, 80, ACK);
    c.tcp(1.0, CLIENT, 40002, WEB, 80, FIN | ACK);
    c.tcp(1.001, WEB, 80, CLIENT, 40002, FIN | ACK);
    // 30 s later the closed flow is gone: web-1's late packet towards the
    // internet is a new outbound flow, which the policy denies.
    let late = c.tcp(31.0, WEB, 80, CLIENT, 40002, ACK);
    // A UDP flow idle past its timeout is gone too.
    let query = c.udp(40.0, WEB, 5353, RESOLVER, 53);
    let answer = c.udp(40.01, RESOLVER, 53, WEB, 5353);
    let stale_answer = c.udp(40.0 + 241.0, RESOLVER, 53, WEB, 5353);
    let (report, lines) = run(&c, "teardown", |_| {});
    is(&lines, late, ("deny", "rule"));
    assert_eq!(lines[late]["rule"], "deny-internet-out");
    is(&lines, query, ("allow", "new-flow"));
    is(&lines, answer, ("allow", "established"));
    is(&lines, stale_answer, ("deny", "rule"));
    assert!(report.flows.expired >= 2, "{:?}", report.flows);
}

#[test]
fn icmp_errors_pass_only_for_allowed_flows() {
    let mut c = Capture::new();
    c.udp(0.0, WEB, 5353, RESOLVER, 53);
    let related = c.icmp_unreachable(0.01, RESOLVER, WEB, (WEB, 5353, RESOLVER, 53));
    let unrelated = c.icmp_unreachable(0.02, RESOLVER, WEB, (WEB, 5354, RESOLVER, 53));
    let (_, lines) = run(&c, "icmp", |_| {});
    is(&lines, related, ("allow", "related"));
    is(&lines, unrelated, ("deny", "unrelated-icmp-error"));
}

#[test]
fn strict_tcp_drops_mid_stream_pickup() {
    let mut c = Capture::new();
    let mid = c.tcp(0.0, CLIENT, 40003, WEB, 80, ACK);
    let (_, lenient) = run(&c, "midstream", |_| {});
    is(&lenient, mid, ("allow", "new-flow"));
    let (_, strict) = run(&c, "midstream-strict", |o| o.dataplane.strict_tcp = true);
    is(&strict, mid, ("deny", "strict-tcp"));
}

#[test]
fn a_flood_that_fills_the_flow_table_keeps_established_flows() {
    let mut c = Capture::new();
    c.tcp(0.0, CLIENT, 40004, WEB, 80, SYN);
    c.tcp(0.001, WEB, 80, CLIENT, 40004, SYN_ACK);
    c.tcp(0.002, CLIENT, 40004, WEB, 80, ACK);
    // 5,000 spoofed SYNs into a table of 512 flows.
    for i in 0..5000u32 {
        let source = Ipv4Addr::from(0xC633_6400u32 + (i % 250) + 1).octets();
        c.tcp(
            0.1 + f64::from(i) * 1e-5,
            source,
            1024 + (i / 250) as u16,
            WEB,
            80,
            SYN,
        );
    }
    let during = c.tcp(0.2, CLIENT, 40004, WEB, 80, ACK);
    let reply = c.tcp(0.201, WEB, 80, CLIENT, 40004, ACK);
    let (report, lines) = run(&c, "flood", |o| o.dataplane.max_flows = 512);
    is(&lines, during, ("allow", "established"));
    is(&lines, reply, ("allow", "established"));
    assert!(report.flows.evicted > 0);
    assert_eq!(report.flows.evicted_established, 0, "{:?}", report.flows);
    assert_eq!(
        report.packets_in,
        report.packets_allowed + report.packets_denied
    );
}

#[test]
fn worker_count_does_not_change_the_result() {
    let mut c = Capture::new();
    for i in 0..300u16 {
        let client = [203, 0, 113, (i % 50) as u8 + 1];
        let t = f64::from(i) * 0.01;
        c.tcp(
            t,
            client,
            30000 + i,
            WEB,
            if i % 3 == 0 { 22 } else { 80 },
            SYN,
        );
        c.tcp(
            t + 0.001,
            WEB,
            if i % 3 == 0 { 22 } else { 80 },
            client,
            30000 + i,
            SYN_ACK,
        );
        c.udp(
            t + 0.002,
            WEB,
            6000 + i,
            RESOLVER,
            if i % 2 == 0 { 53 } else { 123 },
        );
    }
    let scratch = Scratch::new("determinism");
    let pcap = scratch.0.join("in.pcap");
    c.write(&pcap);
    let mut outputs = Vec::new();
    for workers in [1usize, 2, 3, 5] {
        let dir = scratch.0.join(format!("w{workers}"));
        std::fs::create_dir_all(&dir).unwrap();
        let options = ReplayOptions {
            workers,
            allowed_output: Some(dir.join("allowed.pcap")),
            denied_output: Some(dir.join("denied.pcap")),
            verdicts_output: Some(dir.join("verdicts.jsonl")),
            flow_log_output: Some(dir.join("flows.json")),
            dataplane: nsgd::dataplane::DataplaneConfig {
                flow_log: true,
                max_flows: 256,
                ..Default::default()
            },
            ..ReplayOptions::default()
        };
        let mut report = replay(program(), std::slice::from_ref(&pcap), &options).unwrap();
        report.elapsed_seconds = 0.0;
        report.packets_per_second = 0.0;
        report.workers = 0;
        let files: Vec<Vec<u8>> = [
            "allowed.pcap",
            "denied.pcap",
            "verdicts.jsonl",
            "flows.json",
        ]
        .iter()
        .map(|f| std::fs::read(dir.join(f)).unwrap())
        .collect();
        outputs.push((serde_json::to_string(&report).unwrap(), files));
    }
    for other in &outputs[1..] {
        assert_eq!(
            other.0, outputs[0].0,
            "summary differs with the worker count"
        );
        for (i, name) in [
            "allowed.pcap",
            "denied.pcap",
            "verdicts.jsonl",
            "flows.json",
        ]
        .iter()
        .enumerate()
        {
            assert!(
                other.1[i] == outputs[0].1[i],
                "{name} differs with the worker count"
            );
        }
    }
}

/// A raw IPv4 fragment of a UDP datagram, Ethernet-framed.
fn ipv4_fragment(
    src: [u8; 4],
    dst: [u8; 4],
    id: u16,
    offset_units: u16,
    more: bool,
    payload: &[u8],
) -> Vec<u8> {
    let mut frame = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
    let total = 20 + payload.len() as u16;
    let flags = if more { 0x2000 } else { 0 } | offset_units;
    let mut header = vec![0x45, 0];
    header.extend_from_slice(&total.to_be_bytes());
    header.extend_from_slice(&id.to_be_bytes());
    header.extend_from_slice(&flags.to_be_bytes());
    header.extend_from_slice(&[64, 17, 0, 0]);
    header.extend_from_slice(&src);
    header.extend_from_slice(&dst);
    let checksum = {
        let mut sum = 0u32;
        for pair in header.chunks(2) {
            sum += u32::from(u16::from_be_bytes([pair[0], pair[1]]));
        }
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    };
    header[10..12].copy_from_slice(&checksum.to_be_bytes());
    frame.extend_from_slice(&header);
    frame.extend_from_slice(payload);
    frame
}

#[test]
fn later_fragments_follow_their_first_and_orphans_drop() {
    let mut c = Capture::new();
    // UDP 5353 -> 8.8.8.8:53 (allowed outbound), split in two fragments.
    let mut first_payload = vec![0x14, 0xe9, 0x00, 0x35, 0x00, 0x20, 0x00, 0x00];
    first_payload.extend_from_slice(&[0u8; 16]);
    let first = c.push(
        0.0,
        ipv4_fragment(WEB, RESOLVER, 7, 0, true, &first_payload),
    );
    let second = c.push(0.001, ipv4_fragment(WEB, RESOLVER, 7, 3, false, &[0u8; 8]));
    // To port 123 (denied by deny-internet-out): the rest is dropped too.
    let mut denied_payload = vec![0x14, 0xe9, 0x00, 0x7b, 0x00, 0x20, 0x00, 0x00];
    denied_payload.extend_from_slice(&[0u8; 16]);
    let denied_first = c.push(
        0.002,
        ipv4_fragment(WEB, RESOLVER, 8, 0, true, &denied_payload),
    );
    let denied_second = c.push(0.003, ipv4_fragment(WEB, RESOLVER, 8, 3, false, &[0u8; 8]));
    let orphan = c.push(0.004, ipv4_fragment(WEB, RESOLVER, 9, 3, false, &[0u8; 8]));
    let (report, lines) = run(&c, "fragments", |_| {});
    is(&lines, first, ("allow", "new-flow"));
    is(&lines, second, ("allow", "fragment"));
    is(&lines, denied_first, ("deny", "rule"));
    assert_eq!(verdict(&lines, denied_second).0, "deny");
    is(&lines, orphan, ("deny", "orphan-fragment"));
    assert_eq!(report.denied_by_reason["orphan-fragment"], 1);
}

#[test]
fn long_flows_get_continuation_tuples_whose_counters_add_up() {
    let mut c = Capture::new();
    // One UDP exchange per minute for 12 minutes (never idle for 4).
    for minute in 0..12 {
        c.udp(f64::from(minute) * 60.0, WEB, 5353, RESOLVER, 53);
        c.udp(f64::from(minute) * 60.0 + 0.01, RESOLVER, 53, WEB, 5353);
    }
    let scratch = Scratch::new("flowlog");
    let pcap = scratch.0.join("in.pcap");
    c.write(&pcap);
    let log = scratch.0.join("flows.json");
    let options = ReplayOptions {
        workers: 1,
        flow_log_output: Some(log.clone()),
        dataplane: nsgd::dataplane::DataplaneConfig {
            flow_log: true,
            ..Default::default()
        },
        ..ReplayOptions::default()
    };
    replay(program(), &[pcap], &options).unwrap();
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&log).unwrap()).unwrap();
    let mut tuples: Vec<Vec<String>> = Vec::new();
    for record in doc["records"].as_array().unwrap() {
        assert_eq!(record["properties"]["Version"], 2);
        for rule in record["properties"]["flows"].as_array().unwrap() {
            assert_eq!(rule["rule"], "UserRule_allow-dns-out");
            for group in rule["flows"].as_array().unwrap() {
                for tuple in group["flowTuples"].as_array().unwrap() {
                    tuples.push(
                        tuple
                            .as_str()
                            .unwrap()
                            .split(',')
                            .map(str::to_string)
                            .collect(),
                    );
                }
            }
        }
    }
    let states: Vec<&str> = tuples.iter().map(|t| t[8].as_str()).collect();
    // Begin, a C at 5 and 10 minutes, and the final C at the end of the capture.
    assert_eq!(states, vec!["B", "C", "C", "C"], "{tuples:?}");
    assert_eq!(&tuples[0][5..8], &["U", "O", "A"]);
    let sum = |column: usize| -> u64 {
        tuples[1..]
            .iter()
            .map(|t| t[column].parse::<u64>().unwrap())
            .sum()
    };
    assert_eq!(sum(9), 12, "packets out over all C tuples");
    assert_eq!(sum(11), 12, "packets back over all C tuples");
}
