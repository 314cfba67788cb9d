//! Bad input on the real binary: one line on stderr naming the flag and
//! the problem, a pointer to --help, exit status 2, nothing served.

mod common;

use common::*;

fn assert_rejected(args: &[&str], needle: &str) {
    let output = run_to_end(args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
    assert_eq!(
        stderr.lines().count(),
        1,
        "{args:?}: one line, got {stderr:?}"
    );
    assert!(stderr.starts_with("exechealthz: "), "{args:?}: {stderr}");
    assert!(
        stderr.contains(needle),
        "{args:?}: {stderr:?} should name {needle:?}"
    );
    assert!(
        stderr.contains("--help"),
        "{args:?}: no pointer to --help: {stderr}"
    );
    assert!(
        !stderr.contains("listening"),
        "{args:?}: served before failing"
    );
    assert!(output.stdout.is_empty());
}

#[test]
fn bad_durations() {
    assert_rejected(&["--period=10"], "--period");
    assert_rejected(&["-period", "10"], "missing unit");
    assert_rejected(&["--latency=1x"], "--latency");
    assert_rejected(&["--latency=0"], "greater than zero");
    assert_rejected(&["--period=-2s"], "--period");
    assert_rejected(&["--timeout=soon"], "--timeout");
}

#[test]
fn bad_numbers_and_addresses() {
    assert_rejected(&["--port=65536"], "--port");
    assert_rejected(&["-port", "eighty"], "--port");
    assert_rejected(&["--address=example.com"], "--address");
    assert_rejected(&["--max-output=huge"], "--max-output");
    assert_rejected(&["--failure-threshold=0"], "--failure-threshold");
    assert_rejected(&["--success-threshold=x"], "--success-threshold");
    assert_rejected(&["--quiet=maybe"], "-quiet");
}

#[test]
fn integer_flags_are_read_as_gos_flag_int_reads_them() {
    // A free port written as a pod spec for the Go original may write it:
    // Go's flag.Int takes hex, octal (0o17 or a leading 0) and underscores.
    let forms: [fn(u16) -> String; 4] = [
        |p| format!("0x{p:X}"),
        |p| format!("0{p:o}"),
        |p| format!("0o{p:o}"),
        |p| format!("{}_{:03}", p / 1000, p % 1000),
    ];
    for form in forms {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let written = form(port);
        let mut command = std::process::Command::new(BIN);
        command.args(["--cmd=true", &format!("-port={written}")]);
        let server = Server::start_command(command);
        assert_eq!(server.address.port(), port, "-port={written}");
        server.wait_status("/healthz", 200);
    }
    assert_rejected(&["--port=0x10000"], "not a port number (0 to 65535)");
    assert_rejected(&["--port=-1"], "not a port number");
    assert_rejected(&["--port=99999999999999999999"], "value out of range");
    assert_rejected(&["--port=08"], "parse error");
    assert_rejected(&["--port=1_"], "parse error");
    assert_rejected(&["--success-threshold=0x1_0000_0000"], "at most 4294967295");
}

#[test]
fn bad_flag_syntax() {
    assert_rejected(&["--nosuch=1"], "unknown flag --nosuch");
    assert_rejected(&["-bogus"], "unknown flag -bogus");
    assert_rejected(&["--bogus"], "unknown flag --bogus");
    assert_rejected(&["--cmd"], "flag needs an argument: --cmd");
    assert_rejected(&["-cmd"], "flag needs an argument: -cmd");
    assert_rejected(&["--cmd", "--url=/x"], "-cmd");
    assert_rejected(&["ls", "/tmp"], "unexpected argument \"ls\"");
    assert_rejected(&["--cmd=true", "--", "extra"], "extra");
    assert_rejected(&["---cmd=x"], "bad flag syntax");
}

#[test]
fn bad_commands_and_urls() {
    assert_rejected(&["--cmd=a", "--cmd=b"], "same number of times");
    assert_rejected(&["--cmd=a", "--url=/a", "--url=/b"], "same number of times");
    assert_rejected(
        &["--cmd=a", "--cmd=b", "--url=/a", "--url=/c", "--url=/d"],
        "--url",
    );
    assert_rejected(&["--url=healthz"], "must start with /");
    assert_rejected(&["--url=/a?b"], "--url");
    assert_rejected(
        &["--cmd=a", "--url=/x", "--cmd=b", "--url=/x"],
        "given twice",
    );
    for reserved in ["/", "/quit", "/metrics", "/status"] {
        assert_rejected(&[&format!("--url={reserved}")], "reserved");
    }
    assert_rejected(&["--cmd="], "empty");
}

#[test]
fn help_and_version_exit_zero() {
    for flag in ["-h", "--help", "-help"] {
        let output = run_to_end(&[flag]);
        assert!(output.status.success(), "{flag}");
        let usage = String::from_utf8_lossy(&output.stdout);
        for documented in [
            "--cmd",
            "--url",
            "--port",
            "--address",
            "--period",
            "--latency",
            "--timeout",
            "--max-output",
            "--failure-threshold",
            "--success-threshold",
            "--output",
            "--quiet",
            "--enable-quit",
            "--version",
        ] {
            assert!(
                usage.contains(documented),
                "{flag}: usage lacks {documented}"
            );
        }
    }
    let output = run_to_end(&["-version"]);
    assert!(output.status.success());
    let version = String::from_utf8_lossy(&output.stdout);
    assert!(version.starts_with("exechealthz "), "{version}");
    let features = if cfg!(feature = "tls") { "tls" } else { "none" };
    assert!(
        version.ends_with(&format!(" (features: {features})\n")),
        "{version}"
    );
}

#[test]
fn help_shows_only_values_that_are_accepted() {
    let help = run_to_end(&["--help"]);
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(!text.contains("10us, 0."), "{text}");
    // Every duration the help shows as an example is accepted.
    let examples = text
        .split("Durations use Go syntax: ")
        .nth(1)
        .and_then(|rest| rest.split(" (").next())
        .unwrap();
    for example in examples.split(", ") {
        // --shell is read after --period: its error shows --period passed.
        let output = run_to_end(&[&format!("--period={example}"), "--shell="]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("--shell"), "{example}: {stderr}");
    }
}
