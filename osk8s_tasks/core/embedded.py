"""The settings an embedded lab (lab.kind: embedded) fixes over the user's: where its machines are
(the loopback OpenStack's clouds.yaml, the simulated nodes' ssh_config) and the pins they serve.
Read by config.validate before anything runs; osk8s_tasks/embedded makes the machines."""

from __future__ import annotations

import json
import os
from pathlib import Path

EMBEDDED_RUN = Path(os.environ.get("OSK8S_EMBEDDED_RUN", "/run/osk8s-embedded"))
EMBEDDED_CLOUDS_YAML = Path(os.environ.get("OSK8S_OPENSTACK_BASE", "/var/lib/osk8s-openstack")) / "clouds.yaml"


def embedded_dir(lab: str) -> Path:
    return EMBEDDED_RUN / lab


def embedded_settings(lab: str, workers: int) -> dict:
    """What an embedded lab fixes, over the user's values (they describe machines that exist as
    embedded.up made them): the loopback OpenStack's clouds, the simulated nodes behind their
    gateway, and the download pins the nodes serve (pins.json, once embedded.up has run)."""
    d = embedded_dir(lab)
    ssh = str(d / "ssh_config")
    out: dict = {
        "openstack": {
            "clouds_yaml": str(EMBEDDED_CLOUDS_YAML),
            "cloud": "demo",
            "admin_cloud": "admin",
            "image": {"name": "node", "file": str(d / "node.qcow2")},
            "boot_concurrency": 1,  # Nova on sqlite builds one server at a time
        },
        "devstack": {"ssh_target": "gateway", "ssh_config": ssh},
        "cluster": {
            "ssh_config": ssh,
            "nodes": [{"name": "master", "role": "control-plane"}]
            + [{"name": f"worker-{i}", "role": "worker"} for i in range(1, workers + 1)],
        },
    }
    try:
        out["versions"] = json.loads((d / "pins.json").read_text())
    except (OSError, ValueError):
        pass  # not up yet: the defaults stand until embedded.up writes them
    return out
