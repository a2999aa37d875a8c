"""The embedded lab's machines as converging steps (lab.kind: embedded): the Kubernetes programs
built from their Go modules, the loopback OpenStack control plane, and the simulated nodes behind
their gateway; after openstack.deploy, each node holds its Nova server's fixed IP. embedded.down
undoes each part, and only what this lab started.

Each check reads the real state (the build cache, the services' PIDs and ports, nodes.json with
the PIDs and network namespaces it names); a dry run reports, a real run acts and checks again.
"""

from __future__ import annotations

import fcntl
import json
import os
import stat
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

from osk8s_tasks.core.embedded import EMBEDDED_CLOUDS_YAML, EMBEDDED_RUN
from osk8s_tasks.core.engine import Status, Step, StepFailed
from osk8s_tasks.embedded import build
from osk8s_tasks.embedded.netfwd import OPENSTACK_PORTS
from osk8s_tasks.embedded.nodes import NodesConfig, NodesLab
from osk8s_tasks.embedded.simnodes import CONTROL_PLANE, RUNNER
from osk8s_tasks.embedded.sshd import empty_namespace

LOOPBACK = Path(__file__).resolve().parent / "openstack" / "loopback.py"
PREFIX = "o8e"  # network namespaces o8e0 (gateway), o8e1 (control plane), o8e2...: one embedded lab per machine
STARTED_MARK = "embedded-cloud-started"  # in the lab's state: embedded.up started the loopback cloud
PROGRAMS = (*CONTROL_PLANE, *RUNNER)


def private(path: Path) -> Path | None:
    """The first of `path` and its parents that other users cannot enter or run, or None."""
    for p in (path, *path.parents):
        if not p.stat().st_mode & stat.S_IXOTH:
            return p
    return None


def programs_step(s) -> Step:
    def built() -> dict[str, Path | None]:
        try:
            paths = {b: p for bs in build.status().values() for b, p in bs.items()}
        except FileNotFoundError as exc:  # no go command: the cache keys include its version
            raise StepFailed(
                f"the Kubernetes programs are built with Go, and there is none ({exc.filename}). Fix: install Go 1.26 "
                "(the tarball into /usr/local/go, or put `go` on PATH); the builds also need GOPROXY reachable"
            ) from None
        return {b: paths.get(b) for b in PROGRAMS}

    def check() -> Status:
        todo = [b for b, p in built().items() if p is None]
        if todo:
            return Status(
                False,
                f"{len(todo)} Kubernetes programs to build from their Go modules ({', '.join(todo[:3])}"
                f"{'...' if len(todo) > 3 else ''}; about 12 minutes on 2 cores the first time, cached in {build.CACHE})",
            )
        closed = next((c for p in built().values() if (c := private(p))), None)
        if closed:
            return Status(False, f"{closed} is private: the nodes' login user cannot run the programs; open the cache to it")
        return Status(True, f"{len(PROGRAMS)} Kubernetes programs built (cache {build.CACHE})")

    def apply() -> None:
        if build.CACHE.exists():  # a cache built under a private umask by an older osk8s
            os.chmod(build.CACHE, os.stat(build.CACHE).st_mode | 0o055)
            subprocess.run(["chmod", "-R", "go+rX", str(build.CACHE / "bin")], check=False)
        try:
            build.ensure(PROGRAMS)
        except (RuntimeError, OSError, subprocess.CalledProcessError) as exc:
            raise StepFailed(
                f"building the Kubernetes programs failed: {exc}. Fix: Go 1.26 and the Go module proxy "
                "(GOPROXY) must be reachable; `python -m osk8s_tasks.embedded.build` shows the build's output"
            ) from None

    return Step("Kubernetes programs", check, apply)


def cloud_services() -> dict[str, tuple[str, int]]:
    """{service: (running | stopped, pid)} of the loopback OpenStack ({} when it never ran here)."""
    out = subprocess.run([sys.executable, str(LOOPBACK), "status"], capture_output=True, text=True).stdout
    services = {}
    for line in out.splitlines():  # "keystone         running (pid 123)"
        w = line.replace("(pid", "").replace(")", "").split()
        if len(w) >= 3 and w[2].isdigit():
            services[w[0]] = (w[1], int(w[2]))
    return services


def started_here(mark: Path, services: dict) -> bool:
    """Did embedded.up start the running loopback OpenStack? Its mark holds keystone's PID then
    ("starting" while a start is under way, so a start that failed half-way is still ours to stop);
    a cloud started since by anyone else has another keystone PID."""
    try:
        text = mark.read_text().split()
    except OSError:
        return False
    if text[:1] == ["starting"]:
        return True
    keystone = services.get("keystone")
    return text[:1] == ["keystone"] and keystone is not None and str(keystone[1]) == text[1]


