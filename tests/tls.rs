//! The TLS build's https:// and grpcs:// checks (`cargo test --features
//! tls`) against peers this project did not write: Python's ssl (OpenSSL)
//! HTTPS servers and grpcio with ssl_server_credentials, with
//! certificates the tests make (tests/tools/tls_server.py, Python's
//! `cryptography`). Each peer is a Python process on a free port.
#![cfg(feature = "tls")]

mod common;

use common::*;
use std::process::{Command, Stdio};

/// Runs `exechealthz check ARGS`: exit status and stdout.
fn check(args: &[&str]) -> (i32, String) {
    let output = Command::new(BIN).arg("check").args(args).output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

/// The tests' certificates, made in a new folder; `None`: skip.
fn certificates(name: &str) -> Option<TempDir> {
    let dir = TempDir::new(name);
    let path = dir.file("");
    Tool::start("tls_server.py", &["certs", &path], Stdio::inherit(), &[])?;
    Some(dir)
}

fn peer(args: &[&str]) -> Tool {
    Tool::start("tls_server.py", args, Stdio::null(), &[]).expect("python3's ssl")
}

/// An HTTPS server with `cert` (server, expired, self) and more flags.
fn https(dir: &TempDir, cert: &str, more: &[&str]) -> Tool {
    let (pem, key) = (
        dir.file(&format!("{cert}.pem")),
        dir.file(&format!("{cert}.key")),
    );
    let mut args = vec!["serve", "--cert", &pem, "--key", &key];
    args.extend_from_slice(more);
    peer(&args)
}

fn assert_check(target: &str, passes: bool, says: &str) {
    let (code, out) = check(&["--timeout=5s", target]);
    assert_eq!(code, if passes { 0 } else { 1 }, "{target}: {out}");
    assert!(out.contains(says), "{target}: {out}");
}

#[test]
fn unverified_by_default_as_the_kubelet_over_tls_1_2_and_1_3() {
    let Some(dir) = certificates("tls-versions") else {
        return;
    };
    for version in ["1.2", "1.3"] {
        // Self-signed, expired, a name that is not the host: all pass, as
        // the kubelet's HTTPS probe passes them.
        for cert in ["self", "expired", "server"] {
            let server = https(&dir, cert, &["--tls", version]);
            let url = format!("https://127.0.0.1:{}/", server.port);
            assert_check(&url, true, &format!("ok {url}"));
            let url = format!("https://localhost:{}/#server-name=other.test", server.port);
            assert_check(&url, true, "ok ");
        }
    }
}

#[test]
fn sni_is_the_host_when_it_is_a_name_and_alpn_offers_http_1_1() {
    let Some(dir) = certificates("tls-sni") else {
        return;
    };
    let record = dir.file("record");
    let server = https(&dir, "server", &["--record", &record]);
    let port = server.port;
    for url in [
        format!("https://127.0.0.1:{port}/ip"),
        format!("https://localhost:{port}/name"),
        format!("https://127.0.0.1:{port}/named#server-name=app.test"),
    ] {
        assert_check(&url, true, "ok ");
    }
    let lines = std::fs::read_to_string(&record).unwrap();
    assert_eq!(
        lines,
        "sni=- alpn=http/1.1 path=/ip\n\
         sni=localhost alpn=http/1.1 path=/name\n\
         sni=app.test alpn=http/1.1 path=/named\n"
    );
}

#[test]
fn verified_with_ca_chain_validity_and_name() {
    let Some(dir) = certificates("tls-verify") else {
        return;
    };
    let ca = dir.file("ca.pem");
    let server = https(&dir, "server", &[]);
    let expired = https(&dir, "expired", &[]);
    let (port, old) = (server.port, expired.port);
    let other = dir.file("other-ca.pem");
    for (url, passes, says) in [
        (format!("https://127.0.0.1:{port}/#ca={ca}"), true, "ok "),
        (format!("https://localhost:{port}/#ca={ca}"), true, "ok "),
        (
            format!("https://127.0.0.1:{port}/#ca={ca}&server-name=app.test"),
            true,
            "ok ",
        ),
        (
            format!("https://127.0.0.1:{port}/#ca={ca}&server-name=other.test"),
            false,
            "certificate: not valid for other.test",
        ),
        (
            format!("https://127.0.0.1:{port}/#ca={other}"),
            false,
            "certificate: unknown issuer",
        ),
        (
            format!("https://127.0.0.1:{old}/#ca={ca}"),
            false,
            "certificate: expired",
        ),
    ] {
        assert_check(&url, passes, says);
    }
    // A self-signed server certificate is its own CA.
    let own = https(&dir, "self", &[]);
    let url = format!(
        "https://127.0.0.1:{}/#ca={}",
        own.port,
        dir.file("self.pem")
    );
    assert_check(&url, true, "ok ");
}

#[test]
fn a_client_certificate_when_the_server_requires_one() {
    let Some(dir) = certificates("tls-client") else {
        return;
    };
    let client_ca = dir.file("client-ca.pem");
    for version in ["1.2", "1.3"] {
        let server = https(
            &dir,
            "server",
            &["--tls", version, "--client-ca", &client_ca],
        );
        let base = format!("https://127.0.0.1:{}/", server.port);
        assert_check(&base, false, "the server requires a client certificate");
        for (cert, key) in [
            ("client.pem", "client-pkcs8.key"),
            ("client.pem", "client-sec1.key"),
            ("client-rsa.pem", "client-pkcs1.key"),
        ] {
            let url = format!("{base}#cert={}&key={}", dir.file(cert), dir.file(key));
            assert_check(&url, true, "ok ");
        }
        let url = format!(
            "{base}#cert={}&key={}",
            dir.file("client-rsa.pem"),
            dir.file("client-sec1.key")
        );
        assert_check(&url, false, "not the key of the cert");
    }
}

#[test]
fn a_plain_port_and_a_silent_port_fail_with_their_reasons() {
    let plain = peer(&["plain"]);
    let silent = peer(&["silent"]);
    for scheme in ["https", "grpcs"] {
        let url = format!("{scheme}://127.0.0.1:{}", plain.port);
        assert_check(&url, false, "the server answered in plain HTTP, not TLS");
        let url = format!("{scheme}://127.0.0.1:{}/#timeout=300ms", silent.port);
        let (code, out) = check(&[&url]);
        assert_eq!(code, 1, "{out}");
        assert!(out.contains("tls handshake timed out after 300ms"), "{out}");
    }
}

#[test]
fn redirects_on_the_same_host_are_followed_over_tls() {
    let Some(dir) = certificates("tls-redirect") else {
        return;
    };
    let server = https(&dir, "server", &[]);
    let port = server.port;
    assert_check(&format!("https://127.0.0.1:{port}/redirect/8"), true, "ok ");
    assert_check(
        &format!("https://127.0.0.1:{port}/redirect/9"),
        false,
        "stopped after 10 redirects",
    );
    // 9 redirects are followed, not 10 (the kubelet's rule, as for http://).
    // http:// to https:// on the same host is followed, as Go's client does.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let http_port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            let mut head = [0u8; 1024];
            let _ = stream.read(&mut head);
            let _ = write!(
                stream,
                "HTTP/1.1 301 Moved\r\nLocation: https://127.0.0.1:{port}/\r\n\
                 Content-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    });
    assert_check(&format!("http://127.0.0.1:{http_port}/"), true, "ok ");
}

#[test]
fn tls_files_are_read_at_every_run_and_a_missing_one_fails_the_run() {
    let Some(dir) = certificates("tls-files") else {
        return;
    };
    let server = https(&dir, "server", &[]);
    let ca = dir.file("mounted-later.pem");
    let cmd = format!("--cmd=https://127.0.0.1:{}/#ca={ca}", server.port);
    let sidecar = Server::start(&[&cmd, "--period=50ms"]);
    sidecar.wait_for("/healthz", |r| {
        r.status == 503
            && r.text()
                .contains(&format!("ca {ca}: No such file or directory"))
    });
    // A bad file fails the run too, naming it; then the Secret arrives.
    std::fs::write(&ca, "not PEM\n").unwrap();
    sidecar.wait_for("/healthz", |r| {
        r.text()
            .contains(&format!("ca {ca}: no PEM certificate in it"))
    });
    std::fs::copy(dir.file("ca.pem"), &ca).unwrap();
    sidecar.wait_status("/healthz", 200);
    // Rotated to a CA that did not sign the server's certificate.
    std::fs::copy(dir.file("other-ca.pem"), &ca).unwrap();
    sidecar.wait_for("/healthz", |r| {
        r.status == 503 && r.text().contains("certificate: unknown issuer")
    });
}

/// A TLS file that is not a regular file (a FIFO, whose open would wait
/// for a writer; /dev/zero, which never ends) or is over 1 MiB fails the
/// run at once, naming it: never a check past its deadline, nor a read
/// without end.
#[test]
fn tls_files_that_are_not_pem_files_fail_at_once() {
    let Some(dir) = certificates("tls-odd-files") else {
        return;
    };
    let server = https(&dir, "server", &[]);
    let fifo = dir.file("ca.fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let big = dir.file("big.pem");
    let bundle = std::fs::read(dir.file("ca.pem")).unwrap();
    std::fs::write(&big, bundle.repeat(1024 * 1024 / bundle.len() + 1)).unwrap();
    let base = format!("https://127.0.0.1:{}/", server.port);
    let cert = dir.file("client.pem");
    for (options, says) in [
        (
            format!("ca={fifo}"),
            format!("ca {fifo}: not a regular file"),
        ),
        (
            "ca=/dev/zero".to_string(),
            "ca /dev/zero: not a regular file".to_string(),
        ),
        (format!("ca={big}"), format!("ca {big}: larger than 1 MiB")),
        (
            format!("cert={cert}&key={fifo}"),
            format!("key {fifo}: not a regular file"),
        ),
    ] {
        // The reason, not a timeout after 20 s: nothing was waited on.
        let (code, out) = check(&["--timeout=20s", &format!("{base}#{options}")]);
        assert_eq!(code, 1, "{options}: {out}");
        assert!(out.contains(&says), "{options}: {out}");
    }
    // In the server: the run fails with the reason, as for a missing file.
    let cmd = format!("--cmd={base}#ca={fifo}");
    let sidecar = Server::start(&[&cmd, "--period=50ms", "--timeout=20s"]);
    sidecar.wait_for("/healthz", |r| {
        r.status == 503 && r.text().contains(&format!("ca {fifo}: not a regular file"))
    });
}

fn grpc_tls(dir: &TempDir, client_auth: bool) -> Option<Tool> {
    let (cert, key) = (dir.file("server.pem"), dir.file("server.key"));
    let client_ca = dir.file("client-ca.pem");
    let mut args = vec!["--tls", &cert, &key];
    if client_auth {
        args.extend_from_slice(&["--client-ca", &client_ca]);
    }
    Tool::start("grpc_server.py", &args, Stdio::null(), &[])
}

#[test]
fn grpcs_against_grpcio_with_and_without_client_auth() {
    let Some(dir) = certificates("tls-grpc") else {
        return;
    };
    let Some(mut server) = grpc_tls(&dir, false) else {
        return;
    };
    let ca = dir.file("ca.pem");
    let port = server.port;
    assert_check(&format!("grpcs://127.0.0.1:{port}"), true, "ok ");
    assert_check(
        &format!("grpcs://localhost:{port}#ca={ca}&metadata=x-probe:1"),
        true,
        "ok ",
    );
    assert_check(
        &format!("grpcs://127.0.0.1:{port}#ca={}", dir.file("other-ca.pem")),
        false,
        "certificate: unknown issuer",
    );
    server.tell("set - NOT_SERVING");
    assert_check(&format!("grpcs://127.0.0.1:{port}"), false, "NOT_SERVING");
    // A gRPC client over plain h2c gets nothing from a TLS port.
    let (code, _) = check(&[&format!("grpc://127.0.0.1:{port}")]);
    assert_eq!(code, 1);

    let mutual = grpc_tls(&dir, true).unwrap();
    let base = format!("grpcs://127.0.0.1:{}", mutual.port);
    assert_check(&base, false, "the server requires a client certificate");
    let url = format!(
        "{base}#ca={ca}&server-name=app.test&cert={}&key={}",
        dir.file("client.pem"),
        dir.file("client-sec1.key")
    );
    assert_check(&url, true, "ok ");
}

#[test]
fn grpcs_needs_the_server_to_pick_h2() {
    let Some(dir) = certificates("tls-alpn") else {
        return;
    };
    let none = https(&dir, "server", &["--alpn", "none"]);
    assert_check(
        &format!("grpcs://127.0.0.1:{}", none.port),
        false,
        "the server picked no HTTP/2 by ALPN (grpcs:// needs h2)",
    );
}

#[test]
fn version_and_help_say_tls_is_in() {
    let output = run_to_end(&["--version"]);
    let version = String::from_utf8_lossy(&output.stdout);
    assert!(version.ends_with("(features: tls)\n"), "{version}");
    let output = run_to_end(&["--help"]);
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(help.contains("NOT verified unless ca="), "{help}");
}
