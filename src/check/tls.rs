//! TLS under the https:// and grpcs:// checks (the `tls` feature only): a
//! rustls client over a connection `open` made, its handshake bounded by
//! the check's deadline, its failures in words.
//!
//! Unverified by default, as the kubelet's `scheme: HTTPS` and `grpc.mode:
//! TLS` probes are (Go's `InsecureSkipVerify`: any certificate, but the
//! handshake's signature is still checked against the certificate's key);
//! verified against the `ca` option's bundle when it is given, for the
//! `server-name` option's name or the URL's host. A client certificate
//! (`cert`, `key`) is presented when the server asks for one. The files
//! are read at every run, so a rotated Secret is followed; a file that
//! cannot be read, is not a regular file or is over 1 MiB fails the run,
//! naming it.
//!
//! This file knows TLS and nothing of HTTP or gRPC above it; it must not
//! hold a connection or a file past the run that opened it, nor implement
//! any cryptography itself (rustls and ring do).

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rustls::client::ResolvesClientCert;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{
    CryptoProvider, GetRandomFailed, KeyProvider, SecureRandom, WebPkiSupportedAlgorithms,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::sign::{CertifiedKey, SigningKey};
use rustls::{
    AlertDescription, CertificateError, ClientConfig, ClientConnection, DigitallySignedStruct,
    Error, RootCertStore, SignatureScheme,
};

use super::options::TlsOptions;
use super::{ALPN_H2, Failure, Source, Stream, io_failure, left};

/// A TLS connection on a check's socket.
pub(crate) struct Tls {
    conn: ClientConnection,
    socket: Stream,
    client: Arc<ClientCert>,
    /// Whether any data has come through, for `refused`.
    read_any: bool,
}

/// The TLS client over `socket` (to `host`, or the `server-name`), its
/// handshake done within `deadline`, offering `alpn`; with `alpn` = h2 the
/// server must pick it.
pub(super) fn connect(
    socket: Stream,
    host: &str,
    options: &TlsOptions,
    alpn: &'static [u8],
    deadline: Instant,
) -> Result<Stream, Failure> {
    let provider = provider();
    let client = Arc::new(ClientCert {
        key: match (&options.cert, &options.key) {
            (Some(cert), Some(key)) => Some(certified_key(cert, key, &provider)?),
            _ => None,
        },
        asked: AtomicBool::new(false),
    });
    let name = options.server_name.as_deref().unwrap_or(host);
    let name = ServerName::try_from(name.to_string())
        .map_err(|_| Failure::Error(format!("{name}: not a name TLS can ask for")))?;
    let config = config(options, alpn, provider, Arc::clone(&client))?;
    let conn = ClientConnection::new(Arc::new(config), name)
        .map_err(|e| Failure::Error(words(&e, &client)))?;
    let mut tls = Tls {
        conn,
        socket,
        client,
        read_any: false,
    };
    tls.handshake(deadline)
        .map_err(|f| f.during("tls handshake"))?;
    if alpn == ALPN_H2 && tls.conn.alpn_protocol() != Some(ALPN_H2) {
        return Err(Failure::Error(
            "the server picked no HTTP/2 by ALPN (grpcs:// needs h2)".into(),
        ));
    }
    Ok(Stream::Tls(Box::new(tls)))
}

/// ring's cryptography, put together here rather than taken whole from
/// `rustls::crypto::ring::default_provider` (deprecated in rustls 0.23.48
/// for having no post-quantum key exchange; aws-lc-rs has one but needs
/// cmake and more for the four musl targets, and a health check's secrets
/// are short-lived). The suites are AES-GCM only: every TLS server offers
/// them, and ChaCha20-Poly1305 would add about 45 KiB. Key exchange:
/// X25519, P-256, P-384. Signatures: ECDSA, Ed25519, RSA (PKCS#1, PSS).
fn provider() -> Arc<CryptoProvider> {
    use rustls::crypto::ring::cipher_suite::*;
    use rustls::crypto::ring::kx_group::{SECP256R1, SECP384R1, X25519};
    Arc::new(CryptoProvider {
        cipher_suites: vec![
            TLS13_AES_256_GCM_SHA384,
            TLS13_AES_128_GCM_SHA256,
            TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        ],
        kx_groups: vec![X25519, SECP256R1, SECP384R1],
        signature_verification_algorithms: SIGNATURES,
        secure_random: &Ring,
        key_provider: &Ring,
    })
}

/// The signatures we verify, by TLS's name for each (RFC 8446 4.2.3),
/// as webpki's ring algorithms.
static SIGNATURES: WebPkiSupportedAlgorithms = {
    use SignatureScheme as S;
    use webpki::ring::*;
    WebPkiSupportedAlgorithms {
        all: &[
            ECDSA_P256_SHA256,
            ECDSA_P256_SHA384,
            ECDSA_P384_SHA256,
            ECDSA_P384_SHA384,
            ED25519,
            RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
            RSA_PSS_2048_8192_SHA384_LEGACY_KEY,
            RSA_PSS_2048_8192_SHA512_LEGACY_KEY,
            RSA_PKCS1_2048_8192_SHA256,
            RSA_PKCS1_2048_8192_SHA384,
            RSA_PKCS1_2048_8192_SHA512,
            RSA_PKCS1_2048_8192_SHA256_ABSENT_PARAMS,
            RSA_PKCS1_2048_8192_SHA384_ABSENT_PARAMS,
            RSA_PKCS1_2048_8192_SHA512_ABSENT_PARAMS,
        ],
        mapping: &[
            (
                S::ECDSA_NISTP384_SHA384,
                &[ECDSA_P384_SHA384, ECDSA_P256_SHA384],
            ),
            (
                S::ECDSA_NISTP256_SHA256,
                &[ECDSA_P256_SHA256, ECDSA_P384_SHA256],
            ),
            (S::ED25519, &[ED25519]),
            (S::RSA_PSS_SHA512, &[RSA_PSS_2048_8192_SHA512_LEGACY_KEY]),
            (S::RSA_PSS_SHA384, &[RSA_PSS_2048_8192_SHA384_LEGACY_KEY]),
            (S::RSA_PSS_SHA256, &[RSA_PSS_2048_8192_SHA256_LEGACY_KEY]),
            (S::RSA_PKCS1_SHA512, &[RSA_PKCS1_2048_8192_SHA512]),
            (S::RSA_PKCS1_SHA384, &[RSA_PKCS1_2048_8192_SHA384]),
            (S::RSA_PKCS1_SHA256, &[RSA_PKCS1_2048_8192_SHA256]),
        ],
    }
};

/// ring's random numbers and private keys, for the provider.
#[derive(Debug)]
struct Ring;

impl SecureRandom for Ring {
    fn fill(&self, buf: &mut [u8]) -> Result<(), GetRandomFailed> {
        use ring::rand::SecureRandom as _;
        ring::rand::SystemRandom::new()
            .fill(buf)
            .map_err(|_| GetRandomFailed)
    }
}

impl KeyProvider for Ring {
    fn load_private_key(&self, key: PrivateKeyDer<'static>) -> Result<Arc<dyn SigningKey>, Error> {
        rustls::crypto::ring::sign::any_supported_type(&key)
    }
}

/// TLS 1.3 and 1.2, ring's suites and groups, the verifier the options
/// ask for, our client certificate if any.
fn config(
    options: &TlsOptions,
    alpn: &'static [u8],
    provider: Arc<CryptoProvider>,
    client: Arc<ClientCert>,
) -> Result<ClientConfig, Failure> {
    let roots = match &options.ca {
        None => None,
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for cert in certificates(path, "ca")? {
                roots
                    .add(cert)
                    .map_err(|e| file_failure("ca", path, &e.to_string()))?;
            }
            Some(roots)
        }
    };
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(rustls::ALL_VERSIONS)
        .map_err(|e| Failure::Error(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Verifier { roots }))
        .with_client_cert_resolver(client);
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(config)
}

