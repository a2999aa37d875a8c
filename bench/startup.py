"""`inv --list` in this project vs Invoke's own start-up (`inv --help` outside any project).

Prints both medians and their ratio (goal <= 1.3: fabric, openstacksdk, kubernetes, libvirt and
pydantic are imported lazily, inside task bodies). Runs are interleaved so that both sides see the
same machine load.  Usage: .venv/bin/python bench/startup.py [ROUNDS]
"""

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INV = str(Path(sys.executable).parent / "inv")


def once(args, cwd):
    t0 = time.perf_counter()
    subprocess.run([INV, *args], cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - t0


def main(rounds=15):
    outside = tempfile.mkdtemp()
    ours, invoke_own = [], []
    once(["--list"], ROOT)  # warm the page cache and .pyc files for both
    once(["--help"], outside)
    for _ in range(rounds):
        ours.append(once(["--list"], ROOT))
        invoke_own.append(once(["--help"], outside))
    a, b = statistics.median(ours), statistics.median(invoke_own)
    print(f"inv --list (osk8s)        median {a * 1000:6.1f} ms over {rounds} runs")
    print(f"inv --help (invoke alone) median {b * 1000:6.1f} ms over {rounds} runs")
    print(f"ratio {a / b:.2f} (goal <= 1.3)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 15)
