"""`inv lab.up --from openstack --until cluster` on a converged test lab, against its first run on
the same lab: the ratio says how much of a full run a re-run after success costs (goal <= 0.10).

The lab is the tests' own (tests/integration/test_lab.py): the loopback OpenStack (it must be
running: osk8s_tasks/embedded/openstack/loopback.py start) and sshd nodes behind a gateway with the real
kubeadm and control plane. Each round builds a fresh lab, runs lab.up twice, and tears it down.
Needs root (network namespaces). Usage: .venv/bin/python bench/lab_rerun.py [--rounds R] [--workers W]

Measured on 2026-11-30 (2 CPUs, 2 rounds, 1 worker): first run 31.2 s / 30.7 s, re-run 2.9 s / 3.0 s,
median ratio 0.096 (goal <= 0.10: met).
"""

import argparse
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from osk8s_tasks.embedded.netfwd import OPENSTACK_PORTS  # noqa: E402
from osk8s_tasks.embedded.nodes import NodesConfig, NodesLab  # noqa: E402

INV = str(Path(sys.executable).parent / "inv")
CLOUDS = Path("/var/lib/osk8s-openstack/clouds.yaml")


def inv(config: Path, *args) -> float:
    t0 = time.perf_counter()
    r = subprocess.run([INV, "-f", str(config), *args], capture_output=True, text=True, cwd=ROOT, timeout=3600)
    seconds = time.perf_counter() - t0
    if r.returncode:
        raise SystemExit(f"inv {' '.join(args)} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-2000:]}")
    return seconds


def one_round(workers: int) -> tuple[float, float]:
    lab = f"r{uuid.uuid4().hex[:4]}"
    image = Path(f"/tmp/{lab}-node.qcow2")
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(image), "16M"], check=True)
    nodes = NodesLab(
        NodesConfig(
            Path(f"/run/osk8s-bench-{lab}"),
            lab,
            workers=workers,
            prefix="o8r",
            forward_ports=OPENSTACK_PORTS,
            settings={
                "openstack": {
                    "clouds_yaml": str(CLOUDS),
                    "cloud": "demo",
                    "admin_cloud": "admin",
                    "image": {"name": "node", "file": str(image)},
                    "boot_concurrency": 1,
                }
            },
        )
    )
    try:
        config = nodes.start().invoke_config
        try:
            first = inv(config, "lab.up", "--from", "openstack", "--until", "cluster")
            again = inv(config, "lab.up", "--from", "openstack", "--until", "cluster")
        finally:
            subprocess.run([INV, "-f", str(config), "lab.down"], capture_output=True, cwd=ROOT, timeout=1800)
        return first, again
    finally:
        nodes.stop()
        image.unlink(missing_ok=True)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--workers", type=int, default=1)
    a = p.parse_args(argv)
    if not CLOUDS.exists():
        raise SystemExit(f"{CLOUDS} missing: start the loopback cloud (osk8s_tasks/embedded/openstack/loopback.py start)")
    pairs = []
    for i in range(a.rounds):
        first, again = one_round(a.workers)
        pairs.append((first, again))
        print(f"round {i + 1}: first run {first:6.1f} s, re-run {again:5.1f} s, ratio {again / first:.3f}", flush=True)
    ratio = statistics.median(again / first for first, again in pairs)
    print(
        f"lab.up --from openstack --until cluster, {a.workers + 1} nodes: median ratio re-run / first run {ratio:.3f} "
        f"(goal <= 0.10) -> {'met' if ratio <= 0.10 else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
