"""`cluster`: Kubernetes on the lab's servers: node preparation on every node concurrently, kubeadm
init (v1beta4, cloud-provider external) and join, over SSH through the devstack VM as jump host;
and a lint for cloud.conf files. The task bodies import their steps lazily (inv --list stays fast):
cluster.nodes, cluster.control_plane, cluster.ssh_config, cluster.load_images, cluster.addons, cluster.destroy,
cluster.lint."""

from __future__ import annotations

from pathlib import Path

from invoke import Collection, task
from invoke.exceptions import Exit

from osk8s_tasks.core.help import COMMON_HELP


@task(name="ssh-config", help=COMMON_HELP)
def ssh_config(c, dry_run=False, log_json=None):
    """Write the nodes' ssh_config (floating IPs, lab key, jump host) with host keys read from their consoles."""
    from osk8s_tasks.cluster.ssh_config import ssh_config_steps
    from osk8s_tasks.core.engine import session

    with session(c, "cluster.ssh-config", dry_run, log_json) as s:
        s.converge(ssh_config_steps(s))


@task(name="prepare-nodes", help=COMMON_HELP)
def prepare_nodes(c, dry_run=False, log_json=None):
    """Kernel modules, sysctls, swap off, containerd (systemd cgroups), kubelet/kubeadm/kubectl at
    the pinned version: on every node at once, through the jump host."""
    from osk8s_tasks.cluster.nodes import run_nodes
    from osk8s_tasks.core.engine import session

    with session(c, "cluster.prepare-nodes", dry_run, log_json) as s:
        run_nodes(s)


@task(help=COMMON_HELP)
def addons(c, dry_run=False, log_json=None):
    """cloud.conf Secrets (application credential), openstack-cloud-controller-manager and
    cinder-csi-plugin, applied server-side only where they differ; then wait until every node has
    a providerID and the CSI driver is registered."""
    from osk8s_tasks.cluster import addons as cluster_addons
    from osk8s_tasks.core.engine import session

    with session(c, "cluster.addons", dry_run, log_json) as s:
        cluster_addons.run_addons(s)


@task(
    name="load-images",
    positional=["files"],
    help={
        "files": "Image archives to load: `docker save` or OCI layout tarballs (plain or gzip). One path, or several "
        "separated by commas (occm.tar,cinder-csi.tar): Invoke takes one value per positional argument.",
        **COMMON_HELP,
    },
)
def load_images(c, files, dry_run=False, log_json=None):
    """Copy image archives to every node through the jump host and import them into containerd's
    k8s.io namespace (`ctr images import --label osk8s.io/archive=sha256:<archive's sha256>`); a
    node that already has this very archive is skipped, with the reason. Before the first copy,
    every archive is read as containerd would import it, and each image in cluster.images other
    than upstream's must be in an archive or already on every node. Then set cluster.images.<add-on>
    to the loaded name and run cluster.addons (the add-on gets imagePullPolicy: IfNotPresent)."""
    from osk8s_tasks.cluster.load_images import run_load_images
    from osk8s_tasks.core.engine import session

    with session(c, "cluster.load-images", dry_run, log_json) as s:
        run_load_images(s, files)


@task(help=COMMON_HELP)
def deploy(c, dry_run=False, log_json=None):
    """prepare-nodes -> kubeadm init (only without /etc/kubernetes/admin.conf) -> admin kubeconfig
    (0600) -> kubeadm join for every worker not yet in the cluster -> add-ons."""
    from osk8s_tasks.cluster import addons as cluster_addons
    from osk8s_tasks.cluster.control_plane import run_control_plane
    from osk8s_tasks.cluster.nodes import run_nodes
    from osk8s_tasks.core.engine import session

    with session(c, "cluster.deploy", dry_run, log_json) as s:
        run_nodes(s)
        run_control_plane(s)
        cluster_addons.run_addons(s)


@task(help=COMMON_HELP)
def destroy(c, dry_run=False, log_json=None):
    """Delete LoadBalancer Services and the tool's add-ons (the cloud provider removes its load
    balancers), drain the workers, kubeadm reset every node, then openstack.teardown."""
    from osk8s_tasks.cluster import destroy as cluster_destroy
    from osk8s_tasks.core.engine import session

    with session(c, "cluster.destroy", dry_run, log_json) as s:
        cluster_destroy.run_destroy(s)


@task(help={"log_json": COMMON_HELP["log_json"]})
def status(c, log_json=None):
    """Nodes with their providerIDs and readiness, and the add-on pods (read-only)."""
    from osk8s_tasks.cluster import addons as cluster_addons
    from osk8s_tasks.core.engine import session

    with session(c, "cluster.status", log_json=log_json, quiet=True) as s, cluster_addons.api_of(s) as api:
        print(cluster_addons.status_text(s, api))


@task(
    name="lint-cloud-config",
    help={
        "file": "A cloud-config / cloud.conf file (the write-up's /etc/kubernetes/cloud-config, say).",
        "component": "Whose file it is: occm (openstack-cloud-controller-manager, default) or cinder-csi.",
    },
)
def lint_cloud_config(c, file, component="occm"):
    """List keys current cloud-provider-openstack no longer reads (upstream ignores them silently)
    or never knew, with the replacement for each. Exits 1 when any is found; values are never shown."""
    from osk8s_tasks.cluster import lint as cloudconf

    if component not in cloudconf.KNOWN:
        raise Exit(f"--component {component!r}: use occm or cinder-csi", code=2)
    path = Path(file)
    if not path.is_file():
        raise Exit(f"{file}: no such file. Fix: give the path of a cloud.conf", code=2)
    findings = cloudconf.lint(path.read_text(errors="replace"), component)
    print(cloudconf.report(file, findings))
    if any(f.kind in ("removed", "fatal", "unknown", "misplaced") for f in findings):
        raise Exit(code=1)


ns = Collection("cluster", ssh_config, prepare_nodes, load_images, addons, deploy, destroy, status, lint_cloud_config)
