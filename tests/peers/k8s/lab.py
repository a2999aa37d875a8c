"""Kubernetes nodes for a lab on this machine: the launcher the tests use, kept free of pytest so
that it can move into the product later (an "embedded lab").

    lab = NodesLab(NodesConfig(workdir=Path("/run/osk8s-x"), lab="k1", workers=1, prefix="o8c"))
    ep = lab.start()       # sshd hosts: a gateway (jump host) and the nodes behind it, each in its own
                           # network namespace, with the Kubernetes "packages" of tests/peers/k8s_standin
                           # (real kubeadm/kubectl, the kubelet stand-in); no cluster yet
    ep.invoke_config       # a lab config for `inv -f`: nodes, ssh_config, the download pins
    lab.status()           # {node: kubelet.Status}: kubelet active?, its containers, kwok, healthz URL
    NodesConfig(..., forward_ports=netfwd.OPENSTACK_PORTS)   # the nodes reach the loopback OpenStack at 127.0.0.1
    lab.stop()             # every process in the nodes' namespaces ended (by PID), namespaces and files gone
    nodes, ep = on_loopback_cloud(cleanup, "verify", "q1", "o8v", clouds_yaml, verify={...})  # all of the above,
                           # set up for the loopback OpenStack (the tests that run the tool's whole pipeline)

The cluster itself is made by the tool (cluster.prepare-nodes, then kubeadm init/join through the
gateway), as on a real lab: this launcher only provides the machines.
"""

from __future__ import annotations

import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tests.peers.k8s import kubelet
from tests.peers.k8s_nodes import node_hosts


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
        self.forwarders: list = []

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
                from tests.peers.netfwd import Forwarder

                for h in self.hosts.hosts:
                    self.forwarders.append(Forwarder().start(h.netns, c.forward_ports))
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
        except BaseException:
            self.stop()
            raise
        return self.endpoints

    def add_address(self, node: str, address: str) -> None:
        """Give a node a second address (its Nova server's fixed IP, which OCCM makes the Node's InternalIP,
        as a real server's NIC holds it), routed to it by the gateway for the other nodes: the API server
        reaches the kubelet at the InternalIP (kubeadm's --kubelet-preferred-address-types)."""
        from tests.peers.k8s_nodes import NODE_TABLE

        h, gw = self._host(node), self.hosts.hosts[0].netns
        subprocess.run(
            ["ip", "netns", "exec", h.netns, "ip", "addr", "add", f"{address}/32", "dev", f"{h.netns}n"],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            ["ip", "netns", "exec", gw, "ip", "route", "add", f"{address}/32", "via", h.address, "table", NODE_TABLE],
            check=True,
            capture_output=True,
        )

    def private(self, node: str, path: str) -> Path:
        """Where a node's private directory (/etc/kubernetes, /var/lib/osk8s-standin...) is on this machine."""
        return self.hosts.private(self._host(node), path)

    def _host(self, name: str):
        return next(h for h in self.hosts.hosts if h.name == name)

    def status(self) -> dict[str, kubelet.Status]:
        """Each node's kubelet stand-in, read from its private state (no SSH needed)."""
        return {h.name: kubelet.status(self.hosts.private(h, "/var/lib/osk8s-standin")) for h in self.hosts.hosts[1:]}

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
        for fwd in self.forwarders:
            fwd.stop()
        self.forwarders = []
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
    from tests.peers.netfwd import OPENSTACK_PORTS

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
