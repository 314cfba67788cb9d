//! How a build puts its binary in place (`scripts/install.sh`, used by
//! `make build` and `make server`).

mod common;

use common::*;
use std::process::Command;

#[test]
fn a_build_replaces_a_binary_that_is_running() {
    let dir = TempDir::new("install");
    let dest = dir.file("exechealthz");
    std::fs::copy(BIN, &dest).unwrap();
    let mut command = Command::new(&dest);
    command.args(["--cmd=true", "--port=0"]);
    let server = Server::start_command(command);
    server.wait_status("/healthz", 200);

    // What `make build` did: a copy over the running binary fails.
    let copy = Command::new("cp").args([BIN, &dest]).output().unwrap();
    assert!(!copy.status.success(), "cp over a running binary worked");
    assert!(String::from_utf8_lossy(&copy.stderr).contains("busy"));

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/install.sh");
    let install = Command::new(script).args([BIN, &dest]).output().unwrap();
    assert!(
        install.status.success(),
        "{}",
        String::from_utf8_lossy(&install.stderr)
    );
    assert_eq!(std::fs::read(&dest).unwrap(), std::fs::read(BIN).unwrap());
    let run = Command::new(&dest).arg("--version").output().unwrap();
    assert!(run.status.success());
    // The old one serves on, and nothing is left beside the new one.
    assert_eq!(server.get("/healthz").status, 200);
    let names: Vec<_> = std::fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["exechealthz"]);
}

/// `make run` (and so `make server`, which installs the same `BIN`) with Cargo elsewhere (`CARGO_TARGET_DIR`)
/// and another cargo (`CARGO`): a stand-in cargo that "builds" a script
/// into its target folder shows which cargo make runs and where it looks.
#[test]
fn make_honours_cargo_target_dir_and_cargo() {
    let dir = TempDir::new("make-target-dir");
    let target = dir.file("elsewhere");
    let cargo = dir.file("cargo");
    std::fs::write(
        &cargo,
        format!(
            "#!/bin/sh\necho \"cargo $*\" >> {log}\nmkdir -p \"$CARGO_TARGET_DIR/release\"\n\
             printf '#!/bin/sh\\necho built elsewhere \"$@\"\\n' > \"$CARGO_TARGET_DIR/release/exechealthz\"\n\
             chmod +x \"$CARGO_TARGET_DIR/release/exechealthz\"\n",
            log = dir.file("calls")
        ),
    )
    .unwrap();
    Command::new("chmod").args(["+x", &cargo]).status().unwrap();
    let make = |goal: &str, extra: &[&str]| {
        Command::new("make")
            .args(["-s", "-C", env!("CARGO_MANIFEST_DIR"), goal])
            .arg(format!("CARGO={cargo}"))
            .args(extra)
            .env("CARGO_TARGET_DIR", &target)
            .current_dir(&dir.0)
            .output()
            .unwrap()
    };
    let run = make("run", &["ARGS=--version"]);
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(stdout, "built elsewhere --version\n");
    let calls = std::fs::read_to_string(dir.file("calls")).unwrap();
    assert!(
        calls.starts_with("cargo build --release --locked"),
        "{calls}"
    );
}
