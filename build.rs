//! Records the git revision and rustc version for `exporter_build_info`.

use std::process::Command;

fn output_of(program: &str, args: &[&str]) -> Option<String> {
    let output = Command::new(program).args(args).output().ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
        .filter(|text| !text.is_empty())
}

fn main() {
    let revision =
        output_of("git", &["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let rustc_version = output_of(&rustc, &["--version"])
        .and_then(|v| v.split_whitespace().nth(1).map(str::to_string))
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=BUILD_REVISION={revision}");
    println!("cargo:rustc-env=BUILD_RUSTC_VERSION={rustc_version}");
    // Where git keeps them: `.git/` in a checkout, elsewhere in a worktree
    // (whose `.git` is a file). A path that does not exist would make cargo
    // rerun this script, and rebuild the crate, on every build.
    for name in ["HEAD", "refs", "packed-refs"] {
        let path = output_of("git", &["rev-parse", "--git-path", name])
            .unwrap_or_else(|| format!(".git/{name}"));
        if std::path::Path::new(&path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}
