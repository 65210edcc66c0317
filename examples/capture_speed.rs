//! Measures the capture reader and the traffic generator (use a release build):
//!
//! ```sh
//! cargo run --release --example capture_speed -- read FILE
//! cargo run --release --example capture_speed -- generate POLICY PACKETS OUT
//! ```

use std::time::Instant;

use nsgd::io::{
    generate, CaptureReader, GenerateOptions, PcapWriter, RecordBatch, TimestampPrecision,
    LINKTYPE_ETHERNET,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["read", file] => {
            for pass in ["records", "batches"] {
                // Best of three, so the page cache is warm.
                let mut best = f64::MAX;
                let (mut records, mut bytes) = (0u64, 0u64);
                for _ in 0..3 {
                    let started = Instant::now();
                    let mut reader = CaptureReader::open(file)?;
                    (records, bytes) = (0, 0);
                    if pass == "records" {
                        while let Some(record) = reader.next_record()? {
                            records += 1;
                            bytes += record.caplen as u64;
                        }
                    } else {
                        let mut batch = RecordBatch::with_capacity(256, 256 * 1024);
                        while reader.read_batch(&mut batch)? > 0 {
                            for record in batch.iter() {
                                records += 1;
                                bytes += record.caplen as u64;
                            }
                        }
                    }
                    best = best.min(started.elapsed().as_secs_f64());
                }
                let file_bytes = std::fs::metadata(file)?.len() as f64;
                println!(
                    "{pass}: {records} records, {bytes} bytes in {:.3} s: {:.2} M records/s, {:.0} MB/s of file",
                    best,
                    records as f64 / best / 1e6,
                    file_bytes / best / 1e6
                );
            }
        }
        ["generate", policy, packets, out] => {
            let policy = nsgd::policy::load(std::path::Path::new(policy))?;
            let options = GenerateOptions {
                flows: u64::MAX,
                packets: Some(packets.parse()?),
                seed: 42,
                syn_flood_rate: 0.01,
                ..GenerateOptions::default()
            };
            let started = Instant::now();
            let file = std::fs::File::create(out)?;
            let mut writer =
                PcapWriter::new(file, LINKTYPE_ETHERNET, TimestampPrecision::Microseconds)?;
            let stats = generate(&policy, &options, &mut writer)?;
            writer.finish()?;
            let elapsed = started.elapsed().as_secs_f64();
            println!(
                "generated {} packets ({} flows, {} MB) in {:.3} s: {:.2} M packets/s",
                stats.packets,
                stats.flows,
                stats.bytes / 1_000_000,
                elapsed,
                stats.packets as f64 / elapsed / 1e6
            );
        }
        _ => eprintln!("usage: capture_speed read FILE | generate POLICY PACKETS OUT"),
    }
    Ok(())
}
