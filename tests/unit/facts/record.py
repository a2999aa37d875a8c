"""Re-record the fact cases in this directory: run each probe for real on this machine and store
command -> output -> fact (the parser's answer, checked by eye before committing).

    .venv/bin/python -m tests.unit.facts.record      # rewrites recorded-*.json

Probes this machine cannot run for real (systemd units of DevStack, containerd) have hand-written
cases in cases-*.json, each naming the upstream source of its format."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import tempfile
from pathlib import Path

from osk8s_tasks.cluster import facts as cluster_facts
from osk8s_tasks.core import shapes
from osk8s_tasks.devstack import facts as devstack_facts

HERE = Path(__file__).parent
KUBE_BIN = Path("/var/cache/osk8s-peers/bin/kubernetes")


def plain(value):
    """A fact as JSON: dataclasses as dicts, sets sorted, tuples as lists."""
    if dataclasses.is_dataclass(value):
        return {k: plain(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, (set, frozenset)):
        return sorted(plain(v) for v in value)
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def sh(command: str, env: dict | None = None) -> str:
    return subprocess.run(["bash", "-c", command], capture_output=True, text=True, env=env).stdout


def kube_path() -> str:
    """The kubeadm and kubectl built from k8s.io/kubernetes (tests/peers/k8s), and a kubelet that prints
    what the real one does (component-base/version/verflag/verflag.go: "%s %s\\n", "Kubernetes", version)."""
    built = next(KUBE_BIN.iterdir())
    shim = Path(tempfile.mkdtemp()) / "kubelet"
    version = sh(f"{built}/kubeadm version -o short").strip()
    shim.write_text(f"#!/bin/sh\necho 'Kubernetes {version}'\n")
    shim.chmod(0o755)
    return f"{built}:{shim.parent}:{os.environ['PATH']}"


def stack_dest(state: str) -> str:
    """A DevStack dest with the files stack.sh leaves in `state` (the lock held for real by flock)."""
    d = Path(tempfile.mkdtemp())
    (d / "logs").mkdir()
    if state in ("completed", "failed"):
        lines = [
            "2026-11-30 08:00:01.123 | stack.sh log /opt/stack/logs/stack.sh.log.2026-11-30-080001",
            "2026-11-30 08:00:40.456 | Installing package prerequisites",
            "2026-11-30 08:12:03.789 | Starting Keystone",
        ]
        if state == "completed":
            lines += ["2026-11-30 08:41:17.002 | stack.sh completed in 2476 seconds."]
        (d / devstack_facts.SUMMARY).write_text("\n".join(lines) + "\n")
        (d / devstack_facts.RC).write_text("0\n" if state == "completed" else "1\n")
    return str(d)


def main() -> None:
    cases = []

    def add(fact: str, probe: str, output: str, **args):
        mod, _, name = fact.partition(":")
        parser = {"cluster.facts": cluster_facts, "devstack.facts": devstack_facts, "core.shapes": shapes}[mod]
        cases.append(
            {
                "parser": f"osk8s_tasks.{fact}",
                "probe": probe,
                "args": args,
                "output": output,
                "fact": plain(getattr(parser, name)(output)),
            }
        )

    add("cluster.facts:parse_lsmod", cluster_facts.LSMOD_PROBE, sh(cluster_facts.LSMOD_PROBE))
    add("cluster.facts:parse_swap", cluster_facts.SWAP_PROBE, sh(cluster_facts.SWAP_PROBE))
    env = dict(os.environ, PATH=kube_path())
    add("cluster.facts:parse_kube_versions", cluster_facts.KUBE_VERSIONS_PROBE, sh(cluster_facts.KUBE_VERSIONS_PROBE, env))
    add(
        "cluster.facts:parse_kube_versions",
        cluster_facts.KUBE_VERSIONS_PROBE,
        sh(cluster_facts.KUBE_VERSIONS_PROBE, dict(os.environ, PATH="/usr/bin:/bin")),
    )
    keys = ["net.ipv4.ip_forward", "net.bridge.bridge-nf-call-iptables", "net.ipv6.conf.all.disable_ipv6"]
    with tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False) as f:
        f.write(shapes.sysctl_file({"net.ipv4.ip_forward": "1"}))
    for file in (f.name, "/nonexistent/60-osk8s.conf"):
        probe = shapes.sysctl_probe(keys, file)
        add("core.shapes:parse_sysctl_probe", probe, sh(probe), keys=keys, file=file)
    add("devstack.facts:parse_host_ip", devstack_facts.HOST_IP_PROBE, sh(devstack_facts.HOST_IP_PROBE))
    for state in ("never", "completed", "failed"):
        dest = stack_dest(state)
        probe = devstack_facts.stack_probe(dest)
        add("devstack.facts:parse_stack_probe", probe, sh(probe), dest=dest)
    running = stack_dest("completed")
    probe = devstack_facts.stack_probe(running)
    holder = subprocess.Popen(["flock", f"{running}/{devstack_facts.LOCK}", "sleep", "30"])
    try:
        subprocess.run(["sleep", "0.3"])
        add("devstack.facts:parse_stack_probe", probe, sh(probe), dest=running)
    finally:
        holder.kill()
    (HERE / "recorded-this-machine.json").write_text(json.dumps(cases, indent=1) + "\n")
    print(f"{len(cases)} cases recorded in {HERE / 'recorded-this-machine.json'}")


if __name__ == "__main__":
    main()