fn file_failure(option: &str, path: &Path, why: &str) -> Failure {
    Failure::Error(format!("{option} {}: {why}", path.display()))
}

/// A PEM file is read whole at every run; one larger than this is
/// refused (the system's whole CA bundle is about 220 KB).
const MAX_PEM: usize = 1024 * 1024;

/// A PEM file's bytes. Only a regular file (or a link to one, as a
/// mounted Secret's are) is read, and at most `MAX_PEM` of it: opening a
/// FIFO would wait for a writer past the check's deadline, and a device
/// such as /dev/zero never ends. Opened non-blocking for that reason
/// (which changes nothing for a regular file).
fn read_file(path: &Path, option: &str) -> Result<Vec<u8>, Failure> {
    use std::os::unix::fs::OpenOptionsExt;
    let fail = |why: &str| file_failure(option, path, why);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| fail(&e.to_string()))?;
    if !file.metadata().map_err(|e| fail(&e.to_string()))?.is_file() {
        return Err(fail("not a regular file"));
    }
    // A plain loop, not `take` and `read_to_end` (1.2 KiB of binary).
    let (mut pem, mut chunk) = (Vec::new(), [0u8; 8192]);
    loop {
        match (&file).read(&mut chunk) {
            Ok(0) => break,
            Ok(n) if pem.len() + n > MAX_PEM => {
                return Err(fail("larger than 1 MiB, more than any PEM bundle"));
            }
            Ok(n) => pem.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(fail(&e.to_string())),
        }
    }
    Ok(pem)
}

