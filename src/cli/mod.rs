//! The `nsgd` command line: parse arguments, call the library, print. No
//! policy or packet logic lives here.

mod bench;
mod check;
mod classbench;
mod effective;
mod gen;
mod import;
mod replay;
mod run;
mod verify;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::compile::Program;

#[derive(Debug, Parser)]
#[command(
    name = "nsgd",
    version,
    about = "A stateful, Azure-NSG-style layer 3/4 packet filter: compile, test and enforce NSG policy",
    long_about = None
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate a policy, summarise it and lint its rules.
    Check(check::Args),
    /// Show a NIC's effective security rules, tags and ASGs expanded.
    Effective(effective::Args),
    /// Decide flows: the verdict and the NSG evaluations that led to it.
    Verify(verify::Args),
    /// Decide every packet of pcap/pcapng captures through the stateful dataplane.
    Replay(replay::Args),
    /// Write a pcap of realistic stateful traffic for an estate.
    Gen(gen::Args),
    /// Bridge two interfaces inline, forwarding only what the policy allows.
    Run(run::Args),
    /// Measure end-to-end replay throughput on generated captures.
    Bench(bench::Args),
    /// Run a ClassBench rule set and trace through the classifier.
    Classbench(classbench::Args),
    /// Convert Azure exports (NSGs, VNets, NICs, Service Tags JSON) into a policy file.
    Import(import::Args),
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check(args) => check::run(args),
        Command::Effective(args) => effective::run(args),
        Command::Verify(args) => verify::run(args),
        Command::Replay(args) => replay::run(args),
        Command::Run(args) => run::run(args),
        Command::Gen(args) => gen::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Classbench(args) => classbench::run(args),
        Command::Import(args) => import::run(args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("nsgd: {error:#}");
            ExitCode::from(1)
        }
    }
}

/// Policy errors already printed; the command fails without repeating them.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Reported(String);

/// Dataplane switches shared by `replay` and `run`.
#[derive(Debug, Clone, clap::Args)]
struct DataplaneArgs {
    /// Connection-table capacity.
    #[arg(long = "max-flows", default_value_t = 1 << 20)]
    max_flows: usize,
    /// Drop TCP packets without SYN that open no known flow (default: judge
    /// them as new flows, as Azure picks flows up mid-stream).
    #[arg(long = "strict-tcp")]
    strict_tcp: bool,
    /// Drop non-IP frames (ARP, LLDP, …) instead of passing them; in `run`,
    /// IPv6 neighbour discovery too.
    #[arg(long = "drop-non-ip")]
    drop_non_ip: bool,
    /// Idle timeout of established TCP flows, seconds.
    #[arg(long = "tcp-timeout", default_value_t = 240)]
    tcp_timeout: u64,
    /// Idle timeout of UDP flows that saw a reply, seconds.
    #[arg(long = "udp-timeout", default_value_t = 240)]
    udp_timeout: u64,
    /// Lifetime of a cached denied flow, seconds.
    #[arg(long = "deny-timeout", default_value_t = 10)]
    deny_timeout: u64,
}

impl DataplaneArgs {
    fn apply(&self, config: &mut crate::dataplane::DataplaneConfig) {
        use crate::conntrack::config::SECOND;
        config.max_flows = self.max_flows;
        config.strict_tcp = self.strict_tcp;
        config.pass_non_ip = !self.drop_non_ip;
        config.conntrack.timeouts.tcp_established = self.tcp_timeout * SECOND;
        config.conntrack.timeouts.udp = self.udp_timeout * SECOND;
        config.conntrack.timeouts.denied = self.deny_timeout * SECOND;
    }
}

/// Why a policy could not be used: every problem of its file, or of its
/// compilation.
enum LoadFailure {
    Policy(crate::policy::PolicyErrors),
    Compile(crate::compile::program::CompileErrors),
}

fn try_load_program(path: &Path) -> Result<Program, LoadFailure> {
    let policy = crate::policy::load(path).map_err(LoadFailure::Policy)?;
    Program::compile(&policy).map_err(LoadFailure::Compile)
}

/// Loads and compiles a policy, printing every error it has.
fn load_program(path: &Path) -> anyhow::Result<Program> {
    try_load_program(path).map_err(|failure| match failure {
        LoadFailure::Policy(errors) => {
            for error in errors.iter() {
                eprintln!("{error}");
            }
            Reported(format!(
                "{}: {} error{}",
                path.display(),
                errors.len(),
                if errors.len() == 1 { "" } else { "s" }
            ))
            .into()
        }
        LoadFailure::Compile(errors) => {
            for error in &errors.0 {
                eprintln!("{}: {error}", path.display());
            }
            Reported(format!(
                "{}: {} compile error(s)",
                path.display(),
                errors.0.len()
            ))
            .into()
        }
    })
}

/// Opens a file, or standard input for `-`.
fn open_input(path: &PathBuf) -> anyhow::Result<Box<dyn std::io::BufRead>> {
    if path.as_os_str() == "-" {
        return Ok(Box::new(std::io::BufReader::new(std::io::stdin())));
    }
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    Ok(Box::new(std::io::BufReader::with_capacity(1 << 16, file)))
}