def cloud_step(s) -> Step:
    mark = s.settings.lab_dir / STARTED_MARK

    def check() -> Status:
        services = cloud_services()
        stopped = sorted(n for n, (st, _) in services.items() if st != "running")
        if services and not stopped:
            return Status(True, f"the loopback OpenStack runs ({len(services)} services; {EMBEDDED_CLOUDS_YAML})")
        if stopped and len(stopped) < len(services):
            return Status(False, f"the loopback OpenStack runs without {', '.join(stopped)}: start those again")
        return Status(False, "the loopback OpenStack is not running: start it (the first start installs it from PyPI)")

    def apply() -> None:
        services = cloud_services()
        running = [n for n, (st, _) in services.items() if st == "running"]
        if running:  # start only the stopped services: a whole start would wipe the cloud's data
            for name in sorted(n for n, (st, _) in services.items() if st != "running"):
                _loopback("start-service", name)
            return
        mark.write_text("starting\n")
        _loopback("start")
        mark.write_text(f"keystone {cloud_services()['keystone'][1]}\n")

    return Step("loopback OpenStack", check, apply)


def _loopback(*command: str) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # its progress lines as they happen (a first start takes minutes)
    r = subprocess.run([sys.executable, str(LOOPBACK), *command], stdout=sys.stderr, stderr=sys.stderr, env=env)
    if r.returncode:
        raise StepFailed(
            f"loopback OpenStack {' '.join(command)} failed (exit {r.returncode}). Fix: read its service logs under "
            f"{EMBEDDED_CLOUDS_YAML.parent}/log, then `inv embedded.down` and `inv embedded.up`"
        )


def _others(s) -> list[str]:
    """Embedded labs of other names on this machine (running or left broken): their namespaces are
    the same o8e* ones, so one would end the other's processes."""
    mine = s.settings.embedded_dir
    netns = set(subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split())
    out = []
    for state in EMBEDDED_RUN.glob("*/nodes.json"):
        if state.parent == mine:
            continue
        other = NodesLab.attach(state.parent)
        # gone entirely (no namespace, no process: a reboot or a killed run left only files): no clash
        if other is None or {h.netns for h in other.hosts.hosts} & netns or len(other.problems()) < len(other.hosts.hosts):
            out.append(state.parent.name)
    return sorted(out)


@contextmanager
def machine_lock():
    """One embedded-lab start or stop at a time on this machine (two would race for o8e*)."""
    EMBEDDED_RUN.mkdir(mode=0o755, parents=True, exist_ok=True)
    with open(EMBEDDED_RUN / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def remove_namespaces() -> None:
    """Every o8e* namespace and what runs in it, when no readable nodes.json says which are ours
    (an interrupted start, a file of another osk8s version): one embedded lab per machine."""
    for ns in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split():
        if ns.startswith(PREFIX):
            empty_namespace(ns)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
            subprocess.run(["ip", "link", "del", f"{ns}h"], capture_output=True)


def nodes_step(s) -> Step:
    wd, workers = s.settings.embedded_dir, s.settings.embedded.workers

    def check() -> Status:
        if others := _others(s):
            raise StepFailed(
                f"the embedded lab {others[0]!r} is on this machine (network namespaces {PREFIX}*; one embedded "
                f"lab per machine). Fix: `inv lab.down` with lab.name {others[0]}, or use that lab"
            )
        lab = NodesLab.attach(wd)
        if lab is None:
            return Status(False, f"no simulated nodes: start a gateway and {1 + workers} nodes (sshd in network namespaces)")
        if problems := lab.problems():
            return Status(False, f"the simulated nodes are broken ({'; '.join(problems)}): start them again (a new cluster)")
        have = len(lab.hosts.hosts) - 2
        if have != workers:
            return Status(
                False, f"{have} simulated workers, embedded.workers is {workers}: start them again (a new cluster)"
            )
        if missing := [f for f in ("pins.json", "node.qcow2") if not (wd / f).exists()]:
            return Status(False, f"the simulated nodes run without {', '.join(missing)}: start them again")
        pids = ", ".join(f"{h.name} {h.pid}" for h in lab.hosts.hosts)
        return Status(True, f"gateway and {1 + have} nodes run (sshd pids: {pids}); OpenStack ports forwarded")

    def apply() -> None:
        with machine_lock():
            start()

    def start() -> None:
        if others := _others(s):  # again, under the lock: another start may have won meanwhile
            raise StepFailed(
                f"the embedded lab {others[0]!r} started meanwhile. Fix: `inv lab.down` with lab.name {others[0]}"
            )
        if old := NodesLab.attach(wd):
            old.stop()
        remove_namespaces()
        lab = NodesLab(NodesConfig(wd, s.settings.lab.name, workers, PREFIX, forward_ports=OPENSTACK_PORTS))
        # the nodes' files are a machine's: its login user reads authorized_keys and runs /usr/local/bin
        # (this run's umask, 077, is for the lab's own state; secrets there are 0600 by name)
        umask = os.umask(0o022)
        try:
            EMBEDDED_RUN.mkdir(mode=0o755, parents=True, exist_ok=True)
            os.chmod(EMBEDDED_RUN, 0o755)
            lab.start()
        finally:
            os.umask(umask)
        (wd / "pins.json").write_text(json.dumps(lab.hosts.pins))
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(wd / "node.qcow2"), "16M"], check=True)

    return Step("simulated nodes", check, apply)


