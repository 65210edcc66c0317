//! NSG flow logs, schema version 2 (nsg-semantics.md §8.1): one record per NSG
//! per minute, rules grouped inside, each flow a comma-separated tuple with
//! B (begin), C (continuing, every 5 minutes) or E (end) state and the packet
//! and byte counters since the flow's previous tuple.
//!
//! Events arrive from the dataplane in any order (one stream per shard); the
//! log sorts them, so the document is the same whatever the worker count.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;

use serde::Serialize;

/// Seconds between `C` tuples of a long-lived flow.
pub const CONTINUATION_INTERVAL_NS: u64 = 5 * 60 * 1_000_000_000;

/// Flow state column of a v2 tuple.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FlowState {
    Begin,
    Continuing,
    End,
}

impl FlowState {
    fn letter(self) -> char {
        match self {
            FlowState::Begin => 'B',
            FlowState::Continuing => 'C',
            FlowState::End => 'E',
        }
    }
}

/// One tuple-to-be, as the dataplane reports it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct FlowEvent {
    /// Capture time of the event, nanoseconds since the Unix epoch.
    pub time_ns: u64,
    /// NSG that logs the flow (the denying one, or the last that allowed).
    pub nsg: String,
    /// `UserRule_<name>` or `DefaultRule_<name>`.
    pub rule: String,
    /// 12 upper-case hex digits, no separators.
    pub mac: String,
    pub source: IpAddr,
    pub destination: IpAddr,
    pub source_port: u16,
    pub destination_port: u16,
    /// IP protocol number; only TCP and UDP are written (the only ones the
    /// schema documents), others are counted as skipped.
    pub protocol: u8,
    /// `true`: inbound to the logging NSG's NIC.
    pub inbound: bool,
    pub allowed: bool,
    pub state: FlowState,
    /// Since the previous tuple of the flow (empty on `B`).
    pub packets_forward: u64,
    pub bytes_forward: u64,
    pub packets_reverse: u64,
    pub bytes_reverse: u64,
}

impl FlowEvent {
    fn tuple(&self) -> Option<String> {
        let protocol = match self.protocol {
            6 => 'T',
            17 => 'U',
            _ => return None,
        };
        let mut out = String::with_capacity(96);
        let _ = write!(
            out,
            "{},{},{},{},{},{},{},{},{}",
            self.time_ns / 1_000_000_000,
            self.source,
            self.destination,
            self.source_port,
            self.destination_port,
            protocol,
            if self.inbound { 'I' } else { 'O' },
            if self.allowed { 'A' } else { 'D' },
            self.state.letter(),
        );
        if self.state == FlowState::Begin {
            out.push_str(",,,,");
        } else {
            let _ = write!(
                out,
                ",{},{},{},{}",
                self.packets_forward, self.bytes_forward, self.packets_reverse, self.bytes_reverse
            );
        }
        Some(out)
    }
}

#[derive(Serialize)]
struct Document {
    records: Vec<Record>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Record {
    time: String,
    system_id: String,
    category: &'static str,
    resource_id: String,
    operation_name: &'static str,
    properties: Properties,
}

#[derive(Serialize)]
struct Properties {
    #[serde(rename = "Version")]
    version: u32,
    flows: Vec<RuleFlows>,
}

#[derive(Serialize)]
struct RuleFlows {
    rule: String,
    flows: Vec<MacFlows>,
}

#[derive(Serialize)]
struct MacFlows {
    mac: String,
    #[serde(rename = "flowTuples")]
    flow_tuples: Vec<String>,
}

/// A deterministic GUID-shaped id for an NSG (Azure's `systemId`).
fn system_id(nsg: &str) -> String {
    // FNV-1a, twice with different offsets, for 128 stable bits.
    let hash = |seed: u64| {
        nsg.bytes().fold(seed, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01B3)
        })
    };
    let (a, b) = (hash(0xcbf2_9ce4_8422_2325), hash(0x8422_2325_cbf2_9ce4));
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xffff,
        b >> 48,
        b & 0xffff_ffff_ffff
    )
}

/// `2018-11-13T12:00:00.0000000Z` for a minute boundary (UTC).
fn iso_minute(minute: u64) -> String {
    let seconds = minute * 60;
    let days = seconds / 86_400;
    let secs_of_day = seconds % 86_400;
    // Civil-from-days (Howard Hinnant's algorithm), valid for the Unix era.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:00.0000000Z",
        secs_of_day / 3600,
        (secs_of_day % 3600) / 60
    )
}

