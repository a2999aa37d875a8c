"""The settings an embedded lab (lab.kind: embedded) fixes over the user's: where its machines are
(the loopback OpenStack's clouds.yaml, the simulated nodes' ssh_config) and the pins they serve.
Read by config.validate before anything runs; osk8s_tasks/embedded makes the machines."""

from __future__ import annotations

import json
import os
from pathlib import Path

# an empty value means the default (never Path(""): these directories are removed by down and start)
EMBEDDED_RUN = Path(os.environ.get("OSK8S_EMBEDDED_RUN") or "/run/osk8s-embedded").absolute()
EMBEDDED_CLOUDS_YAML = Path(os.environ.get("OSK8S_OPENSTACK_BASE") or "/var/lib/osk8s-openstack").absolute() / "clouds.yaml"


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


def embedded_clashes(given: dict, fixed: dict) -> list[str]:
    """The user's values an embedded lab would override (never silently): each names the key and
    the fix. The pins (versions.*) are the simulated nodes' own and are not compared."""
    out = []
    for section, keys in fixed.items():
        if section == "versions" or not isinstance(given.get(section), dict):
            continue
        for key, value in keys.items():
            mine = given[section].get(key)
            if mine is not None and mine != value and not (isinstance(value, dict) and _within(mine, value)):
                fix = "set embedded.workers" if key == "nodes" else "remove it: the embedded lab's machines fix it"
                out.append(f"config: {section}.{key} = {mine!r}: lab.kind embedded fixes it as {value!r}. Fix: {fix}")
    return out


def _within(mine, value: dict) -> bool:
    return isinstance(mine, dict) and all(mine.get(k) in (None, v) for k, v in value.items())
