"""`cluster`: Kubernetes on the lab's servers. So far: the cloud.conf lint."""

from __future__ import annotations

from pathlib import Path

from invoke import Collection, task
from invoke.exceptions import Exit


@task(name="lint-cloud-config", help={
    "file": "A cloud-config / cloud.conf file (the write-up's /etc/kubernetes/cloud-config, say).",
    "component": "Whose file it is: occm (openstack-cloud-controller-manager, default) or cinder-csi.",
})
def lint_cloud_config(c, file, component="occm"):
    """List keys current cloud-provider-openstack no longer reads (upstream ignores them silently)
    or never knew, with the replacement for each. Exits 1 when any is found; values are never shown."""
    from . import cloudconf

    if component not in cloudconf.KNOWN:
        raise Exit(f"--component {component!r}: use occm or cinder-csi", code=2)
    path = Path(file)
    if not path.is_file():
        raise Exit(f"{file}: no such file. Fix: give the path of a cloud.conf", code=2)
    findings = cloudconf.lint(path.read_text(errors="replace"), component)
    print(cloudconf.report(file, findings))
    if any(f.kind in ("removed", "unknown", "misplaced") for f in findings):
        raise Exit(code=1)


ns = Collection("cluster", lint_cloud_config)