/// The PEM certificates in `path`: at least one.
fn certificates(path: &Path, option: &str) -> Result<Vec<CertificateDer<'static>>, Failure> {
    let pem = read_file(path, option)?;
    let mut certs = Vec::new();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        certs.push(cert.map_err(|e| file_failure(option, path, &format!("bad PEM: {e}")))?);
    }
    if certs.is_empty() {
        return Err(file_failure(option, path, "no PEM certificate in it"));
    }
    Ok(certs)
}

/// The `cert` chain and its `key` (PKCS#8, SEC1 or PKCS#1 PEM), which
/// must belong together.
fn certified_key(
    cert: &Path,
    key: &Path,
    provider: &CryptoProvider,
) -> Result<Arc<CertifiedKey>, Failure> {
    let chain = certificates(cert, "cert")?;
    let pem = read_file(key, "key")?;
    let der = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        let why = match e {
            rustls::pki_types::pem::Error::NoItemsFound => "no PEM private key in it".into(),
            e => format!("bad PEM: {e}"),
        };
        file_failure("key", key, &why)
    })?;
    let certified = CertifiedKey::from_der(chain, der, provider).map_err(|e| match e {
        Error::InconsistentKeys(_) => file_failure("key", key, "not the key of the cert"),
        e => file_failure("key", key, &e.to_string()),
    })?;
    Ok(Arc::new(certified))
}

/// Our client certificate, if any, and whether the server asked for one
/// (to tell "a client certificate is required" from other refusals).
#[derive(Debug)]
struct ClientCert {
    key: Option<Arc<CertifiedKey>>,
    asked: AtomicBool,
}

impl ResolvesClientCert for ClientCert {
    fn resolve(&self, _: &[&[u8]], _: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        self.asked.store(true, Ordering::Relaxed);
        self.key.clone()
    }

    fn has_certs(&self) -> bool {
        self.key.is_some()
    }
}

/// Without `roots`, the kubelet's verification: none of the certificate,
/// but the handshake's signatures, with the key in it. With them (`ca`),
/// webpki's: the chain to one of them, each certificate's validity, and the
/// name, as rustls's own verifier does it, without its revocation lists
/// (CRLs are not an option here; about 20 KiB).
#[derive(Debug)]
struct Verifier {
    roots: Option<RootCertStore>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        name: &ServerName<'_>,
        _: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        if let Some(roots) = &self.roots {
            let cert = rustls::server::ParsedCertificate::try_from(end_entity)?;
            let all = SIGNATURES.all;
            rustls::client::verify_server_cert_signed_by_trust_anchor(
                &cert,
                roots,
                intermediates,
                now,
                all,
            )?;
            rustls::client::verify_server_name(&cert, name)?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &SIGNATURES)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &SIGNATURES)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        SIGNATURES.supported_schemes()
    }
}

