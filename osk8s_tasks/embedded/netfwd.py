"""TCP forwarder into a network namespace: listeners on 127.0.0.1:<port> INSIDE a named netns (`ip netns`),
each connection forwarded to 127.0.0.1:<port> of the namespace this process runs in (the root one).

Why: the loopback OpenStack (osk8s_tasks/embedded/openstack) listens on 127.0.0.1 of this machine, and the URLs its
clouds.yaml and catalog hold are http://127.0.0.1:<port>. A node in its own network namespace (an sshd test
host, a pod of the pod runner) reaches them at those very URLs through this, as a real lab's nodes reach
the DevStack VM. OPENSTACK_PORTS are the services' ports (osk8s_tasks/embedded/openstack/services.py PORTS).

    fwd = Forwarder()
    fwd.start("o8r0", OPENSTACK_PORTS)      # or any ports
    fwd.status()                           # {"netns": "o8r0", "ports": [...], "connections": n, "errors": [...]}
    fwd.stop()

A listening socket is created by a thread that enters the namespace (setns(2) through libc: Python 3.11 has
no os.setns) and switches back at once: the socket stays in the namespace it was created in, and the
connection to 127.0.0.1:<port> is then made from this process's own namespace. The forwarder refuses to
listen anywhere but 127.0.0.1 of a namespace that is not its own (a namespace name that resolves to this
process's namespace is an error, not a loop onto the ports it forwards to).

    python -m osk8s_tasks.embedded.netfwd NETNS[,NETNS...] [PORT...] [--ready FILE]   # a process of its own
                                                    # (the embedded lab's nodes); default ports: OPENSTACK_PORTS
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path

CLONE_NEWNET = 0x40000000
OPENSTACK_PORTS = (5000, 8774, 8776, 8778, 9292, 9696, 9876)  # keystone nova cinder placement glance neutron octavia
LOOPBACK = "127.0.0.1"


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc().setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def netns_path(name: str) -> Path:
    if not name or "/" in name or name in (".", ".."):
        raise ValueError(f"bad network namespace name {name!r}")
    path = Path("/run/netns") / name
    if not path.exists():
        raise FileNotFoundError(f"no network namespace {name!r} (ip netns list)")
    return path


def join(netns: str) -> None:
    """Move the calling thread into the namespace for good (a thread dedicated to it: what it connects
    to, and the processes and threads it starts, are in the namespace)."""
    fd = os.open(netns_path(netns), os.O_RDONLY)
    try:
        _setns(fd)
    finally:
        os.close(fd)


def listen_in(netns: str, port: int, backlog: int = 64) -> socket.socket:
    """A TCP socket listening on 127.0.0.1:port inside the named namespace (made on a thread of its own,
    so no other thread of this process ever runs in the namespace)."""
    result: dict = {}
    path = netns_path(netns)

    def make():
        own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        target = os.open(path, os.O_RDONLY)
        try:
            if os.fstat(target).st_ino == os.fstat(own).st_ino:
                raise ValueError(f"network namespace {netns!r} is this process's own: refusing to listen here")
            _setns(target)
            try:
                if os.stat("/proc/thread-self/ns/net").st_ino != os.fstat(target).st_ino:
                    raise RuntimeError("setns did not take effect")
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind((LOOPBACK, port))
                s.listen(backlog)
                result["sock"] = s
            finally:
                _setns(own)
        except BaseException as e:  # handed to the caller's thread
            result["error"] = e
        finally:
            os.close(own)
            os.close(target)

    t = threading.Thread(target=make, name=f"netns-{netns}")
    t.start()
    t.join()
    if "error" in result:
        raise result["error"]
    sock = result["sock"]
    if sock.getsockname()[0] != LOOPBACK:
        sock.close()
        raise RuntimeError(f"listener not on {LOOPBACK}: {sock.getsockname()}")
    return sock


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass


class Forwarder:
    def __init__(self):
        self.netns: str | None = None
        self.listeners: dict[int, socket.socket] = {}
        self.threads: list[threading.Thread] = []
        self.connections = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()

    def start(self, netns: str, ports=OPENSTACK_PORTS) -> Forwarder:
        if self.listeners:
            raise RuntimeError(f"already forwarding into {self.netns}")
        self.netns, self._stop = netns, threading.Event()
        try:
            for port in ports:
                self.listeners[int(port)] = listen_in(netns, int(port))
        except BaseException:
            self.stop()
            raise
        for port, sock in self.listeners.items():
            t = threading.Thread(target=self._accept, args=(port, sock), daemon=True, name=f"netfwd-{netns}-{port}")
            t.start()
            self.threads.append(t)
        return self

    def _accept(self, port: int, sock: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                client, _ = sock.accept()
            except OSError:
                return
            try:  # made on this thread, which never left this process's namespace
                upstream = socket.create_connection((LOOPBACK, port), timeout=10)
                upstream.settimeout(None)
            except OSError as e:
                with self._lock:
                    self.errors.append(f"{port}: {e}")
                client.close()
                continue
            with self._lock:
                self.connections += 1
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pipe, args=(a, b), daemon=True).start()

    def status(self) -> dict:
        with self._lock:
            return {
                "netns": self.netns,
                "ports": sorted(self.listeners),
                "connections": self.connections,
                "errors": list(self.errors),
                "running": bool(self.listeners) and not self._stop.is_set(),
            }

    def stop(self) -> None:
        self._stop.set()
        for sock in self.listeners.values():
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        for t in self.threads:
            t.join(timeout=5)
        self.listeners, self.threads = {}, []


def serve(namespaces: list[str], ports, ready: Path | None = None) -> None:
    """Forward into each namespace until SIGTERM; `ready` is written once every listener exists
    (a launcher waits for it, so the first connection never races the listeners)."""
    forwarders = []
    try:
        for ns in namespaces:
            forwarders.append(Forwarder().start(ns, ports))
        if ready is not None:
            ready.write_text(f"{os.getpid()}\n")
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        while not stop.is_set():
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        for f in forwarders:
            f.stop()


if __name__ == "__main__":
    # python -m osk8s_tasks.embedded.netfwd NETNS[,NETNS...] [PORT...] [--ready FILE]
    args = sys.argv[1:]
    ready = None
    if "--ready" in args:
        i = args.index("--ready")
        ready, args = Path(args[i + 1]), args[:i] + args[i + 2 :]
    ports = [int(p) for p in args[1:]] or list(OPENSTACK_PORTS)
    print(f"forwarding 127.0.0.1:{ports} in {args[0]} to 127.0.0.1 here; SIGTERM or Ctrl-C stops", flush=True)
    serve(args[0].split(","), ports, ready)
