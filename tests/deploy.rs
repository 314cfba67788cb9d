//! The deploy/ examples: every exechealthz container passes Pod Security
//! "restricted" and is probed itself; one example is a native sidecar.

use std::process::Command;

#[test]
fn sidecars_are_restricted_probed_and_one_is_native() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tools/restricted.py");
    let output = Command::new("python3")
        .arg(script)
        .output()
        .expect("python3");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    let restricted = stdout
        .lines()
        .filter(|l| l.ends_with(": restricted"))
        .count();
    assert!(restricted >= 3, "{stdout}");
    assert!(stdout.lines().any(|l| l.ends_with(": native")), "{stdout}");
}
