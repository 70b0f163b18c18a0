//! The IANA registry: the committed generated table matches the CSV in
//! ../shared, and the CSV parser reads the real file's quirks right.

use std::path::PathBuf;
use unassigned_port_exporter::registry::{Registry, Status, Transport, csv_loader, generate};
use unassigned_port_exporter::watch::{Scope, WatchSet};

fn shared_csv() -> Option<PathBuf> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/iana/service-names-port-numbers.csv");
    if path.exists() {
        Some(path)
    } else if std::env::var_os("CI").is_some() {
        panic!("CI must have ../shared/iana beside the checkout");
    } else {
        eprintln!("../shared/iana is not beside this checkout: skipped");
        None
    }
}

#[test]
fn committed_table_is_current() {
    let Some(path) = shared_csv() else { return };
    let registry = csv_loader::load_file(&path).unwrap();
    let committed = include_str!("../src/registry/iana_table.rs");
    assert!(
        generate::render(&registry) == committed,
        "src/registry/iana_table.rs is stale: run `cargo run --bin gen-iana-table -- {}`",
        path.display()
    );
}

#[test]
fn real_csv_parses_with_its_quirks() {
    let Some(path) = shared_csv() else { return };
    let registry = csv_loader::load_file(&path).unwrap();
    assert_eq!(registry.status(Transport::Tcp, 276), Status::Unassigned);
    assert_eq!(registry.status(Transport::Tcp, 22), Status::Assigned);
    assert_eq!(registry.service(Transport::Tcp, 22), Some("ssh"));
    for port in 272..=279 {
        for transport in Transport::ALL {
            assert_eq!(
                registry.status(transport, port),
                Status::Unassigned,
                "{port}/{transport}"
            );
        }
    }
    // Rows 63, 66 and 80 carry quoted fields with commas and newlines.
    assert_eq!(registry.service(Transport::Tcp, 80), Some("http"));
    assert_eq!(registry.status(Transport::Tcp, 63), Status::Assigned);
    assert_eq!(registry.status(Transport::Tcp, 66), Status::Assigned);
    assert_eq!(
        registry.status(Transport::Tcp, 15),
        Status::Unassigned,
        "Unassigned [was netstat]"
    );
    assert_eq!(registry.status(Transport::Tcp, 716), Status::Unregistered);
    assert_eq!(registry.updated, "2026-02-25");

    let watch = WatchSet::new(registry, Scope::WellKnown, &[], vec![]);
    assert_eq!(watch.count(Transport::Tcp), 283);
    assert_eq!(watch.count(Transport::Udp), 281);
}

#[test]
fn embedded_table_equals_the_parsed_csv() {
    let Some(path) = shared_csv() else { return };
    let parsed = csv_loader::load_file(&path).unwrap();
    let embedded = Registry::embedded();
    for transport in Transport::ALL {
        assert_eq!(
            parsed.runs(transport),
            embedded.runs(transport),
            "{transport}"
        );
    }
}
