//! Imports Azure JSON exports and prints the nsgd policy as YAML, warnings on
//! stderr: `cargo run --example azure_import -- nsgs.json vnet.json nics/*.json`.
//! (The `nsgd import` command wraps the same library calls.)

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let paths: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    match nsgd::policy::import::import_files(&paths) {
        Ok(imported) => {
            for warning in &imported.warnings {
                eprintln!("warning: {warning}");
            }
            print!("{}", nsgd::policy::import::to_yaml(&imported.document));
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
