"""`inv host.up` from nothing vs raw `vagrant up` of the same VM definition, side by side.

Both boot the same box with the same settings file and Vagrantfile under the same libvirt; the
difference is osk8s's own work (plugin and box checks, settings, ssh_config with recorded host
keys, the SSH probe). Prints both wall times and the ratio (goal <= 1.1). Needs the vmlab peer:
  tests/peers/vmlab.sh start && tests/peers/vmlab.sh box
  .venv/bin/python bench/host_up.py [ROUNDS]
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INV = str(Path(sys.executable).parent / "inv")
NETNS = ["ip", "netns", "exec", "osk8s-vmlab"]
BOX = "/var/cache/osk8s-test/osk8s-debian12-v4.box"


def timed(cmd, env=None):
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env=env, cwd=ROOT)
    return time.perf_counter() - t0


def main(rounds=1):
    work = Path(tempfile.mkdtemp(prefix="osk8s-bench-"))
    cfg = work / "lab.yaml"
    cfg.write_text(
        f"lab: {{name: osk8s-bench, state_dir: {work}}}\n"
        f"host: {{driver: qemu, box: osk8s-debian12-v4, box_url: {BOX}, memory: 1024, cpus: 1, disk_gb: 8}}\n"
    )
    inv = [*NETNS, INV, "-f", str(cfg)]
    ours, raw = [], []
    try:
        for _ in range(rounds):
            ours.append(timed([*inv, "host.up"]))
            settings = work / "settings.json"
            shutil.copy(work / "osk8s-bench" / "host.json", settings)
            subprocess.run([*inv, "host.destroy"], check=True, capture_output=True)
            env = dict(
                os.environ,
                OSK8S_HOST_SETTINGS=str(settings),
                VAGRANT_DOTFILE_PATH=str(work / "raw"),
                VAGRANT_CHECKPOINT_DISABLE="1",
                VAGRANT_DEFAULT_PROVIDER="libvirt",
            )
            raw.append(timed([*NETNS, "vagrant", "up", "--provider=libvirt", "--no-provision"], env))
            subprocess.run([*NETNS, "vagrant", "destroy", "-f"], check=True, capture_output=True, env=env, cwd=ROOT)
    finally:
        subprocess.run([*inv, "host.destroy"], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    a, b = sum(ours) / len(ours), sum(raw) / len(raw)
    print(f"inv host.up (from nothing)   {a:6.1f} s  runs: {', '.join(f'{x:.1f}' for x in ours)}")
    print(f"raw vagrant up (same VM)     {b:6.1f} s  runs: {', '.join(f'{x:.1f}' for x in raw)}")
    print(f"ratio {a / b:.3f} (goal <= 1.1)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
