"""Node steps on 1 and on 6 sshd test hosts behind a gateway (the real jump path), first run
(every step applies, through the Kubernetes tool stand-ins), side by side: prints t(6)/t(1).
Goal <= 1.5: nodes are converged concurrently. Needs root (network namespaces).
Usage: .venv/bin/python bench/node_fanout.py [ROUNDS]"""

import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.peers.k8s_nodes import node_hosts  # noqa: E402

INV = str(Path(sys.executable).parent / "inv")


def one(workers: int) -> float:
    lab = f"b{uuid.uuid4().hex[:4]}"
    hosts = node_hosts(Path(f"/run/osk8s-bench-{lab}"), lab, workers=workers - 1, prefix="o8b")
    try:
        cfg = hosts.workdir / "lab.yaml"
        nodes = [{"name": "master", "role": "control-plane"}] + [{"name": f"worker-{i}", "role": "worker"} for i in range(1, workers)]
        cfg.write_text(yaml.safe_dump({"lab": {"name": lab, "state_dir": str(hosts.workdir / "state")},
                                       "devstack": {"ssh_target": "gateway", "ssh_config": str(hosts.ssh_config)},
                                       "cluster": {"ssh_config": str(hosts.ssh_config), "nodes": nodes}}))
        t0 = time.perf_counter()
        subprocess.run([INV, "-f", str(cfg), "cluster.prepare-nodes"], check=True, capture_output=True, cwd=ROOT)
        return time.perf_counter() - t0
    finally:
        hosts.stop()


def main(rounds: int = 3) -> None:
    t1, t6 = [], []
    for _ in range(rounds):  # interleaved, so both see the same machine load
        t1.append(one(1))
        t6.append(one(6))
    a, b = statistics.median(t1), statistics.median(t6)
    print(f"node steps on 1 host : median {a:.2f} s  runs: {', '.join(f'{x:.2f}' for x in t1)}")
    print(f"node steps on 6 hosts: median {b:.2f} s  runs: {', '.join(f'{x:.2f}' for x in t6)}")
    print(f"t(6)/t(1) = {b / a:.2f} (goal <= 1.5)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
