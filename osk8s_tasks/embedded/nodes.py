"""Simulated Kubernetes nodes on this machine: the launcher of the embedded lab (`lab.kind: embedded`)
and of the tests.

    lab = NodesLab(NodesConfig(workdir=Path("/run/osk8s-x"), lab="k1", workers=1, prefix="o8c"))
    ep = lab.start()       # sshd hosts: a gateway (jump host) and the nodes behind it, each in its own
                           # network namespace, with the Kubernetes "packages" of tests/peers/k8s_standin
                           # (real kubeadm/kubectl, the kubelet stand-in); no cluster yet
    ep.invoke_config       # a lab config for `inv -f`: nodes, ssh_config, the download pins
    NodesConfig(..., forward_ports=netfwd.OPENSTACK_PORTS)   # the nodes reach the loopback OpenStack at
                           # 127.0.0.1 (a forwarder process, osk8s_tasks/embedded/netfwd.py)
    NodesLab.attach(workdir)   # the lab a start() of another process left running (nodes.json), or None
    lab.problems()         # [] when every sshd and the forwarder still run and each namespace exists
    lab.stop()             # every process in the nodes' namespaces ended (by PID), namespaces and files gone
    nodes, ep = on_loopback_cloud(cleanup, "verify", "q1", "o8v", clouds_yaml, verify={...})  # all of the above,
                           # set up for the loopback OpenStack (the tests that run the tool's whole pipeline)

The processes outlive the Python process that started them (each in a session of its own), so an
`inv lab.up` leaves the embedded lab running and the next `inv` finds it through nodes.json. The
cluster itself is made by the tool (cluster.prepare-nodes, then kubeadm init/join through the
gateway), as on a real lab: this launcher only provides the machines.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from osk8s_tasks.embedded.netfwd import OPENSTACK_PORTS
from osk8s_tasks.embedded.simnodes import NODE_TABLE, node_hosts
from osk8s_tasks.embedded.sshd import SshHosts, TestHost, end, runs

PROJECT = Path(__file__).resolve().parents[2]
STATE_FILE = "nodes.json"


@dataclass
class NodesConfig:
    workdir: Path
    lab: str
    workers: int = 1
    prefix: str = "o8c"  # network namespaces <prefix>0 (gateway), <prefix>1 (control plane), ...
    settings: dict = field(default_factory=dict)  # merged into the lab config (invoke_config)
    # forwarded from 127.0.0.1 inside each node and the gateway to 127.0.0.1 here (netfwd), so they reach the
    # loopback OpenStack at the URLs of its clouds.yaml and catalog, as a real lab's nodes reach DevStack
    # (and the DevStack VM reaches its own services)
    forward_ports: tuple[int, ...] = ()


@dataclass
class Endpoints:
    ssh_config: Path
    gateway: str  # ssh alias of the jump host
    control_plane: str  # node name (and ssh alias)
    nodes: dict[str, str]  # node name -> address (reachable through the gateway only)
    netns: dict[str, str]  # host name -> network namespace
    invoke_config: Path
    state_dir: Path  # the tool's lab state (admin.conf, logs) for invoke_config
    pins: dict


class NodesLab:
    def __init__(self, config: NodesConfig):
        self.config = config
        self.hosts = None
        self.endpoints: Endpoints | None = None
        self.forwarder_pid: int | None = None

    def start(self) -> Endpoints:
        c = self.config
        self.hosts = node_hosts(c.workdir, c.lab, workers=c.workers, prefix=c.prefix)
        try:
            state = self.hosts.workdir / "state"
            settings = {
                "lab": {"name": c.lab, "state_dir": str(state)},
                "versions": dict(self.hosts.pins),
                "devstack": {"ssh_target": "gateway", "ssh_config": str(self.hosts.ssh_config)},
                "cluster": {
                    "ssh_config": str(self.hosts.ssh_config),
                    "nodes": [{"name": "master", "role": "control-plane"}]
                    + [{"name": f"worker-{i}", "role": "worker"} for i in range(1, c.workers + 1)],
                },
            }
            for section, values in c.settings.items():
                settings.setdefault(section, {}).update(values)
            cfg = self.hosts.workdir / "lab.yaml"
            cfg.write_text(yaml.safe_dump(settings))
            gw, nodes = self.hosts.hosts[0], self.hosts.hosts[1:]
            if c.forward_ports:
                self.forwarder_pid = self._start_forwarder([h.netns for h in self.hosts.hosts], c.forward_ports)
            self.endpoints = Endpoints(
                self.hosts.ssh_config,
                gw.name,
                nodes[0].name,
                {h.name: h.address for h in nodes},
                {h.name: h.netns for h in self.hosts.hosts},
                cfg,
                state / c.lab,
                dict(self.hosts.pins),
            )
            self.save()
        except BaseException:
            self.stop()
            raise
        return self.endpoints

    @property
    def _ready_mark(self) -> str:
        """On the forwarder's command line (--ready FILE): this lab's forwarder, no other."""
        return str(self.config.workdir / "netfwd.ready")

    def _start_forwarder(self, namespaces: list[str], ports) -> int:
        """One process forwarding 127.0.0.1:<port> inside every namespace to this machine's 127.0.0.1."""
        wd = self.hosts.workdir
        ready, log = wd / "netfwd.ready", open(wd / "netfwd.log", "a")
        ready.unlink(missing_ok=True)
        cmd = [sys.executable, "-m", "osk8s_tasks.embedded.netfwd", ",".join(namespaces), *map(str, ports)]
        proc = subprocess.Popen([*cmd, "--ready", str(ready)], stdout=log, stderr=log, start_new_session=True, cwd=PROJECT)
        deadline = time.monotonic() + 20
        while not ready.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                end(proc.pid)
                tail = (wd / "netfwd.log").read_text()[-600:]
                raise RuntimeError(f"the port forwarder into {namespaces} did not start: {tail}")
            time.sleep(0.05)
        return proc.pid

    def save(self) -> None:
        """nodes.json: what another process needs to find, check and stop this lab."""
        state = {
            "config": {**asdict(self.config), "workdir": str(self.config.workdir)},
            "hosts": [{**asdict(h), "host_key": str(h.host_key)} for h in self.hosts.hosts],
            "pins": self.hosts.pins,
            "forwarder_pid": self.forwarder_pid,
        }
        tmp = self.hosts.workdir / f".{STATE_FILE}"
        tmp.write_text(json.dumps(state, indent=1, default=str))
        tmp.replace(self.hosts.workdir / STATE_FILE)  # never a half-written file for the next inv

    @classmethod
    def attach(cls, workdir: Path) -> NodesLab | None:
        """The lab a start() left at `workdir` (perhaps from another process), or None."""
        try:
            state = json.loads((workdir / STATE_FILE).read_text())
            cfg = state["config"]
            lab = cls(NodesConfig(**{**cfg, "workdir": Path(cfg["workdir"]), "forward_ports": tuple(cfg["forward_ports"])}))
            hosts = [TestHost(**{**h, "host_key": Path(h["host_key"])}) for h in state["hosts"]]
        except (OSError, ValueError, KeyError, TypeError):  # none, or written by another version: not ours to read
            return None
        lab.hosts = SshHosts(workdir, count=len(hosts), prefix=cfg["prefix"], gateway=True, hosts=hosts)
        lab.hosts.pins = state["pins"]
        lab.forwarder_pid = state["forwarder_pid"]
        return lab

    def problems(self) -> list[str]:
        """What no longer runs: an sshd, the forwarder, a namespace ([] when all is well)."""
        out = []
        if self.hosts is None:
            return ["not started"]
        netns = set(subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split())
        for h in self.hosts.hosts:
            if h.netns not in netns:
                out.append(f"{h.name}: network namespace {h.netns} is gone")
            elif not runs(h.pid, f"{h.netns}_sshd_config"):
                out.append(f"{h.name}: sshd (pid {h.pid}) is not running")
        if self.config.forward_ports and not runs(self.forwarder_pid, self._ready_mark):
            out.append(f"the port forwarder (pid {self.forwarder_pid}) is not running")
        return out

    def extra_addresses(self, node: str) -> set[str]:
        """The addresses add_address gave a node (its /32s)."""
        h = self._host(node)
        out = subprocess.run(
            ["ip", "-n", h.netns, "-o", "-4", "addr", "show", "dev", f"{h.netns}n"], capture_output=True, text=True
        ).stdout
        return {w.split("/")[0] for w in out.split() if w.endswith("/32")}

    def route_of(self, address: str) -> str | None:
        """The node address the gateway routes `address` to, or None."""
        gw = self.hosts.hosts[0].netns
        words = subprocess.run(
            ["ip", "-n", gw, "route", "show", "table", NODE_TABLE, f"{address}/32"], capture_output=True, text=True
        ).stdout.split()
        return words[words.index("via") + 1] if "via" in words else None

    def remove_address(self, node: str, address: str) -> None:
        h, gw = self._host(node), self.hosts.hosts[0].netns
        _ip(h.netns, "addr", "del", f"{address}/32", "dev", f"{h.netns}n", missing_ok=True)
        if self.route_of(address) == h.address:  # only this node's route: another may hold it by now
            _ip(gw, "route", "del", f"{address}/32", "table", NODE_TABLE, missing_ok=True)

    def add_address(self, node: str, address: str) -> None:
        """Give a node a second address (its Nova server's fixed IP, which OCCM makes the Node's InternalIP,
        as a real server's NIC holds it), routed to it by the gateway for the other nodes: the API server
        reaches the kubelet at the InternalIP (kubeadm's --kubelet-preferred-address-types). `replace`:
        idempotent, and a route left to another node (servers recreated with swapped IPs) is moved."""
        h, gw = self._host(node), self.hosts.hosts[0].netns
        _ip(h.netns, "addr", "replace", f"{address}/32", "dev", f"{h.netns}n")
        _ip(gw, "route", "replace", f"{address}/32", "via", h.address, "table", NODE_TABLE)

    def private(self, node: str, path: str) -> Path:
        """Where a node's private directory (/etc/kubernetes, /var/lib/osk8s-standin...) is on this machine."""
        return self.hosts.private(self._host(node), path)

    def _host(self, name: str):
        return next(h for h in self.hosts.hosts if h.name == name)

    def processes(self, name: str) -> list[tuple[int, str]]:
        """(PID, command name) of every process in a host's network namespace, its sshd included."""
        pids = subprocess.run(["ip", "netns", "pids", self._host(name).netns], capture_output=True, text=True).stdout.split()
        out = []
        for pid in pids:
            try:
                out.append((int(pid), Path(f"/proc/{pid}/comm").read_text().strip()))
            except OSError:
                continue  # gone meanwhile
        return out

    def stop(self) -> None:
        if self.forwarder_pid and runs(self.forwarder_pid, self._ready_mark):
            end(self.forwarder_pid)
        self.forwarder_pid = None
        if self.hosts is not None:
            self.hosts.stop()  # ends every process in the namespaces by PID, then removes them
            self.hosts = None


