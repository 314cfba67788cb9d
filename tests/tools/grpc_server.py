"""A real gRPC server for the grpc:// tests: Python's grpcio with the
standard health service (grpcio-health-checking), on a free port.

Prints `port N` when it is serving, then takes commands on stdin, one per
line, and answers each with `ok`:
  set SERVICE STATUS   SERVICE's status (`-` is the server's overall,
                       the empty name); STATUS: SERVING, NOT_SERVING, ...
  quit
With --no-health, the server has no health service at all (UNIMPLEMENTED).
With --record FILE, each call's metadata is appended to FILE as one line
(`key: value|key: value`); with --unix PATH it listens on that Unix socket
(and prints `port 0`). With --tls CERT KEY it serves TLS (grpcio's
ssl_server_credentials, PEM files), and with --client-ca CA as well, it
requires a client certificate signed by CA.
Everything grpcio logs goes to stderr (GRPC_VERBOSITY=debug there shows
connection errors, which the tests look for).
"""
import sys
from concurrent import futures

try:
    import grpc
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc
except ImportError:
    sys.exit(3)


class Recorder(grpc.ServerInterceptor):
    def __init__(self, path):
        self.path = path

    def intercept_service(self, continuation, details):
        with open(self.path, "a") as f:
            f.write("|".join(f"{k}: {v!r}" if isinstance(v, bytes) else f"{k}: {v}"
                             for k, v in details.invocation_metadata) + "\n")
        return continuation(details)


def option(name):
    return sys.argv[sys.argv.index(name) + 1] if name in sys.argv else None


def main():
    record = option("--record")
    interceptors = [Recorder(record)] if record else []
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), interceptors=interceptors)
    servicer = None
    if "--no-health" not in sys.argv:
        servicer = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
        servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    unix = option("--unix")
    tls = option("--tls")
    if unix:
        server.add_insecure_port("unix:" + unix)
        port = 0
    elif tls:
        cert = open(tls, "rb").read()
        key = open(sys.argv[sys.argv.index("--tls") + 2], "rb").read()
        client_ca = option("--client-ca")
        credentials = grpc.ssl_server_credentials(
            [(key, cert)],
            root_certificates=open(client_ca, "rb").read() if client_ca else None,
            require_client_auth=client_ca is not None)
        port = server.add_secure_port("127.0.0.1:0", credentials)
    else:
        port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(f"port {port}", flush=True)
    for line in sys.stdin:
        words = line.split()
        if not words or words[0] == "quit":
            break
        if words[0] == "set" and servicer is not None:
            name = "" if words[1] == "-" else words[1]
            servicer.set(name, health_pb2.HealthCheckResponse.ServingStatus.Value(words[2]))
        print("ok", flush=True)
    server.stop(0)


if __name__ == "__main__":
    main()