impl Tls {
    /// Hello to Finished, every read and write bounded by `deadline`. The
    /// first bytes back are looked at before rustls sees them: a plain
    /// HTTP server's answer to our hello is named as such.
    fn handshake(&mut self, deadline: Instant) -> Result<(), Failure> {
        let mut first = true;
        let mut buffer = [0u8; 4096];
        loop {
            while self.conn.wants_write() {
                let written = self
                    .socket
                    .set_write_timeout(left(deadline)?)
                    .and_then(|_| self.conn.write_tls(&mut self.socket));
                if let Err(e) = written {
                    return Err(self.refusal(e, deadline));
                }
            }
            if !self.conn.is_handshaking() {
                return Ok(());
            }
            self.socket
                .set_read_timeout(left(deadline)?)
                .map_err(|e| io_failure("tls handshake", e))?;
            let n = match self.socket.read(&mut buffer) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                    return Err(Failure::Error(if first {
                        "the server reset the connection at our TLS hello".into()
                    } else {
                        "the server reset the connection in the TLS handshake".into()
                    }));
                }
                Err(e) => return Err(io_failure("tls handshake", e)),
            };
            let got = &buffer[..n];
            if n == 0 {
                return Err(Failure::Error(if first {
                    "the server closed the connection at our TLS hello".into()
                } else {
                    "the server closed the connection in the TLS handshake".into()
                }));
            }
            if first && got.starts_with(b"HTTP/") {
                return Err(Failure::Error(
                    "the server answered in plain HTTP, not TLS".into(),
                ));
            }
            first = false;
            let mut rest = got;
            while !rest.is_empty() {
                self.conn
                    .read_tls(&mut rest)
                    .map_err(|e| io_failure("tls handshake", e))?;
                if let Err(e) = self.conn.process_new_packets() {
                    // Our alert, best effort: the run has failed anyway.
                    let _ = self.conn.write_tls(&mut self.socket);
                    return Err(Failure::Error(words(&e, &self.client)));
                }
            }
        }
    }

    /// Why a handshake write failed: a server that refuses us may have
    /// sent its alert and closed before our last flight was written (TLS
    /// 1.2, a client certificate required). The alert, if it came, says
    /// more than the broken pipe.
    fn refusal(&mut self, e: io::Error, deadline: Instant) -> Failure {
        if is_timeout(&e) {
            return io_failure("tls handshake", e);
        }
        let until = deadline.min(Instant::now() + Duration::from_millis(100));
        let mut buffer = [0u8; 4096];
        let wait = until.saturating_duration_since(Instant::now());
        if !wait.is_zero()
            && self.socket.set_read_timeout(wait).is_ok()
            && let Ok(n @ 1..) = self.socket.read(&mut buffer)
        {
            let _ = self.conn.read_tls(&mut &buffer[..n]);
            if let Err(tls) = self.conn.process_new_packets() {
                return Failure::Error(words(&tls, &self.client));
            }
        }
        if self.client.key.is_none() && self.client.asked.load(Ordering::Relaxed) {
            return Failure::Error(REFUSED.into());
        }
        io_failure("tls handshake", e)
    }

    /// A TLS error inside an I/O error, in words.
    fn io_words(&self, e: io::Error) -> io::Error {
        let worded = e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<Error>())
            .map(|tls| words(tls, &self.client));
        match worded {
            Some(words) => io::Error::other(words),
            None => e,
        }
    }

    /// close_notify, then the socket's own clean close.
    pub(super) fn close_cleanly(&mut self, deadline: Instant) {
        self.conn.send_close_notify();
        let _ = self.conn.write_tls(&mut self.socket);
        self.socket.close_cleanly(deadline);
    }
}

