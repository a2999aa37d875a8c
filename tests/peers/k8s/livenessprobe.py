"""A stand-in for the CSI livenessprobe sidecar (registry.k8s.io/sig-storage/livenessprobe), run by
the pod runner in its place because the program cannot be built here: its Go module has v2 tags
without a /v2 path, and the module proxy serves neither its tags nor their commits (see README).

It follows upstream's code, kubernetes-csi/livenessprobe v2.17.0 cmd/livenessprobe/main.go and
csi-lib-utils rpc (GetDriverName, Probe), over real gRPC to the real cinder-csi-plugin:
- at start it connects to --csi-address (retrying until the driver listens: "liveness probe never
  crashes") and asks Identity/GetPluginInfo for the driver name; a driver that answers without a
  name, or with an error, stops it (exit 1), as upstream;
- then it serves GET /healthz on 0.0.0.0:--health-port (or --http-endpoint): each request makes a
  new connection and an Identity/Probe call within --probe-timeout; 200 `ok` when ready (a reply
  without `ready` counts as ready, as rpc.Probe), 500 with the error otherwise.
Flags upstream does not define are refused (Go's flag package exits 2 on them)."""

from __future__ import annotations

import argparse
import http.server
import sys

import grpc

IDENTITY = "/csi.v1.Identity/"


def _fields(data: bytes) -> dict[int, list]:
    """A protobuf message's fields (varint and length-delimited only: what these replies use)."""
    out: dict[int, list] = {}
    i = 0
    while i < len(data):
        key, i = _varint(data, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(data, i)
        elif wire == 2:
            n, i = _varint(data, i)
            value, i = data[i : i + n], i + n
        else:
            raise ValueError(f"unexpected wire type {wire}")
        out.setdefault(number, []).append(value)
    return out


def _varint(data: bytes, i: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        b = data[i]
        i += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, i
        shift += 7


def call(address: str, method: str, timeout: float | None) -> bytes:
    target = address if address.startswith("unix:") else f"unix://{address}"
    with grpc.insecure_channel(target) as channel:
        rpc = channel.unary_unary(IDENTITY + method, request_serializer=lambda _: b"", response_deserializer=bytes)
        return rpc(None, timeout=timeout, wait_for_ready=timeout is None)


def driver_name(address: str) -> str:
    """rpc.GetDriverName: GetPluginInfoResponse.name (field 1); empty is an error."""
    name = _fields(call(address, "GetPluginInfo", None)).get(1, [b""])[0].decode()
    if not name:
        raise RuntimeError("driver name is empty")
    return name


def probe(address: str, timeout: float) -> bool:
    """rpc.Probe: ProbeResponse.ready is a BoolValue (field 1, its value field 1); unset means ready."""
    ready = _fields(call(address, "Probe", timeout)).get(1)
    if not ready:
        return True
    return bool(_fields(ready[0]).get(1, [0])[0])


def duration(text: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    for suffix in ("ms", "s", "m", "h"):
        if text.endswith(suffix) and text[: -len(suffix)].replace(".", "", 1).isdigit():
            return float(text[: -len(suffix)]) * units[suffix]
    raise argparse.ArgumentTypeError(f"invalid duration {text!r}")


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="livenessprobe", allow_abbrev=False)
    p.add_argument("--probe-timeout", type=duration, default=3.0)
    p.add_argument("--csi-address", default="/run/csi/socket")
    p.add_argument("--health-port", default="9808")
    p.add_argument("--metrics-address", default="")
    p.add_argument("--http-endpoint", default="")
    p.add_argument("--metrics-path", default="/metrics")
    p.add_argument("--v", "-v", default="0")  # klog verbosity, accepted as upstream's logging flags
    args = p.parse_args(argv)
    if args.health_port != "9808" and args.http_endpoint:
        print("Only one of `--health-port` and `--http-endpoint` can be explicitly set", file=sys.stderr)
        return 1
    if args.metrics_address and args.http_endpoint:
        print("Only one of `--metrics-address` and `--http-endpoint` can be explicitly set", file=sys.stderr)
        return 1
    print("Calling CSI driver to discover driver name", flush=True)
    try:
        name = driver_name(args.csi_address)  # waits for the driver to listen
    except (grpc.RpcError, RuntimeError, ValueError) as exc:
        print(f"Failed to get CSI driver name: {exc}", file=sys.stderr, flush=True)
        return 1
    print(f'CSI driver name driver="{name}"', flush=True)

    class Health(http.server.BaseHTTPRequestHandler):
        def log_message(self, *_):
            pass

        def do_GET(self):
            if self.path != "/healthz":
                self.send_error(404)
                return
            try:
                code, body = (
                    (200, b"ok")
                    if probe(args.csi_address, args.probe_timeout)
                    else (500, b"driver responded but is not ready")
                )
            except (grpc.RpcError, ValueError) as exc:
                code, body = 500, str(exc).encode()
                print(f"Health check failed: {exc}", file=sys.stderr, flush=True)
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    host, _, port = args.http_endpoint.rpartition(":") if args.http_endpoint else ("0.0.0.0", "", args.health_port)

    class Server(http.server.ThreadingHTTPServer):
        def server_bind(self):  # no reverse DNS lookup of the bound address (HTTPServer does one)
            self.socket.bind(self.server_address)
            self.server_name, self.server_port = self.server_address[:2]

    server = Server((host or "0.0.0.0", int(port)), Health)
    print(f'ServeMux listening address="{host or "0.0.0.0"}:{port}"', flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