def up_steps(s) -> list[Step]:
    return [programs_step(s), cloud_step(s), nodes_step(s)]


def fixed_ip(server, network: str) -> str | None:
    """The server's fixed address on the lab network (what its NIC holds), or None."""
    for addr in server.addresses.get(network) or []:
        if addr.get("OS-EXT-IPS:type", "fixed") == "fixed":
            return addr["addr"]
    return None


def address_steps(s, clouds) -> list[Step]:
    """Each node holds its Nova server's fixed IP, as the server's NIC would: OCCM makes it the
    Node's InternalIP, and the API server reaches the kubelet there."""
    lab = NodesLab.attach(s.settings.embedded_dir)
    if lab is None:
        raise StepFailed("no simulated nodes to give addresses to. Fix: `inv embedded.up` (or `inv lab.up`)")
    steps = []
    for h in lab.hosts.hosts[1:]:

        def want(name: str = h.name) -> set[str]:
            server = clouds.servers().get(name)
            ip = fixed_ip(server, s.settings.openstack.network) if server else None
            return {ip} if ip else set()

        def check(name: str = h.name, node_address: str = h.address) -> Status:
            wanted, have = want(name), lab.extra_addresses(name)
            if not wanted and not have:
                return Status(True, "no Nova server of this name with a fixed IP yet (openstack.deploy makes it)")
            unrouted = sorted(a for a in wanted if lab.route_of(a) != node_address)
            if wanted == have and not unrouted:
                return Status(True, f"holds its server's address {', '.join(sorted(have))}, routed to it by the gateway")
            if wanted == have:
                return Status(False, f"holds {', '.join(unrouted)}, but the gateway does not route it here")
            return Status(False, f"holds {sorted(have) or 'no address'}, its server has {sorted(wanted) or 'none'}")

        def apply(name: str = h.name) -> None:
            wanted, have = want(name), lab.extra_addresses(name)
            try:
                for a in have - wanted:
                    lab.remove_address(name, a)
                for other in lab.hosts.hosts[1:]:  # servers recreated with swapped addresses: one holder each
                    if other.name != name:
                        for a in wanted & lab.extra_addresses(other.name):
                            lab.remove_address(other.name, a)
                for a in wanted:
                    lab.add_address(name, a)
            except RuntimeError as exc:
                raise StepFailed(f"{name}: {exc}. Fix: `inv embedded.down` then `inv lab.up` (new nodes)") from None
            clouds.cache.clear()

        steps.append(Step(f"{h.name} address", check, apply, node=h.name))
    return steps


def down_steps(s) -> list[Step]:
    wd, mark = s.settings.embedded_dir, s.settings.lab_dir / STARTED_MARK

    def nodes_check() -> Status:
        lab = NodesLab.attach(wd)
        if lab is None and not wd.exists():
            return Status(True, "no simulated nodes")
        what = "simulated nodes run" if lab and not lab.problems() else "simulated nodes left over"
        return Status(False, f"{what}: stop every process in their namespaces, remove the namespaces and {wd}")

    def nodes_apply() -> None:
        with machine_lock():
            if lab := NodesLab.attach(wd):
                lab.stop()
            else:  # a start interrupted before nodes.json, or a file this version cannot read
                remove_namespaces()
            subprocess.run(["rm", "-rf", str(wd)], check=True)

    def cloud_check() -> Status:
        services = cloud_services()
        if not any(st == "running" for st, _ in services.values()):
            return Status(True, "the loopback OpenStack is not running")
        if not started_here(mark, services):
            return Status(True, "the loopback OpenStack runs, left running: this lab did not start it")
        return Status(False, "the loopback OpenStack runs, started by embedded.up: stop it")

    def cloud_apply() -> None:
        _loopback("stop")
        mark.unlink(missing_ok=True)

    return [Step("simulated nodes", nodes_check, nodes_apply), Step("loopback OpenStack", cloud_check, cloud_apply)]