impl Read for Tls {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let result = rustls::Stream::new(&mut self.conn, &mut self.socket).read(buf);
        // A server that asked for a client certificate and got none may
        // just close (grpc's BoringSSL does, under TLS 1.3, where the
        // handshake has ended for us before it looks).
        let refused = !self.read_any
            && self.client.key.is_none()
            && self.client.asked.load(Ordering::Relaxed);
        match result {
            Ok(0) | Err(_) if refused && !matches!(&result, Err(e) if is_timeout(e)) => {
                Err(io::Error::other(REFUSED))
            }
            // A close without close_notify ends the body as a close does
            // for plain HTTP (Go's client reads it so too); TLS still
            // vouches for every byte read.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
            Err(e) => Err(self.io_words(e)),
            Ok(n) => {
                self.read_any = true;
                Ok(n)
            }
        }
    }
}

/// A server that asked for a client certificate, got none, and closed.
const REFUSED: &str = "the server requires a client certificate (it asked for one, and \
                       closed the connection without one)";

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}

impl Write for Tls {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let result = rustls::Stream::new(&mut self.conn, &mut self.socket).write(buf);
        result.map_err(|e| self.io_words(e))
    }

    fn flush(&mut self) -> io::Result<()> {
        let result = rustls::Stream::new(&mut self.conn, &mut self.socket).flush();
        result.map_err(|e| self.io_words(e))
    }
}

impl Source for Tls {
    fn set_read_timeout(&self, timeout: Duration) -> io::Result<()> {
        self.socket.set_read_timeout(timeout)
    }

    fn set_write_timeout(&self, timeout: Duration) -> io::Result<()> {
        self.socket.set_write_timeout(timeout)
    }
}

/// A TLS failure as a reason: what a reader can act on, not rustls's
/// variant names.
fn words(e: &Error, client: &ClientCert) -> String {
    let refused_without_cert = client.asked.load(Ordering::Relaxed) && client.key.is_none();
    match e {
        Error::InvalidCertificate(cert) => match cert {
            CertificateError::UnknownIssuer => "certificate: unknown issuer".into(),
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "certificate: expired".into()
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "certificate: not valid yet".into()
            }
            CertificateError::NotValidForNameContext { expected, .. } => {
                format!("certificate: not valid for {}", expected.to_str())
            }
            CertificateError::NotValidForName => "certificate: not valid for the name".into(),
            CertificateError::BadSignature => "certificate: bad signature".into(),
            CertificateError::Revoked => "certificate: revoked".into(),
            CertificateError::Other(other) => match other.0.downcast_ref::<webpki::Error>() {
                // Go takes a self-signed CA given as ca= for the server's
                // own certificate; webpki does not (README).
                Some(webpki::Error::CaUsedAsEndEntity) => {
                    "certificate: a CA certificate (CA:TRUE) as the server's own".into()
                }
                Some(e) => format!("certificate: {}", spaced(&format!("{e:?}"), ' ')),
                None => format!("certificate: {other}"),
            },
            other => format!("certificate: {}", spaced(&format!("{other:?}"), ' ')),
        },
        Error::AlertReceived(AlertDescription::CertificateRequired) => {
            "the server requires a client certificate".into()
        }
        Error::AlertReceived(
            AlertDescription::HandshakeFailure
            | AlertDescription::BadCertificate
            | AlertDescription::AccessDenied,
        ) if refused_without_cert => "the server requires a client certificate".into(),
        Error::AlertReceived(alert) => {
            format!("the server sent the TLS alert {}", alert_name(*alert))
        }
        Error::NoApplicationProtocol => "the server takes none of our ALPN protocols".into(),
        Error::PeerIncompatible(_) => format!("the server's TLS does not fit ours: {e}"),
        other => format!("tls: {other}"),
    }
}

/// An alert as RFC 8446 names it: `HandshakeFailure` as
/// `handshake_failure`; an unknown one by its number.
fn alert_name(alert: AlertDescription) -> String {
    let camel = format!("{alert:?}");
    if camel.contains('(') {
        return format!("number {}", u8::from(alert));
    }
    spaced(&camel, '_')
}

