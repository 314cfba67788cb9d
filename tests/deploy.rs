//! The deploy/ examples: every container passes Pod Security "restricted"
//! (in the kube-dns example, ours), every exechealthz container is probed
//! itself, one example is a native sidecar and one probes the sidecar with
//! `exechealthz check`.

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
    // Every container of the two sidecar pods and the check pod (the
    // apps too), and kube-dns's sidecar.
    assert!(restricted >= 7, "{stdout}");
    for web in [
        "sidecar-pod.json web",
        "native-sidecar-pod.json web",
        "check-pod.json web",
    ] {
        assert!(stdout.contains(&format!("{web}: restricted")), "{stdout}");
    }
    assert!(stdout.lines().any(|l| l.ends_with(": native")), "{stdout}");
    assert!(
        stdout.contains("check-pod.json healthz: exec probe through check"),
        "{stdout}"
    );
}