/// Builds the flow-log document from events. Returns the JSON text and the
/// number of events skipped (protocols the v2 schema cannot express).
pub fn render(events: Vec<FlowEvent>) -> (String, usize) {
    let (records, skipped) = records_of(events);
    let text =
        serde_json::to_string_pretty(&Document { records }).unwrap_or_else(|_| "{}".to_string());
    (text, skipped)
}

/// One record per (minute, NSG), in time order; and the events skipped.
fn records_of(mut events: Vec<FlowEvent>) -> (Vec<Record>, usize) {
    events.sort();
    let mut skipped = 0;
    // (minute, nsg) → rule → mac → tuples, in sorted order.
    type Grouped = BTreeMap<(u64, String), BTreeMap<String, BTreeMap<String, Vec<String>>>>;
    let mut grouped: Grouped = BTreeMap::new();
    for event in &events {
        let Some(tuple) = event.tuple() else {
            skipped += 1;
            continue;
        };
        grouped
            .entry((minute_of(event.time_ns), event.nsg.clone()))
            .or_default()
            .entry(event.rule.clone())
            .or_default()
            .entry(event.mac.clone())
            .or_default()
            .push(tuple);
    }
    let records = grouped
        .into_iter()
        .map(|((minute, nsg), rules)| Record {
            time: iso_minute(minute),
            system_id: system_id(&nsg),
            category: "NetworkSecurityGroupFlowEvent",
            resource_id: format!(
                "/SUBSCRIPTIONS/00000000-0000-0000-0000-000000000000/RESOURCEGROUPS/NSGD/PROVIDERS/MICROSOFT.NETWORK/NETWORKSECURITYGROUPS/{}",
                nsg.to_ascii_uppercase()
            ),
            operation_name: "NetworkSecurityGroupFlowEvents",
            properties: Properties {
                version: 2,
                flows: rules
                    .into_iter()
                    .map(|(rule, macs)| RuleFlows {
                        rule,
                        flows: macs
                            .into_iter()
                            .map(|(mac, flow_tuples)| MacFlows { mac, flow_tuples })
                            .collect(),
                    })
                    .collect(),
            },
        })
        .collect();
    (records, skipped)
}

fn minute_of(time_ns: u64) -> u64 {
    time_ns / 60_000_000_000
}

/// A flow log written as it goes, for a long-running bridge: events are
/// held only until their minute is over, then written as records and
/// dropped, so memory stays bounded by one minute of events. The file is
/// valid JSON (`{"records":[...]}`) after every write.
pub struct FlowLogWriter {
    file: std::fs::File,
    pending: Vec<FlowEvent>,
    records_written: u64,
    /// Events the v2 schema cannot express.
    pub skipped: u64,
}

/// What closes the document; each write goes just before it.
const DOCUMENT_END: &[u8] = b"\n]}\n";

impl FlowLogWriter {
    pub fn create(path: &std::path::Path) -> std::io::Result<FlowLogWriter> {
        use std::io::Write;
        let mut file = std::fs::File::create(path)?;
        file.write_all(b"{\"records\":[")?;
        file.write_all(DOCUMENT_END)?;
        Ok(FlowLogWriter {
            file,
            pending: Vec::new(),
            records_written: 0,
            skipped: 0,
        })
    }

    pub fn add(&mut self, events: impl IntoIterator<Item = FlowEvent>) {
        self.pending.extend(events);
    }

    /// Writes the records of every minute that ended before `now_ns`
    /// (wall-clock nanoseconds).
    pub fn write_completed(&mut self, now_ns: u64) -> std::io::Result<()> {
        let current = minute_of(now_ns);
        let (done, waiting): (Vec<FlowEvent>, Vec<FlowEvent>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|event| minute_of(event.time_ns) < current);
        self.pending = waiting;
        self.write(done)
    }

    /// Writes every event held.
    pub fn finish(&mut self) -> std::io::Result<()> {
        let all = std::mem::take(&mut self.pending);
        self.write(all)
    }

