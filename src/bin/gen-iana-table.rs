//! Regenerates `src/registry/iana_table.rs` from IANA's CSV.
//!
//! Usage: `cargo run --bin gen-iana-table -- PATH/TO/service-names-port-numbers.csv`

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use unassigned_port_exporter::registry::{csv_loader, generate};

fn main() -> ExitCode {
    let Some(csv_path) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: gen-iana-table PATH/TO/service-names-port-numbers.csv");
        return ExitCode::from(2);
    };
    let registry = match csv_loader::load_file(&csv_path) {
        Ok(registry) => registry,
        Err(err) => {
            eprintln!("gen-iana-table: {err}");
            return ExitCode::from(2);
        }
    };
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/registry/iana_table.rs");
    if let Err(err) = std::fs::write(&target, generate::render(&registry)) {
        eprintln!("gen-iana-table: cannot write {}: {err}", target.display());
        return ExitCode::from(1);
    }
    println!("wrote {}", target.display());
    ExitCode::SUCCESS
}
