"""A real OpenStack control plane on 127.0.0.1 for the tests: Keystone, Glance (file store),
Placement, Nova (fake virt driver), Neutron (ML2, no agents), Cinder (fake driver) and Octavia
(noop amphora/compute drivers; VIP ports real in Neutron), with RabbitMQ, sqlite everywhere.

    python osk8s_tasks/embedded/openstack/loopback.py start|stop|status|errors
    python osk8s_tasks/embedded/openstack/loopback.py stop-service|start-service NAME   # e.g. nova (its API)

Nothing here is faked at the API: openstacksdk talks to the real services. Below the APIs, what
this machine cannot run is replaced by each project's own test drivers: nova's FakeDriver (no
VMs), a ten-line ML2 driver of ours (bindall/: binds every port, since no agents run here, so
servers on real networks go ACTIVE), cinder's FakeLoggingVolumeDriver,
octavia's noop drivers, and an Octavia network driver of ours (bindall/osk8s_octavia_vip.py: noop,
but each load balancer's VIP is a real Neutron port, as Octavia's allowed_address_pairs driver makes
it, so floating IPs can be bound to it as the cloud controllers do). Like DevStack, it creates
networks `public` (external), `private` and
`router1`, and writes clouds.yaml with clouds `admin` and `demo`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from services import (  # noqa: E402
    BASE,
    HERE,
    KS,
    PACKAGES,
    PORTS,
    VENV,
    cinder,
    glance,
    identity_data,
    keystone,
    log,
    networks,
    neutron,
    nova,
    octavia,
    placement,
    rabbitmq,
    rabbitmq_wait,
    spawn,
    v,
    wait_http,
)

# --- lifecycle -----------------------------------------------------------------------------------


def install() -> None:
    if not (VENV / "bin" / "octavia-worker").exists():
        log(f"pip install into {VENV} (about 75 s)")
        subprocess.run([sys.executable, "-m", "venv", VENV], check=True)
        subprocess.run([v("pip"), "install", "-q", *PACKAGES, "openstacksdk"], check=True)
    # the drivers below the APIs (bindall/): reinstalled whenever their source changes
    import hashlib

    digest = hashlib.sha256(
        b"".join(f.read_bytes() for f in sorted((HERE / "bindall").glob("*.py")))
        + (HERE / "bindall" / "pyproject.toml").read_bytes()
    ).hexdigest()[:16]
    marker = VENV / "bin" / ".osk8s-bindall"
    if not marker.exists() or marker.read_text() != digest:
        subprocess.run([v("pip"), "install", "-q", "--force-reinstall", "--no-deps", HERE / "bindall"], check=True)
        marker.write_text(digest)
    for site in VENV.glob("lib/python3*/site-packages"):  # copied every start: always this checkout's version
        shutil.copy(HERE / "sqlite_immediate.py", site / "osk8s_sqlite_immediate.py")
        (site / "osk8s_sqlite_immediate.pth").write_text("import osk8s_sqlite_immediate\n")


def pids() -> dict[str, int]:
    out = {}
    for f in (BASE / "run").glob("*.pid"):
        try:
            out[f.stem] = int(f.read_text())
        except ValueError:
            pass
    return out


def alive(pid: int, name: str | None = None) -> bool:
    """Is `pid` running, and still the service `name` started? The PID files outlive a reboot or a
    crash, and a PID may be reused by another process: that one is never counted, nor signalled by
    stop. The command line cannot tell (gunicorn and oslo.service retitle their processes); the
    start time can: ours started when its PID file was written (spawn writes it right after fork)."""
    try:
        state, ticks = _stat(pid)
    except OSError:
        return False
    if state == "Z":
        return False
    if name is None:
        return True
    try:
        written = (BASE / "run" / f"{name}.pid").stat().st_mtime
    except OSError:
        return False
    return abs(_boot_time() + ticks / os.sysconf("SC_CLK_TCK") - written) < 10


def _stat(pid: int) -> tuple[str, int]:
    """(state, start time in clock ticks since boot) from /proc/PID/stat (fields 3 and 22)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return fields[0], int(fields[19])


def _boot_time() -> float:
    return next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines() if line.startswith("btime"))


def start() -> None:
    if any(alive(p, n) for n, p in pids().items()):
        log("already running")
        return
    t0 = time.monotonic()
    install()
    if BASE.exists():
        shutil.rmtree(BASE)
    for sub in ("run", "log"):
        (BASE / sub).mkdir(parents=True)
    rabbitmq()
    keystone()
    wait_http(f"{KS}/v3")
    identity_data()
    rabbitmq_wait()
    for svc in (glance, placement, neutron, cinder, octavia):
        svc()
    nova()
    for svc in ("glance", "placement", "neutron", "cinder", "octavia", "nova"):
        wait_http(f"http://127.0.0.1:{PORTS[svc]}/")
    networks()
    wait_compute()
    wait_volume()
    log(f"ready in {time.monotonic() - t0:.0f} s; clouds.yaml: {BASE / 'clouds.yaml'}")


