//! Build script: the commit the binary is built from, for
//! `exechealthz_build_info{revision}`: `EXECHEALTHZ_REVISION` when set (an
//! image build from a tarball), else `git rev-parse HEAD`, else `unknown`.

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=EXECHEALTHZ_REVISION");
    let revision = std::env::var("EXECHEALTHZ_REVISION")
        .ok()
        .filter(|r| !r.is_empty())
        .or_else(|| {
            let output = Command::new("git")
                .args(["rev-parse", "HEAD"])
                .output()
                .ok()?;
            let text = String::from_utf8(output.stdout).ok()?;
            (output.status.success() && !text.trim().is_empty()).then(|| text.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    // A label value: nothing that needs escaping.
    let revision: String = revision
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c))
        .collect();
    println!("cargo:rustc-env=EXECHEALTHZ_REVISION={revision}");
    // Built again when the commit moves (only paths that exist: a missing
    // one would make every build run this again).
    let mut watched = false;
    for path in [".git/HEAD", ".git/packed-refs"] {
        if Path::new(path).exists() {
            println!("cargo:rerun-if-changed={path}");
            watched = true;
        }
    }
    if let Ok(head) = std::fs::read_to_string(".git/HEAD")
        && let Some(reference) = head.trim().strip_prefix("ref: ")
    {
        let path = format!(".git/{reference}");
        if Path::new(&path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    if !watched {
        println!("cargo:rerun-if-changed=build.rs");
    }
}
