//! Renders a [`Registry`] as the Rust source of `iana_table.rs`.
//!
//! The committed table is this function's output on IANA's CSV; the
//! `iana_table` test renders it again and fails if the two differ.

use super::{Registry, Status, Transport};
use std::fmt::Write;

/// Source text of the generated table module.
pub fn render(registry: &Registry) -> String {
    let mut out = String::new();
    out.push_str(
        "//! IANA port registry facts, generated from service-names-port-numbers.csv.\n\
         //! Do not edit: regenerate with\n\
         //! `cargo run --bin gen-iana-table -- ../shared/iana/service-names-port-numbers.csv`.\n\
         //! Each row is (first port, last port, status, service name).\n\n\
         use super::Status;\n\
         use super::Status::{Assigned as A, Reserved as R, Unassigned as U};\n\n",
    );
    writeln!(out, "pub const UPDATED: &str = {:?};", registry.updated).unwrap();
    for transport in Transport::ALL {
        let name = transport.as_str().to_uppercase();
        writeln!(out, "\npub static {name}: &[(u16, u16, Status, &str)] = &[").unwrap();
        for run in registry.runs(transport) {
            let status = match run.status {
                Status::Assigned => "A",
                Status::Reserved => "R",
                Status::Unassigned => "U",
                Status::Unregistered => unreachable!("unregistered ports have no row"),
            };
            writeln!(
                out,
                "    ({}, {}, {status}, {:?}),",
                run.first, run.last, run.service
            )
            .unwrap();
        }
        out.push_str("];\n");
    }
    out
}
