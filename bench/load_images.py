"""cluster.load-images of one `docker save` archive of SIZE MiB (a layer of repeated bytes:
nothing on the path compresses) onto the nodes of a default lab (master, worker-1) as sshd test
hosts behind a gateway (the real jump path, SFTP through one shared jump transport), whose ctr is
the stand-in (tests/peers/k8s/ctr.py: it reads the whole archive and hashes its blobs, as
containerd's importer does, but unpacks nothing).
Prints the seconds of the first run (read, copy, check, import, remove on every node), of the second
(nothing to do) and the copy rate. Needs root (network namespaces).
Usage: .venv/bin/python bench/load_images.py [SIZE_MIB ...]   (default: 64)

Measured with `64 256` on 2 CPUs shared with other test runs (load average about 3-5):
64 MiB: first run 3.4 s, second 0.8 s; 256 MiB: first run 5.9 s, second 0.9 s. Quoted in README
("Run your own cloud-provider-openstack build"), beside estimates for a real stacked lab."""

import subprocess
import sys
import time
import uuid
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from osk8s_tasks.embedded.simnodes import node_hosts  # noqa: E402
from tests.peers.image_archives import docker_save  # noqa: E402

INV = str(Path(sys.executable).parent / "inv")


def main(sizes: list[int]) -> None:
    suffix = uuid.uuid4().hex[:4]
    lab = f"b{suffix}"
    hosts = node_hosts(Path(f"/run/osk8s-bench-images-{suffix}"), lab, workers=1, prefix=f"o8b{suffix}")
    try:
        cfg = hosts.workdir / "lab.yaml"
        cfg.write_text(
            yaml.safe_dump(
                {
                    "lab": {"name": lab, "state_dir": str(hosts.workdir / "state")},
                    "versions": hosts.pins,
                    "devstack": {"ssh_target": "gateway", "ssh_config": str(hosts.ssh_config)},
                    "cluster": {
                        "ssh_config": str(hosts.ssh_config),
                        "nodes": [{"name": "master", "role": "control-plane"}, {"name": "worker-1", "role": "worker"}],
                    },
                }
            )
        )

        def inv(*args) -> float:
            t0 = time.monotonic()
            r = subprocess.run([INV, "-f", str(cfg), *args], cwd=ROOT, capture_output=True, text=True, timeout=3600)
            if r.returncode:
                raise SystemExit(r.stdout[-3000:] + r.stderr[-3000:])
            return time.monotonic() - t0

        inv("cluster.prepare-nodes")
        for size in sizes:
            archive = docker_save(hosts.workdir / f"occm-{size}.tar", [f"o8i/occm:bench-{size}"], filler=size << 20)
            first, second = inv("cluster.load-images", str(archive)), inv("cluster.load-images", str(archive))
            mib = archive.stat().st_size / (1 << 20)
            print(
                f"{mib:.0f} MiB, 2 nodes: first run {first:.1f} s ({2 * mib / first:.1f} MiB/s copied and imported), "
                f"second run {second:.1f} s (nothing to do)",
                flush=True,
            )
    finally:
        hosts.stop()


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [64])
