//! For the library's own unit tests only (`#[cfg(test)]`): the one gate a
//! unit test that needs something from the machine goes through, the twin
//! of `tests/common/capability.rs` (which unit tests cannot reach).
//!
//! When the capability is missing, the test prints one line and returns
//! outside CI; with `CI` set (non-empty and not `0` or `false`) it panics,
//! naming what was missing, so a test whose subject did not run never
//! passes in CI.

/// True when `probed` is `Ok`; otherwise skips (one printed line, false)
/// or, in CI, panics naming `capability` and why it is missing.
pub fn require(capability: &str, probed: Result<(), String>) -> bool {
    let Err(why) = probed else {
        return true;
    };
    let test = std::thread::current()
        .name()
        .unwrap_or("this test")
        .to_string();
    let in_ci =
        std::env::var("CI").is_ok_and(|value| !matches!(value.as_str(), "" | "0" | "false"));
    if in_ci {
        panic!(
            "{test} needs {capability}, which is missing here: {why} (CI is set, so this fails instead of skipping)"
        );
    }
    // Straight to the process's stderr, past libtest's capture, so the
    // skip shows in the output of a passing run.
    let _ = std::io::Write::write_all(
        &mut std::io::stderr(),
        format!("skipped: {test} needs {capability}: {why}\n").as_bytes(),
    );
    false
}
