//! Feeds arbitrary text to the `--watch.ports` list parser and the
//! `--watch.allow` rule parser (both read from flags or the environment).
//!
//! Neither may panic. Accepted ranges never run backwards, a list has one
//! range per comma-separated item, and an allow rule (with its selectors)
//! prints as text that parses back to the same rule.
#![no_main]

use libfuzzer_sys::fuzz_target;
use unassigned_port_exporter::policy::allow::{AllowRule, Target};
use unassigned_port_exporter::policy::ports::parse_port_list;

fuzz_target!(|data: &[u8]| {
    // Flags and environment variables reach the parsers as UTF-8 strings.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };

    if let Ok(ranges) = parse_port_list(text) {
        assert_eq!(ranges.len(), text.split(',').count(), "{text:?}");
        for range in &ranges {
            assert!(range.first <= range.last, "{text:?} gave {range:?}");
        }
    }

    if let Ok(rule) = AllowRule::parse(text) {
        if let Target::Ports(ports) = &rule.target {
            assert!(ports.first <= ports.last, "{text:?} gave {rule:?}");
        }
        let shown = rule.to_string();
        assert_eq!(
            AllowRule::parse(&shown).as_ref(),
            Ok(&rule),
            "{text:?} printed as {shown:?}"
        );
    }
});
