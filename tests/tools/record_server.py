"""A recording HTTP server for the check-option tests: Python's http.server
(HTTP/1.1), or the `h2` library's server for h2c (HTTP/2 with prior
knowledge), on a free TCP port or a Unix socket.

    record_server.py http|h2c LOG [--unix PATH]

Prints `port N` (0 with --unix) when it listens. Every request is logged
to LOG as one line: `METHOD PATH|name: value|name: value...`, with the
header names as they came. Answers by path:
  /ok         200 "all good here"
  /204        204, no body
  /404        404 "missing"
  /moved      301 to /ok
  /found-404  302 to /404
  /big        200, 20 KiB: "marker" at 5 KiB and "late" at 15 KiB
  anything else 200 "other"
Exits 3 when the h2 package is missing (pip install h2).
"""
import os
import socket
import socketserver
import sys
import threading
from http.server import BaseHTTPRequestHandler

BIG = b"x" * 5120 + b"marker" + b"y" * 10240 + b"late" + b"z" * 5000


def answer(path):
    if path == "/ok":
        return 200, [], b"all good here"
    if path == "/204":
        return 204, [], b""
    if path == "/404":
        return 404, [], b"missing"
    if path == "/moved":
        return 301, [("location", "/ok")], b""
    if path == "/found-404":
        return 302, [("location", "/404")], b""
    if path == "/big":
        return 200, [], BIG
    return 200, [], b"other"


def record(log, method, path, headers):
    with open(log, "a") as f:
        f.write("|".join([f"{method} {path}"] + [f"{n}: {v}" for n, v in headers]) + "\n")


def serve_each(listener, handle):
    """Each connection on a thread of its own, closed when it is done (not
    held open by this loop until the next one comes)."""
    def serve(conn):
        try:
            handle(conn)
        finally:
            conn.close()

    while True:
        conn, _ = listener.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()
        del conn


def serve_http(listener, log):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def address_string(self):
            return "client"

        def do_GET(self):
            record(log, "GET", self.path, self.headers.items())
            status, extra, body = answer(self.path)
            self.send_response(status)
            for name, value in extra:
                self.send_header(name, value)
            if status != 204:
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    serve_each(listener, lambda conn: Handler(conn, ("client", 0), None))


def serve_h2c(listener, log):
    import h2.config
    import h2.connection
    import h2.events

    def one(conn):
        config = h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        h2conn = h2.connection.H2Connection(config=config)
        h2conn.initiate_connection()
        conn.sendall(h2conn.data_to_send())
        while True:
            data = conn.recv(65536)
            if not data:
                return
            try:
                events = h2conn.receive_data(data)
            except Exception as e:  # a protocol error is the test's to see
                record(log, "ERROR", str(e), [])
                return
            for event in events:
                if isinstance(event, h2.events.RequestReceived):
                    headers = list(event.headers)
                    path = dict(headers).get(":path", "")
                    record(log, dict(headers).get(":method", ""), path, headers)
                    status, extra, body = answer(path)
                    h2conn.send_headers(event.stream_id, [(":status", str(status))] + extra,
                                        end_stream=not body)
                    if body:
                        # Within the windows: what fits now, the rest dropped
                        # (the client stops reading at 10 KiB anyway).
                        room = min(h2conn.local_flow_control_window(event.stream_id), len(body))
                        chunk = body[:room]
                        while chunk:
                            size = min(len(chunk), h2conn.max_outbound_frame_size)
                            h2conn.send_data(event.stream_id, chunk[:size],
                                             end_stream=(len(chunk) == size and room == len(body)))
                            chunk = chunk[size:]
            out = h2conn.data_to_send()
            if out:
                conn.sendall(out)

    serve_each(listener, one)


def main():
    mode, log = sys.argv[1], sys.argv[2]
    if mode == "h2c":
        try:
            import h2.connection  # noqa: F401
        except ImportError:
            sys.exit(3)
    if "--unix" in sys.argv:
        path = sys.argv[sys.argv.index("--unix") + 1]
        listener = socket.socket(socket.AF_UNIX)
        listener.bind(path)
        port = 0
    else:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
    listener.listen(64)
    print(f"port {port}", flush=True)
    (serve_h2c if mode == "h2c" else serve_http)(listener, log)


if __name__ == "__main__":
    main()
