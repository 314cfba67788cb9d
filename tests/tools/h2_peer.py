"""A scripted HTTP/2 server for the grpc:// and h2c:// tests: one connection, one
scenario, the frames written by hand (hpack's encoder for header blocks),
for what a real gRPC server rarely sends.

    h2_peer.py SCENARIO

Prints `port N`, serves one connection as SCENARIO says, reads what the
client sends until it closes (5 s at most), then prints what it saw, one
fact per line (`client-goaway 0`, `ping-acked`, `data-frames 2`, ...),
and `error WHY` for each thing the client did wrong. Exits 3 when the
Python packages are missing (pip install h2, which brings hpack).
"""
import socket
import struct
import sys
import time

try:
    from hpack import Decoder, Encoder
except ImportError:
    sys.exit(3)

DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS = 0, 1, 2, 3, 4
PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = 6, 7, 8, 9
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def frame(kind, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def settings(**values):
    ids = {"initial_window": 4, "max_frame": 5, "header_table": 1}
    return frame(SETTINGS, 0, 0, b"".join(struct.pack(">HI", ids[k], v) for k, v in values.items()))


def health(status):
    """A HealthCheckResponse with gRPC's prefix."""
    message = bytes([0x08, status])
    return b"\0" + struct.pack(">I", len(message)) + message


class Peer:
    def __init__(self, conn):
        self.conn = conn
        self.buffer = b""
        self.facts = []
        self.data = b""
        self.data_frames = []
        self.ended = False  # the client's END_STREAM
        self.encoder = Encoder()
        self.decoder = Decoder()

    def send(self, *frames):
        self.conn.sendall(b"".join(frames))

    def block(self, headers):
        return self.encoder.encode(headers)

    def read_frame(self, timeout=5.0):
        """The client's next frame, as (kind, flags, stream, payload), or None."""
        self.conn.settimeout(timeout)
        while len(self.buffer) < 9 or len(self.buffer) < 9 + int.from_bytes(self.buffer[:3], "big"):
            try:
                chunk = self.conn.recv(65536)
            except socket.timeout:
                return "timeout"
            except ConnectionResetError:
                self.facts.append("error client reset the connection")
                return None
            if not chunk:
                return None
            self.buffer += chunk
        length = int.from_bytes(self.buffer[:3], "big")
        kind, flags = self.buffer[3], self.buffer[4]
        stream = int.from_bytes(self.buffer[5:9], "big") & 0x7FFFFFFF
        payload, self.buffer = self.buffer[9 : 9 + length], self.buffer[9 + length :]
        self.note(kind, flags, stream, payload)
        return kind, flags, stream, payload

    def note(self, kind, flags, stream, payload):
        if kind == DATA:
            self.data += payload
            self.data_frames.append(len(payload))
            if flags & 1:
                self.ended = True
        elif kind == PING and flags & 1:
            self.facts.append("ping-acked " + payload.hex())
        elif kind == GOAWAY:
            self.facts.append("client-goaway %d" % int.from_bytes(payload[4:8], "big"))
        elif kind == SETTINGS and flags & 1:
            self.facts.append("settings-acked")
        elif kind == RST_STREAM:
            self.facts.append("client-reset")
        elif kind == HEADERS:
            if flags & 1:
                self.ended = True  # a request without a body (h2c's GET)
            for name, value in self.decoder.decode(payload):
                self.facts.append("request-header %s: %s" % (name, value))

    def preface(self, *server_settings):
        """Reads the client's preface; sends our SETTINGS."""
        self.conn.settimeout(5.0)
        while len(self.buffer) < len(PREFACE):
            chunk = self.conn.recv(65536)
            if not chunk:
                self.facts.append("error no preface")
                return
            self.buffer += chunk
        if not self.buffer.startswith(PREFACE):
            self.facts.append("error bad preface")
        self.buffer = self.buffer[len(PREFACE) :]
        self.send(*(server_settings or [settings()]))

    def until_request(self, timeout=5.0):
        """Reads frames until the request's body has ended."""
        while not self.ended:
            got = self.read_frame(timeout)
            if got is None or got == "timeout":
                self.facts.append("error the request did not end")
                return

    def answer(self, status=1, split=1, trailers_extra=()):
        """A whole gRPC answer: HEADERS, DATA, trailers."""
        headers = self.block([(":status", "200"), ("content-type", "application/grpc"), ("x-same", "value")])
        self.send(frame(HEADERS, 4, 1, headers))
        self.send(frame(DATA, 0, 1, health(status)))
        trailers = self.block([("x-same", "value"), ("grpc-status", "0")] + list(trailers_extra))
        self.send(frame(HEADERS, 4 | 1, 1, trailers))

    def finish(self):
        """Reads until the client closes, then reports."""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            got = self.read_frame(max(0.01, deadline - time.monotonic()))
            if got is None:
                break
        self.facts.append("data-frames %s" % ",".join(map(str, self.data_frames)))
        self.facts.append("request-message %d" % max(0, len(self.data) - 5))
        if len(self.data) > 7 and len(self.data) < 100:
            self.facts.append("request-service %s" % self.data[7:].decode())
        print("\n".join(self.facts), flush=True)


def scenario(peer, name):
    if name == "serving":
        # Huffman everywhere (hpack's default), a dynamic table size update
        # first, and the trailers name an entry the headers added to the
        # dynamic table.
        peer.preface()
        peer.until_request()
        peer.encoder.header_table_size = 2048
        peer.answer()
    elif name == "chatty":
        # Answers, then talks on (PINGs) for 4 s, whatever the client does.
        peer.preface()
        peer.until_request()
        peer.answer()
        end = time.monotonic() + 4
        while time.monotonic() < end:
            peer.send(frame(PING, 0, 0, b"chatchat"))
            time.sleep(0.001)
    elif name == "not-serving":
        peer.preface()
        peer.until_request()
        peer.answer(status=2)
    elif name == "continuation":
        peer.preface()
        peer.until_request()
        block = peer.block([(":status", "200"), ("content-type", "application/grpc"), ("x-long", "y" * 300)])
        third = len(block) // 3
        peer.send(
            frame(HEADERS, 0, 1, block[:third]),
            frame(CONTINUATION, 0, 1, block[third : 2 * third]),
            frame(CONTINUATION, 4, 1, block[2 * third :]),
            frame(DATA, 0, 1, health(1)),
            frame(HEADERS, 5, 1, peer.block([("grpc-status", "0")])),
        )
    elif name == "padded-priority":
        peer.preface()
        peer.until_request()
        block = peer.block([(":status", "200"), ("content-type", "application/grpc+proto")])
        # HEADERS with PADDED and PRIORITY: pad length, 5 priority bytes, block, padding.
        payload = bytes([7]) + struct.pack(">IB", 0, 15) + block + b"\0" * 7
        data = bytes([200]) + health(1) + b"\0" * 200
        peer.send(
            frame(PRIORITY, 0, 1, struct.pack(">IB", 0, 31)),
            frame(HEADERS, 4 | 8 | 0x20, 1, payload),
            frame(DATA, 8, 1, data),
            frame(HEADERS, 5, 1, peer.block([("grpc-status", "0")])),
        )
    elif name == "trailers-only":
        peer.preface()
        peer.until_request()
        block = peer.block(
            [(":status", "200"), ("content-type", "application/grpc"), ("grpc-status", "12"),
             ("grpc-message", "Method%20not%20found!")]
        )
        peer.send(frame(HEADERS, 5, 1, block))
    elif name == "ping-first":
        peer.preface()
        peer.send(frame(PING, 0, 0, b"pingpong"))
        peer.until_request()
        # Answer only once the PING is acknowledged.
        while not any(f.startswith("ping-acked") for f in peer.facts):
            if peer.read_frame() in (None, "timeout"):
                peer.facts.append("error no PING ACK")
                return
        peer.answer()
    elif name == "small-frames":
        # The least frame size a server may ask for, and a small window
        # on the connection: the client's long request must fit both.
        peer.preface(settings(max_frame=16384))
        peer.send(frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 100000)), frame(WINDOW_UPDATE, 0, 1, struct.pack(">I", 100000)))
        peer.until_request()
        if max(peer.data_frames) > 16384:
            peer.facts.append("error a DATA frame over 16384")
        peer.answer()
    elif name == "bad-max-frame":
        peer.preface(settings(max_frame=100))
    elif name == "zero-window":
        peer.preface(settings(initial_window=0))
        # Nothing may come while the window is shut.
        if peer.read_frame(0.3) not in ("timeout",) or peer.data_frames:
            if peer.data_frames:
                peer.facts.append("error DATA sent into a zero window")
        peer.send(frame(WINDOW_UPDATE, 0, 1, struct.pack(">I", 3)))
        while sum(peer.data_frames) < 3:
            if peer.read_frame() in (None, "timeout"):
                peer.facts.append("error no DATA after the window opened")
                return
        if peer.read_frame(0.3) != "timeout" and sum(peer.data_frames) > 3:
            peer.facts.append("error DATA past the window")
        peer.facts.append("first-data %d" % sum(peer.data_frames))
        peer.send(frame(WINDOW_UPDATE, 0, 1, struct.pack(">I", 1000)))
        peer.until_request()
        peer.answer()
    elif name == "rst":
        peer.preface()
        peer.until_request()
        peer.send(frame(RST_STREAM, 0, 1, struct.pack(">I", 7)))
    elif name == "goaway":
        peer.preface()
        peer.until_request()
        peer.send(frame(GOAWAY, 0, 0, struct.pack(">II", 0, 11) + b"too_many_pings"))
    elif name == "goaway-then-answer":
        # A graceful shutdown: our stream (1) will still be answered.
        peer.preface()
        peer.until_request()
        peer.send(frame(GOAWAY, 0, 0, struct.pack(">II", 1, 0)))
        peer.answer()
    elif name == "short-frame":
        # A DATA frame that announces 100 bytes, then the connection ends.
        peer.preface()
        peer.until_request()
        headers = peer.block([(":status", "200"), ("content-type", "application/grpc")])
        peer.send(frame(HEADERS, 4, 1, headers), frame(DATA, 0, 1, b"x" * 100)[:9 + 10])
        peer.conn.shutdown(socket.SHUT_WR)
    elif name == "oversized-frame":
        # A frame over the 16384 bytes the client's SETTINGS allow.
        peer.preface()
        peer.until_request()
        headers = peer.block([(":status", "200"), ("content-type", "application/grpc")])
        peer.send(frame(HEADERS, 4, 1, headers), frame(DATA, 0, 1, b"x" * 20000))
    elif name == "huge-headers":
        # 40 KiB of header block in CONTINUATIONs, never ending.
        peer.preface()
        peer.until_request()
        block = peer.block([(":status", "200"), ("x-pad", "p" * 8000)])
        peer.send(frame(HEADERS, 0, 1, block))
        for _ in range(5):
            peer.send(frame(CONTINUATION, 0, 1, peer.block([("x-pad%d" % _, "q" * 8000)])))
    elif name == "big-message":
        peer.preface()
        peer.until_request()
        headers = peer.block([(":status", "200"), ("content-type", "application/grpc")])
        message = b"\x08\x01" + b"\x12\x90\x28" + b"z" * 5136
        peer.send(frame(HEADERS, 4, 1, headers), frame(DATA, 0, 1, b"\0" + struct.pack(">I", len(message)) + message))
    elif name == "status-404":
        peer.preface()
        peer.until_request()
        peer.send(frame(HEADERS, 5, 1, peer.block([(":status", "404"), ("content-type", "text/html")])))
    elif name == "not-grpc":
        peer.preface()
        peer.until_request()
        peer.send(frame(HEADERS, 5, 1, peer.block([(":status", "200"), ("content-type", "text/html")])))
    elif name == "status-in-headers":
        # grpc-status in headers that DATA follows, and no trailers: grpc-go
        # fails it ("server closed the stream without sending trailers").
        peer.preface()
        peer.until_request()
        headers = peer.block([(":status", "200"), ("content-type", "application/grpc"), ("grpc-status", "0")])
        peer.send(frame(HEADERS, 4, 1, headers), frame(DATA, 1, 1, health(1)))
    elif name == "two-grpc-statuses":
        # Trailers with grpc-status 0 and then 14 (grpc-go takes the last).
        peer.preface()
        peer.until_request()
        peer.answer(trailers_extra=[("grpc-status", "14")])
    elif name == "two-http-statuses":
        peer.preface()
        peer.until_request()
        headers = peer.block([(":status", "200"), (":status", "503"), ("content-type", "application/grpc")])
        peer.send(frame(HEADERS, 4, 1, headers), frame(DATA, 0, 1, health(1)))
        peer.send(frame(HEADERS, 5, 1, peer.block([("grpc-status", "0")])))
    elif name == "two-content-types":
        peer.preface()
        peer.until_request()
        headers = peer.block([(":status", "200"), ("content-type", "application/grpc"), ("content-type", "text/html")])
        peer.send(frame(HEADERS, 4, 1, headers), frame(DATA, 0, 1, health(1)))
        peer.send(frame(HEADERS, 5, 1, peer.block([("grpc-status", "0")])))
    elif name == "two-messages":
        peer.preface()
        peer.until_request()
        headers = peer.block([(":status", "200"), ("content-type", "application/grpc")])
        peer.send(frame(HEADERS, 4, 1, headers), frame(DATA, 0, 1, health(1)), frame(DATA, 0, 1, health(1)))
        peer.send(frame(HEADERS, 5, 1, peer.block([("grpc-status", "0")])))
    elif name == "message-after-trailers":
        # A whole SERVING answer, then DATA on the closed stream: grpc-go
        # has its status by then and drops the frame; so do we.
        peer.preface()
        peer.until_request()
        peer.answer()
        peer.send(frame(DATA, 0, 1, health(2)))
    elif name == "no-message":
        peer.preface()
        peer.until_request()
        headers = peer.block([(":status", "200"), ("content-type", "application/grpc")])
        peer.send(frame(HEADERS, 4, 1, headers), frame(HEADERS, 5, 1, peer.block([("grpc-status", "0")])))
    elif name == "escape-message":
        # A grpc-message that decodes to ESC [ 3 1 m, BEL and NUL.
        peer.preface()
        peer.until_request()
        block = peer.block(
            [(":status", "200"), ("content-type", "application/grpc"), ("grpc-status", "14"),
             ("grpc-message", "%1B[31mred%07%00end caf%C3%A9")]
        )
        peer.send(frame(HEADERS, 5, 1, block))
    elif name == "garbage":
        peer.conn.sendall(b"\x00\x00\x05\x01\x00\x00\x00\x00\x01hello, this is no preface")
    elif name == "http1":
        peer.conn.recv(65536)
        peer.conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        peer.conn.shutdown(socket.SHUT_WR)
    elif name == "silent":
        time.sleep(3)
    elif name == "settings-then-silent":
        # Ready (its preface sent), then no answer.
        peer.preface()
        time.sleep(4)
    elif name.startswith("h2c-status:"):
        # An h2c:// answer of only its headers, with this :status as written.
        peer.preface()
        peer.until_request()
        peer.send(frame(HEADERS, 5, 1, peer.block([(":status", name.split(":", 1)[1])])))
    else:
        sys.exit("unknown scenario " + name)


def main():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    if sys.argv[1] == "backlog-full":
        # A listener whose queue is full: the kernel drops new SYNs, so a
        # connect hangs until its deadline.
        listener.listen(0)
        fillers = [socket.socket() for _ in range(3)]
        for filler in fillers:
            filler.setblocking(False)
            filler.connect_ex(listener.getsockname())
        time.sleep(0.1)
        print("port %d" % listener.getsockname()[1], flush=True)
        time.sleep(5)
        return
    listener.listen(1)
    print("port %d" % listener.getsockname()[1], flush=True)
    conn, _ = listener.accept()
    peer = Peer(conn)
    try:
        scenario(peer, sys.argv[1])
    except (BrokenPipeError, ConnectionResetError) as e:
        if sys.argv[1] != "chatty":
            peer.facts.append("error %s" % e)
    peer.finish()


if __name__ == "__main__":
    main()
