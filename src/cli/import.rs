//! `nsgd import`: Azure exports to an nsgd policy file, validated on the way.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::policy::import::{import_files, to_json_pretty, to_yaml};
use crate::policy::{parse_str, Format};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Azure JSON exports: NSGs (ARM or `az network nsg show/list`), VNets, NICs,
    /// ARM templates, Service Tags files.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// Write the policy here (`.json` for JSON, otherwise YAML); default stdout (YAML).
    #[arg(short, long)]
    output: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let imported = import_files(&args.inputs)?;
    for warning in &imported.warnings {
        eprintln!("warning: {warning}");
    }
    let format = match &args.output {
        Some(path)
            if path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("json")) =>
        {
            Format::Json
        }
        _ => Format::Yaml,
    };
    let text = match format {
        Format::Json => to_json_pretty(&imported.document),
        Format::Yaml => to_yaml(&imported.document),
    };
    let shown_name = args
        .output
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "<stdout>".to_string());
    // The import must produce a policy nsgd accepts; say so now if it does not.
    let validation = parse_str(&text, format, &shown_name);
    match &args.output {
        Some(path) => std::fs::write(path, &text)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => print!("{text}"),
    }
    if let Err(errors) = validation {
        for error in errors.iter() {
            eprintln!("{error}");
        }
        eprintln!(
            "nsgd: the imported policy has {} error(s) to fix by hand",
            errors.len()
        );
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}
