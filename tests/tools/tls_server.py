"""TLS peers for the https:// and grpcs:// tests: Python's ssl (OpenSSL).

  tls_server.py certs DIR
      makes the tests' certificates in DIR (Python's `cryptography`):
        ca.pem                 a CA; server.pem/.key (P-256, PKCS#8) signed
                               by it for app.test, localhost and 127.0.0.1
        expired.pem/.key       signed by the CA, expired a day ago
        self.pem/.key          self-signed, not a CA (RSA, PKCS#1 key)
        other-ca.pem           a CA that signed none of them
        client-ca.pem          the CA of the client certificates:
        client.pem + client-pkcs8.key, client-sec1.key (P-256), and
        client-rsa.pem + client-pkcs1.key (RSA)
      prints `port 0` when done.
  tls_server.py serve --cert C --key K [--tls 1.2|1.3] [--client-ca CA]
                      [--alpn P|none] [--record FILE]
      an HTTPS server on a free port (prints `port N`): GET answers 200
      `ok` (a path /redirect/N answers 302 to /redirect/N-1, /redirect/0 is
      /). With --record, each connection appends a line to FILE:
      `sni=NAME alpn=PROTO path=PATH` (`-` for none).
  tls_server.py plain     answers whatever it reads with an HTTP/1.1 400, as
                          nginx does to a TLS hello on a plain port
  tls_server.py silent    accepts, reads, and never answers
Exit status 3 when `cryptography` is missing (the tests then skip).
"""
import datetime
import os
import socket
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def option(name, default=None):
    return sys.argv[sys.argv.index(name) + 1] if name in sys.argv else default


def certs(folder):
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec, rsa
        from cryptography.x509.oid import NameOID
    except ImportError:
        sys.exit(3)
    import ipaddress
    now = datetime.datetime.now(datetime.timezone.utc)
    day = datetime.timedelta(days=1)

    def name(cn):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def write(path, data):
        with open(os.path.join(folder, path), "wb") as f:
            f.write(data)

    def key_pem(key, form):
        fmt = {"pkcs8": serialization.PrivateFormat.PKCS8,
               "sec1": serialization.PrivateFormat.TraditionalOpenSSL,
               "pkcs1": serialization.PrivateFormat.TraditionalOpenSSL}[form]
        return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())

    def cert(subject, key, issuer, issuer_key, ca, sans=(), start=now - day, end=now + 30 * day,
             client=False):
        b = (x509.CertificateBuilder().subject_name(name(subject)).issuer_name(name(issuer))
             .public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(start).not_valid_after(end)
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if sans:
            b = b.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
        if not ca:
            usage = x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH if client \
                else x509.oid.ExtendedKeyUsageOID.SERVER_AUTH
            b = b.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        return b.sign(issuer_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)

    def p256():
        return ec.generate_private_key(ec.SECP256R1())

    def rsa2048():
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)

    server_names = [x509.DNSName("app.test"), x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    ca_key = p256()
    write("ca.pem", cert("test CA", ca_key, "test CA", ca_key, True))
    key = p256()
    write("server.key", key_pem(key, "pkcs8"))
    write("server.pem", cert("app.test", key, "test CA", ca_key, False, server_names))
    key = p256()
    write("expired.key", key_pem(key, "pkcs8"))
    write("expired.pem", cert("app.test", key, "test CA", ca_key, False, server_names,
                              start=now - 10 * day, end=now - day))
    key = rsa2048()
    write("self.key", key_pem(key, "pkcs1"))
    write("self.pem", cert("app.test", key, "app.test", key, False, server_names))
    other = p256()
    write("other-ca.pem", cert("other CA", other, "other CA", other, True))
    client_ca = p256()
    write("client-ca.pem", cert("client CA", client_ca, "client CA", client_ca, True))
    key = p256()
    write("client-pkcs8.key", key_pem(key, "pkcs8"))
    write("client-sec1.key", key_pem(key, "sec1"))
    write("client.pem", cert("probe", key, "client CA", client_ca, False, client=True))
    key = rsa2048()
    write("client-pkcs1.key", key_pem(key, "pkcs1"))
    write("client-rsa.pem", cert("probe", key, "client CA", client_ca, False, client=True))
    print("port 0", flush=True)


def serve():
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(option("--cert"), option("--key"))
    version = option("--tls")
    if version:
        v = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}[version]
        context.minimum_version = context.maximum_version = v
    client_ca = option("--client-ca")
    if client_ca:
        context.load_verify_locations(client_ca)
        context.verify_mode = ssl.CERT_REQUIRED
    alpn = option("--alpn", "http/1.1")
    if alpn != "none":
        context.set_alpn_protocols([alpn])
    record = option("--record")
    names = {}

    def sni(sock, name, _):
        names[id(sock)] = name
    context.sni_callback = sni

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            if record:
                with open(record, "a") as f:
                    f.write(f"sni={names.get(id(self.connection), '-') or '-'} "
                            f"alpn={self.connection.selected_alpn_protocol() or '-'} "
                            f"path={self.path}\n")
            if self.path.startswith("/redirect/"):
                n = int(self.path.rsplit("/", 1)[1])
                target = f"/redirect/{n - 1}" if n > 0 else "/"
                self.send_response(302)
                self.send_header("Location", target)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = b"ok\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    class Server(ThreadingHTTPServer):
        daemon_threads = True

        def get_request(self):
            sock, address = self.socket.accept()
            sock.settimeout(10)
            try:
                return context.wrap_socket(sock, server_side=True), address
            except (ssl.SSLError, OSError) as e:
                print(f"handshake failed: {e}", file=sys.stderr, flush=True)
                sock.close()
                raise

    server = Server(("127.0.0.1", 0), Handler)
    print(f"port {server.server_address[1]}", flush=True)
    server.serve_forever()


def raw(answer):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    print(f"port {listener.getsockname()[1]}", flush=True)
    held = []

    def talk(conn):
        try:
            if conn.recv(4096) and answer:
                conn.sendall(answer)
                conn.close()
        except OSError:
            pass
    while True:
        conn, _ = listener.accept()
        held.append(conn)
        threading.Thread(target=talk, args=(conn,), daemon=True).start()


def main():
    what = sys.argv[1]
    if what == "certs":
        certs(sys.argv[2])
    elif what == "serve":
        serve()
    elif what == "plain":
        raw(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    elif what == "silent":
        raw(None)


if __name__ == "__main__":
    main()
