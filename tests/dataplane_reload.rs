//! Policy reload in the dataplane: established flows keep their decision,
//! new flows meet the new policy, and `reevaluate_on_reload` re-checks live
//! flows (Azure's `flushConnection`). Also how a flow counts a packet that
//! stands for several wire frames (a live port's GRO aggregate).

use std::sync::Arc;

use etherparse::PacketBuilder;
use nsgd::compile::Program;
use nsgd::dataplane::{shard_of, Dataplane, DataplaneConfig};
use nsgd::packet::{parse, LinkType};
use nsgd::policy::{parse_str, Format};

fn policy(port: &str) -> Arc<Program> {
    let text = format!(
        r#"
vnets:
  - name: app
    addressSpace: [10.0.0.0/16]
    subnets:
      - name: web
        addressPrefix: 10.0.1.0/24
        networkSecurityGroup: web-nsg
networkSecurityGroups:
  - name: web-nsg
    securityRules:
      - name: allow-in
        priority: 100
        direction: Inbound
        access: Allow
        protocol: Tcp
        sourceAddressPrefix: '*'
        sourcePortRange: '*'
        destinationAddressPrefix: '*'
        destinationPortRange: '{port}'
"#
    );
    Arc::new(Program::compile(&parse_str(&text, Format::Yaml, "reload.yaml").unwrap()).unwrap())
}

fn tcp(sport: u16, dport: u16, syn: bool, inbound: bool) -> Vec<u8> {
    let (src, dst) = if inbound {
        ([203, 0, 113, 9], [10, 0, 1, 4])
    } else {
        ([10, 0, 1, 4], [203, 0, 113, 9])
    };
    let mut builder = PacketBuilder::ethernet2([2; 6], [4; 6])
        .ipv4(src, dst, 64)
        .tcp(sport, dport, 1, 1000);
    builder = if syn { builder.syn() } else { builder.ack(1) };
    let mut frame = Vec::new();
    builder.write(&mut frame, &[]).unwrap();
    frame
}

fn decide(dataplane: &mut Dataplane, frame: &[u8], now: u64) -> (bool, &'static str) {
    let parsed = parse(LinkType::Ethernet, frame);
    let verdict = dataplane.decide(shard_of(&parsed), &parsed, frame.len() as u32, now);
    (verdict.allowed, verdict.reason.as_str())
}

fn run(reevaluate: bool) -> Vec<(bool, &'static str)> {
    let config = DataplaneConfig {
        reevaluate_on_reload: reevaluate,
        ..DataplaneConfig::default()
    };
    let mut dataplane = Dataplane::new(policy("80"), 1, config, |_| true);
    let mut seen = vec![decide(&mut dataplane, &tcp(40000, 80, true, true), 1_000)];
    // The new policy no longer allows port 80, only 8080.
    dataplane.reload(policy("8080"), 2);
    seen.push(decide(&mut dataplane, &tcp(40000, 80, false, true), 2_000));
    seen.push(decide(&mut dataplane, &tcp(80, 40000, false, false), 3_000));
    seen.push(decide(&mut dataplane, &tcp(40001, 80, true, true), 4_000));
    seen.push(decide(&mut dataplane, &tcp(40002, 8080, true, true), 5_000));
    seen
}

#[test]
fn a_reload_keeps_established_flows_and_judges_new_ones_by_the_new_policy() {
    assert_eq!(
        run(false),
        vec![
            (true, "new-flow"),
            (true, "established"),
            (true, "established"),
            (false, "rule"),
            (true, "new-flow"),
        ]
    );
}

#[test]
fn reevaluate_on_reload_rechecks_live_flows() {
    assert_eq!(
        run(true),
        vec![
            (true, "new-flow"),
            (false, "rule"),
            (false, "rule"),
            (false, "rule"),
            (true, "new-flow"),
        ]
    );
}

#[test]
fn an_aggregate_is_judged_once_and_counted_as_the_frames_it_merged() {
    let config = DataplaneConfig {
        flow_log: true,
        ..DataplaneConfig::default()
    };
    let mut dataplane = Dataplane::new(policy("80"), 1, config, |_| true);
    assert_eq!(
        decide(&mut dataplane, &tcp(40000, 80, true, true), 1_000),
        (true, "new-flow")
    );
    // 40 segments of 1514 bytes merged into one packet, then one reply.
    let aggregate = tcp(40000, 80, false, true);
    let parsed = parse(LinkType::Ethernet, &aggregate);
    let verdict = dataplane.decide_frames(shard_of(&parsed), &parsed, 40, 40 * 1514, 2_000);
    assert_eq!(
        (verdict.allowed, verdict.reason.as_str()),
        (true, "established")
    );
    decide(&mut dataplane, &tcp(80, 40000, false, false), 3_000);

    let established = nsgd::dataplane::Reason::Established.index();
    assert_eq!(dataplane.counters.packets[established], 41);
    let reply_len = tcp(80, 40000, false, false).len() as u64;
    assert_eq!(dataplane.counters.bytes[established], 40 * 1514 + reply_len);

    dataplane.finish();
    // Still live at the end: a final `C` tuple with everything since `B`.
    let end = dataplane
        .flow_events
        .iter()
        .find(|e| e.state == nsgd::telemetry::flow_log::FlowState::Continuing)
        .expect("a final tuple for the live flow");
    let syn_len = tcp(40000, 80, true, true).len() as u64;
    assert_eq!(
        (end.packets_forward, end.bytes_forward),
        (41, syn_len + 40 * 1514)
    );
    assert_eq!((end.packets_reverse, end.bytes_reverse), (1, reply_len));
}