    fn write(&mut self, events: Vec<FlowEvent>) -> std::io::Result<()> {
        use std::io::{Seek, SeekFrom, Write};
        if events.is_empty() {
            return Ok(());
        }
        let (records, skipped) = records_of(events);
        self.skipped += skipped as u64;
        if records.is_empty() {
            return Ok(());
        }
        let mut text = Vec::new();
        for record in &records {
            text.extend_from_slice(if self.records_written == 0 {
                b"\n"
            } else {
                b",\n"
            });
            serde_json::to_writer(&mut text, record)?;
            self.records_written += 1;
        }
        text.extend_from_slice(DOCUMENT_END);
        self.file
            .seek(SeekFrom::End(-(DOCUMENT_END.len() as i64)))?;
        self.file.write_all(&text)?;
        self.file.flush()
    }
}

/// A stable pseudo-MAC for a NIC name (the policy carries no MACs).
pub fn nic_mac(nic: &str) -> String {
    let hash = nic.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01B3)
    });
    // Locally administered unicast: second-lowest bit of the first octet set.
    format!("02{:010X}", hash & 0xff_ffff_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writer_keeps_a_valid_document_and_holds_only_unfinished_minutes() {
        let path = std::env::temp_dir().join(format!("nsgd-flowlog-{}.json", std::process::id()));
        let mut writer = FlowLogWriter::create(&path).unwrap();
        let read = || -> serde_json::Value {
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
        };
        assert_eq!(read()["records"].as_array().unwrap().len(), 0);
        writer.add([event(30, FlowState::Begin), event(90, FlowState::Begin)]);
        writer.write_completed(61 * 1_000_000_000).unwrap();
        assert_eq!(read()["records"].as_array().unwrap().len(), 1);
        assert_eq!(writer.pending.len(), 1, "the second minute is not over");
        writer.add([event(100, FlowState::End)]);
        writer.finish().unwrap();
        let document = read();
        let records = document["records"].as_array().unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[1]["time"], "1970-01-01T00:01:00.0000000Z");
        assert!(writer.pending.is_empty());
        std::fs::remove_file(&path).unwrap();
    }

    fn event(time_s: u64, state: FlowState) -> FlowEvent {
        FlowEvent {
            time_ns: time_s * 1_000_000_000,
            nsg: "web-nsg".to_string(),
            rule: "DefaultRule_DenyAllInBound".to_string(),
            mac: "000D3AF87856".to_string(),
            source: "192.0.2.190".parse().unwrap(),
            destination: "10.5.16.4".parse().unwrap(),
            source_port: 28746,
            destination_port: 443,
            protocol: 17,
            inbound: true,
            allowed: false,
            state,
            packets_forward: 3,
            bytes_forward: 300,
            packets_reverse: 0,
            bytes_reverse: 0,
        }
    }

    #[test]
    fn tuples_follow_the_v2_layout() {
        assert_eq!(
            event(1542110402, FlowState::Begin).tuple().unwrap(),
            "1542110402,192.0.2.190,10.5.16.4,28746,443,U,I,D,B,,,,"
        );
        assert_eq!(
            event(1542110462, FlowState::End).tuple().unwrap(),
            "1542110462,192.0.2.190,10.5.16.4,28746,443,U,I,D,E,3,300,0,0"
        );
    }

    #[test]
    fn records_group_by_nsg_and_minute() {
        let (text, skipped) = render(vec![
            event(1542110402, FlowState::Begin),
            event(1542110410, FlowState::End),
            event(1542110465, FlowState::Begin),
        ]);
        assert_eq!(skipped, 0);
        let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
        let records = doc["records"].as_array().unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[0]["time"], "2018-11-13T12:00:00.0000000Z");
        assert_eq!(records[0]["category"], "NetworkSecurityGroupFlowEvent");
        assert_eq!(records[0]["properties"]["Version"], 2);
        let tuples = &records[0]["properties"]["flows"][0]["flows"][0]["flowTuples"];
        assert_eq!(tuples.as_array().unwrap().len(), 2);
        assert_eq!(records[1]["time"], "2018-11-13T12:01:00.0000000Z");
    }

    #[test]
    fn other_protocols_are_skipped_and_counted() {
        let mut icmp = event(1, FlowState::Begin);
        icmp.protocol = 1;
        assert_eq!(render(vec![icmp]).1, 1);
    }
}
