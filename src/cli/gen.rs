//! `nsgd gen`: write a pcap of realistic stateful traffic for an estate.

use std::io::BufWriter;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::io::generate::{generate, GenerateOptions};
use crate::io::{PcapWriter, TimestampPrecision, LINKTYPE_ETHERNET};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Policy file whose NICs, subnets and rules shape the traffic.
    policy: PathBuf,
    /// Output pcap.
    #[arg(short, long)]
    output: PathBuf,
    /// Conversations to start.
    #[arg(long, default_value_t = 1000)]
    flows: u64,
    /// Stop after this many packets.
    #[arg(long)]
    packets: Option<u64>,
    /// Seed: the same seed writes the same bytes.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Fraction (0..1) of packets that are SYNs from spoofed sources to one service.
    #[arg(long = "syn-flood", default_value_t = 0.0)]
    syn_flood: f64,
    /// Include IPv6 flows where NICs have IPv6 addresses.
    #[arg(long)]
    ipv6: bool,
    /// Fraction (0..1) of flows to random ports (mostly denied by a sane policy).
    #[arg(long = "random-fraction", default_value_t = 0.2)]
    random_fraction: f64,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let policy = match crate::policy::load(&args.policy) {
        Ok(policy) => policy,
        Err(errors) => {
            for error in errors.iter() {
                eprintln!("{error}");
            }
            anyhow::bail!("{}: {} error(s)", args.policy.display(), errors.len());
        }
    };
    let options = GenerateOptions {
        flows: args.flows,
        packets: args.packets,
        seed: args.seed,
        syn_flood_rate: args.syn_flood,
        ipv6: args.ipv6,
        random_fraction: args.random_fraction,
        ..GenerateOptions::default()
    };
    let file = std::fs::File::create(&args.output)
        .with_context(|| format!("cannot create {}", args.output.display()))?;
    let mut writer = PcapWriter::new(
        BufWriter::with_capacity(1 << 20, file),
        LINKTYPE_ETHERNET,
        TimestampPrecision::Nanoseconds,
    )?;
    let stats = generate(&policy, &options, &mut writer)?;
    writer.finish()?;
    println!(
        "{}: {} packets, {} bytes, {} flows ({} TCP, {} UDP, {} ICMP, {} to random ports, {} IPv6), {} flood SYNs",
        args.output.display(),
        stats.packets,
        stats.bytes,
        stats.flows,
        stats.tcp_flows,
        stats.udp_flows,
        stats.icmp_flows,
        stats.random_flows,
        stats.ipv6_flows,
        stats.flood_syns
    );
    Ok(ExitCode::SUCCESS)
}