def on_loopback_cloud(
    cleanup, kind: str, lab: str, prefix: str, clouds_yaml: Path, workers: int = 1, **settings: dict
) -> tuple[NodesLab, Endpoints]:
    """Nodes whose lab config points at the loopback OpenStack: clouds `demo` (the lab's project) and
    `admin`, a 16 MiB qcow2 as the node image, one server build at a time (Nova on sqlite builds one
    server at a time); `settings` sections are merged over that. The nodes and the gateway reach the
    cloud at 127.0.0.1 (netfwd). Whatever this made is undone by `cleanup` (an ExitStack), also when
    a later step of the caller's setup fails."""
    image = Path(f"/tmp/{lab}-node.qcow2")
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(image), "16M"], check=True)
    cleanup.callback(image.unlink, missing_ok=True)
    openstack = {
        "clouds_yaml": str(clouds_yaml),
        "cloud": "demo",
        "admin_cloud": "admin",
        "image": {"name": "node", "file": str(image)},
        "boot_concurrency": 1,
    }
    merged = {"openstack": {**openstack, **settings.pop("openstack", {})}, **settings}
    workdir = Path(f"/run/osk8s-{kind}-{uuid.uuid4().hex[:6]}")
    nodes = NodesLab(
        NodesConfig(workdir, lab, workers=workers, prefix=prefix, forward_ports=OPENSTACK_PORTS, settings=merged)
    )
    cleanup.callback(nodes.stop)
    return nodes, nodes.start()


def _ip(netns: str, *args: str, missing_ok: bool = False) -> None:
    r = subprocess.run(["ip", "-n", netns, *args], capture_output=True, text=True)
    if r.returncode and not (missing_ok and ("Cannot assign" in r.stderr or "No such process" in r.stderr)):
        raise RuntimeError(f"ip -n {netns} {' '.join(args)}: {r.stderr.strip() or f'exit {r.returncode}'}")