/// A variant's name in words: `UnknownIssuer` as `unknown issuer` (or
/// `unknown_issuer`); what follows a `(` or `{` is left out.
fn spaced(camel: &str, between: char) -> String {
    let mut words = String::new();
    for c in camel.chars().take_while(|c| c.is_ascii_alphanumeric()) {
        if c.is_ascii_uppercase() && !words.is_empty() {
            words.push(between);
        }
        let _ = words.write_char(c.to_ascii_lowercase());
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::os::unix::net::UnixStream;

    /// The handshake against a scripted peer on a socket pair: `peer` gets
    /// its end once our hello has been read from it.
    fn handshake_with(peer: impl FnOnce(UnixStream) + Send + 'static, wait: Duration) -> String {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let peer = std::thread::spawn(move || {
            let mut head = [0u8; 5];
            theirs.read_exact(&mut head).unwrap();
            assert_eq!(head[0], 22, "a TLS handshake record first");
            let mut hello = vec![0u8; u16::from_be_bytes([head[3], head[4]]) as usize];
            theirs.read_exact(&mut hello).unwrap();
            peer(theirs);
        });
        let deadline = Instant::now() + wait;
        let options = TlsOptions::default();
        let result = connect(
            Stream::Unix(ours),
            "app.test",
            &options,
            super::super::ALPN_HTTP1,
            deadline,
        );
        peer.join().unwrap();
        match result {
            Ok(_) => "connected".into(),
            Err(Failure::Error(why)) => why,
            Err(Failure::TimedOutIn(step)) => format!("timed out in {step}"),
            Err(_) => "another failure".into(),
        }
    }

    #[test]
    fn a_plain_http_answer_a_close_and_silence_at_the_hello_are_named() {
        let plain = |mut peer: UnixStream| {
            peer.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").unwrap();
        };
        assert_eq!(
            handshake_with(plain, Duration::from_secs(5)),
            "the server answered in plain HTTP, not TLS"
        );
        assert_eq!(
            handshake_with(drop, Duration::from_secs(5)),
            "the server closed the connection at our TLS hello"
        );
        let silent = |peer: UnixStream| {
            std::thread::sleep(Duration::from_millis(300));
            drop(peer);
        };
        assert_eq!(
            handshake_with(silent, Duration::from_millis(100)),
            "timed out in tls handshake"
        );
        // Not TLS, not HTTP: rustls's own reason.
        let garbage = |mut peer: UnixStream| {
            peer.write_all(&[0xff; 64]).unwrap();
        };
        let why = handshake_with(garbage, Duration::from_secs(5));
        assert!(why.starts_with("tls: "), "{why}");
    }

    #[test]
    fn a_missing_or_bad_file_fails_naming_it() {
        let dir = std::env::temp_dir().join(format!("exechealthz-tls-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bad = dir.join("bad.pem");
        std::fs::write(
            &bad,
            "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let missing = dir.join("missing.pem");
        for (path, says) in [(&missing, "No such file"), (&bad, "bad PEM")] {
            match certificates(path, "ca") {
                Err(Failure::Error(why)) => {
                    assert!(
                        why.starts_with(&format!("ca {}: ", path.display())),
                        "{why}"
                    );
                    assert!(why.contains(says), "{why}");
                }
                _ => panic!("{} passed", path.display()),
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn alerts_are_named_as_the_rfc_names_them() {
        assert_eq!(
            alert_name(AlertDescription::HandshakeFailure),
            "handshake_failure"
        );
        assert_eq!(
            alert_name(AlertDescription::ProtocolVersion),
            "protocol_version"
        );
        assert_eq!(alert_name(AlertDescription::Unknown(200)), "number 200");
    }

    #[test]
    fn a_refusal_is_a_missing_client_certificate_only_when_one_was_asked_for() {
        let client = ClientCert {
            key: None,
            asked: AtomicBool::new(false),
        };
        let refusal = Error::AlertReceived(AlertDescription::HandshakeFailure);
        assert_eq!(
            words(&refusal, &client),
            "the server sent the TLS alert handshake_failure"
        );
        client.asked.store(true, Ordering::Relaxed);
        assert_eq!(
            words(&refusal, &client),
            "the server requires a client certificate"
        );
    }
}
