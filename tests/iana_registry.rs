//! The IANA registry: the committed generated table matches the snapshot
//! committed in data/iana/, and the CSV parser reads the real file's quirks
//! right. Everything here reads the checkout only, so nothing skips.

use std::path::PathBuf;
use unassigned_port_exporter::policy::registry::{
    Registry, Status, Transport, csv_loader, generate,
};
use unassigned_port_exporter::policy::watch::{Scope, WatchSet};

fn committed_csv() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/iana/service-names-port-numbers.csv")
}

fn committed_registry() -> Registry {
    csv_loader::load_file(&committed_csv()).unwrap()
}

#[test]
fn committed_table_is_current() {
    let committed = include_str!("../src/policy/registry/iana_table.rs");
    assert!(
        generate::render(&committed_registry()) == committed,
        "src/policy/registry/iana_table.rs is stale: run `{}`",
        generate::REGENERATE_COMMAND
    );
}

#[test]
fn real_csv_parses_with_its_quirks() {
    let registry = committed_registry();
    assert_eq!(registry.source, committed_csv().display().to_string());
    assert_eq!(registry.status(Transport::Tcp, 276), Status::Unassigned);
    assert_eq!(registry.status(Transport::Tcp, 22), Status::Assigned);
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
    assert_eq!(registry.status(Transport::Tcp, 80), Status::Assigned);
    assert_eq!(registry.status(Transport::Tcp, 63), Status::Assigned);
    assert_eq!(registry.status(Transport::Tcp, 66), Status::Assigned);
    assert_eq!(
        registry.status(Transport::Tcp, 15),
        Status::Unassigned,
        "Unassigned [was netstat]"
    );
    assert_eq!(registry.status(Transport::Tcp, 716), Status::Unregistered);
    // 1113 has tcp, udp and dccp rows: the dccp row is skipped, so sctp has
    // no row and stays unregistered.
    assert_eq!(registry.status(Transport::Udp, 1113), Status::Assigned);
    assert_eq!(registry.status(Transport::Sctp, 1113), Status::Unregistered);
    assert_eq!(registry.updated, "2026-02-25");

    // Each description variant, as the loader's module doc reads it.
    for (port, transport, status, row) in [
        (
            114,
            Transport::Tcp,
            Status::Unassigned,
            "unassigned (deprecated 2004)",
        ),
        (
            114,
            Transport::Sctp,
            Status::Unassigned,
            "unassigned, every transport",
        ),
        (
            1895,
            Transport::Udp,
            Status::Unassigned,
            "unassigned (Microsoft using)",
        ),
        (
            2825,
            Transport::Tcp,
            Status::Unassigned,
            "(unassigned) Possibly assigned",
        ),
        (
            2925,
            Transport::Udp,
            Status::Unassigned,
            "Unassigned (FRP-Released)",
        ),
        (1109, Transport::Tcp, Status::Reserved, "Reserved - IANA"),
        (
            5349,
            Transport::Udp,
            Status::Assigned,
            "stun-behaviors: Reserved for ...",
        ),
        (
            2999,
            Transport::Tcp,
            Status::Assigned,
            "RemoteWare Unassigned",
        ),
        (585, Transport::Tcp, Status::Assigned, "De-registered"),
    ] {
        assert_eq!(
            registry.status(transport, port),
            status,
            "{port}/{transport}: {row}"
        );
    }

    let watch = WatchSet::new(registry, Scope::WellKnown, &[], vec![]);
    assert_eq!(
        watch.count(Transport::Tcp),
        284,
        "282 unassigned + 716, 1008"
    );
    assert_eq!(watch.count(Transport::Udp), 282);
    assert_eq!(watch.count(Transport::Sctp), 978);
    assert!(watch.is_watched(Transport::Tcp, 114));
}

#[test]
fn embedded_table_equals_the_parsed_csv() {
    let parsed = committed_registry();
    let embedded = Registry::embedded();
    assert_eq!(parsed.updated, embedded.updated);
    for transport in Transport::ALL {
        assert_eq!(
            parsed.runs(transport),
            embedded.runs(transport),
            "{transport}"
        );
    }
}
