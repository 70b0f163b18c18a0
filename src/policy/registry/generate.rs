//! Renders a [`Registry`] as the Rust source of `iana_table.rs`.
//!
//! The committed table is this function's output on the CSV in `data/iana/`;
//! the `committed_table_is_current` test renders it again and fails if the two
//! differ. One run per line, so the table's diff on an IANA update lists
//! exactly the ports whose status changed.

use super::{Registry, Status, Transport};
use std::fmt::Write;

/// The command that rewrites the table, as the table's header states it.
pub const REGENERATE_COMMAND: &str = "cargo run --release --bin gen-iana-table";

/// Source text of the generated table module.
pub fn render(registry: &Registry) -> String {
    let mut out = String::new();
    writeln!(
        out,
        "//! IANA port registry facts, generated from data/iana/service-names-port-numbers.csv.\n\
         //! Do not edit: regenerate with `{REGENERATE_COMMAND}`.\n\
         //! Each row is (first port, last port, status) for a run of ports.\n\n\
         use super::Status;\n\
         use super::Status::{{Assigned as A, Reserved as R, Unassigned as U}};\n"
    )
    .unwrap();
    writeln!(out, "pub const UPDATED: &str = {:?};", registry.updated).unwrap();
    for transport in Transport::ALL {
        let name = transport.as_str().to_uppercase();
        writeln!(out, "\npub static {name}: &[(u16, u16, Status)] = &[").unwrap();
        for run in registry.runs(transport) {
            let status = match run.status {
                Status::Assigned => "A",
                Status::Reserved => "R",
                Status::Unassigned => "U",
                Status::Unregistered => unreachable!("unregistered ports have no row"),
            };
            writeln!(out, "    ({}, {}, {status}),", run.first, run.last).unwrap();
        }
        out.push_str("];\n");
    }
    out
}
