//! Regenerates `src/policy/registry/iana_table.rs` from IANA's CSV.
//!
//! Usage: `cargo run --release --bin gen-iana-table [-- PATH/TO/service-names-port-numbers.csv]`.
//! Without a path it reads the snapshot committed in `data/iana/`; to move to
//! a newer registry, replace that file (and its README's facts) first.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use unassigned_port_exporter::policy::registry::{csv_loader, generate};

/// The committed snapshot, relative to the checkout.
const COMMITTED_CSV: &str = "data/iana/service-names-port-numbers.csv";

fn main() -> ExitCode {
    let checkout = Path::new(env!("CARGO_MANIFEST_DIR"));
    let csv_path = std::env::args_os()
        .nth(1)
        .map_or_else(|| checkout.join(COMMITTED_CSV), PathBuf::from);
    let registry = match csv_loader::load_file(&csv_path) {
        Ok(registry) => registry,
        Err(err) => {
            eprintln!("gen-iana-table: {err}");
            return ExitCode::from(2);
        }
    };
    let target = checkout.join("src/policy/registry/iana_table.rs");
    if let Err(err) = std::fs::write(&target, generate::render(&registry)) {
        eprintln!("gen-iana-table: cannot write {}: {err}", target.display());
        return ExitCode::from(1);
    }
    println!("wrote {} from {}", target.display(), csv_path.display());
    ExitCode::SUCCESS
}
