//! Feeds arbitrary bytes to the IANA CSV loader (`--iana.registry-file`).
//!
//! It must never panic. When it accepts the input, the registry it built must
//! be well formed: per transport, runs are non-empty, sorted and disjoint,
//! neighbours that touch differ in status (else they should have been
//! merged), and lookups agree with the runs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use unassigned_port_exporter::policy::registry::{Status, Transport, csv_loader};

/// Ports probed on every accepted registry, whatever its runs.
const PROBES: [u16; 9] = [0, 1, 272, 276, 1023, 1024, 49151, 49152, 65535];

fuzz_target!(|data: &[u8]| {
    let registry = match csv_loader::parse(data, "fuzz".to_string()) {
        Ok(registry) => registry,
        Err(err) => {
            // The message is shown to the operator: rendering it must work.
            let shown = err.to_string();
            assert!(
                shown.starts_with("fuzz"),
                "error without its source: {shown:?}"
            );
            return;
        }
    };
    assert_eq!(registry.source, "fuzz");
    assert!(
        registry.updated.is_empty() || registry.updated.len() == 10,
        "updated is not YYYY-MM-DD: {:?}",
        registry.updated
    );
    for transport in Transport::ALL {
        let runs = registry.runs(transport);
        for run in runs {
            assert!(run.first <= run.last, "{transport}: empty run {run:?}");
            assert_ne!(run.status, Status::Unregistered, "{transport}: {run:?}");
        }
        for pair in runs.windows(2) {
            let (a, b) = (&pair[0], &pair[1]);
            assert!(
                a.last < b.first,
                "{transport}: runs overlap or are unsorted: {a:?} {b:?}"
            );
            if a.last.checked_add(1) == Some(b.first) {
                assert_ne!(
                    a.status, b.status,
                    "{transport}: touching runs were not merged: {a:?} {b:?}"
                );
            }
        }
        // Lookups at the edges of the first runs and just outside them.
        for run in runs.iter().take(32) {
            assert_eq!(registry.status(transport, run.first), run.status);
            assert_eq!(registry.status(transport, run.last), run.status);
            if let Some(before) = run.first.checked_sub(1) {
                registry.status(transport, before);
            }
            if let Some(after) = run.last.checked_add(1) {
                registry.status(transport, after);
            }
        }
        for port in PROBES {
            let status = registry.status(transport, port);
            let covering = runs.iter().find(|run| run.first <= port && port <= run.last);
            assert_eq!(
                status,
                covering.map_or(Status::Unregistered, |run| run.status),
                "{transport}/{port}"
            );
        }
    }
});