def wait_compute(timeout: float = 120) -> None:
    """The fake compute host registered and mapped to cell1 (the scheduler discovers it)."""
    import openstack

    admin = openstack.connect(cloud="admin")
    deadline = time.monotonic() + timeout
    while True:
        services = [s for s in admin.compute.services() if s.binary == "nova-compute" and s.state == "up"]
        hvs = list(admin.compute.hypervisors())
        if services and hvs:
            return
        if time.monotonic() > deadline:
            raise RuntimeError("nova-compute did not register")
        time.sleep(1)


def wait_volume(timeout: float = 60) -> None:
    """cinder-volume registered. Started beside cinder-api and the scheduler, it sometimes loses the
    race for the services table ("database is locked") and exits: then it is started once more."""
    import openstack

    admin = openstack.connect(cloud="admin")
    deadline, restarted = time.monotonic() + timeout, False
    while not any(s.binary == "cinder-volume" and s.state == "up" for s in admin.block_storage.services()):
        if not alive(pids().get("cinder-volume", 0), "cinder-volume") and not restarted:
            log("cinder-volume exited at start-up; starting it again")
            spawn("cinder-volume", [v("cinder-volume"), "--config-file", BASE / "cinder" / "cinder.conf"])
            restarted = True
        if time.monotonic() > deadline:
            raise RuntimeError("cinder-volume did not register (log/cinder-volume.log)")
        time.sleep(1)


def stop() -> None:
    """End what start() started, by PID (each service leads its own process group), and wait."""
    ours = {n: p for n, p in pids().items() if n != "rabbitmq" and alive(p, n)}
    for pid in ours.values():
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 20
    while any(alive(p, n) for n, p in ours.items()) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in (p for n, p in ours.items() if alive(p, n)):
        os.killpg(pid, signal.SIGKILL)
    d = BASE / "rabbitmq"
    if (d / "env.sh").exists():
        subprocess.run(
            ["su", "rabbitmq", "-s", "/bin/bash", "-c", f". {d}/env.sh; /usr/lib/rabbitmq/bin/rabbitmqctl -q stop"],
            capture_output=True,
        )
        subprocess.run(["su", "rabbitmq", "-s", "/bin/bash", "-c", "epmd -kill"], capture_output=True)
    for f in (BASE / "run").glob("*.pid"):
        f.unlink()
    log("stopped")


def stop_service(name: str) -> None:
    """End one service (its process group), leaving the cloud's data in place: what a crash of
    that service looks like to a client in the middle of a run."""
    pid = pids().get(name)
    if pid is None or not (BASE / "run" / f"{name}.cmd").exists():
        raise SystemExit(f"no service {name!r} (known: {', '.join(sorted(pids()))})")
    if alive(pid, name):
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while alive(pid, name) and time.monotonic() < deadline:
            time.sleep(0.1)
        if alive(pid, name):
            os.killpg(pid, signal.SIGKILL)
    log(f"{name} stopped")


def start_service(name: str) -> None:
    """Start one stopped service again with the command line it was first started with."""
    if alive(pids().get(name, 0), name):
        log(f"{name} already running")
        return
    port = PORTS.get(name)
    if port and _answers(port):  # a second server could not bind, and would leave the first unknown
        raise SystemExit(f"{name}: 127.0.0.1:{port} is served by a process this cloud does not know: not starting another")
    spec = json.loads((BASE / "run" / f"{name}.cmd").read_text())
    spawn(name, spec["cmd"], spec["env"])
    if port:
        wait_http(f"http://127.0.0.1:{port}/")
        if not alive(pids()[name], name):
            raise SystemExit(f"{name} exited after it was started again (log/{name}.out)")
    log(f"{name} started again")


def _answers(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def errors(limit: int = 15) -> None:
    """The exceptions the services logged, most frequent first: what a failed CI run shows, since
    the logs themselves go with the machine."""
    import collections
    import re

    seen: collections.Counter = collections.Counter()
    pattern = re.compile(r" ERROR (\S+) ((?:\w+\.)*\w+(?:Error|Exception|Failure)\b.*)")
    for f in sorted((BASE / "log").glob("*.log")):
        for line in f.read_text(errors="replace").splitlines():
            if m := pattern.search(line):
                seen[f"{f.stem}: {m.group(1)}: {m.group(2)[:160]}"] += 1
    for what, n in seen.most_common(limit):
        print(f"{n:5}  {what}")
    if not seen:
        print("no exceptions in the services' logs")


def status() -> int:
    running = {n: p for n, p in pids().items() if alive(p, n)}
    for name, pid in sorted(pids().items()):
        print(f"{name:16} {'running' if name in running else 'stopped'} (pid {pid})")
    return 0 if running else 3


if __name__ == "__main__":
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "start":
        start()
    elif cmd == "stop":
        stop()
    elif cmd == "errors":
        errors()
    elif cmd == "status":
        sys.exit(status())
    elif cmd in ("stop-service", "start-service") and len(sys.argv) == 3:
        (stop_service if cmd == "stop-service" else start_service)(sys.argv[2])
    else:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        sys.exit(2)
