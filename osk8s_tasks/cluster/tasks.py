"""`cluster`: Kubernetes on the lab's servers: node preparation on every node concurrently, kubeadm
init (v1beta4, cloud-provider external) and join, over SSH through the devstack VM as jump host;
and a lint for cloud.conf files. Add-ons (CNI, OCCM, cinder-csi) are rendered by cluster_render."""

from __future__ import annotations

from pathlib import Path

from invoke import Collection, task
from invoke.exceptions import Exit

from osk8s_tasks.core.engine import COMMON_HELP, Status, Step, StepFailed, session


def ssh_config_steps(s) -> list[Step]:
    """nodes_ssh_config from OpenStack: floating IPs, the lab key, host keys from the consoles."""
    from osk8s_tasks.openstack import clouds as cloud
    from osk8s_tasks.cluster import nodes as cluster_nodes
    from osk8s_tasks.openstack import servers as openstack_servers
    from osk8s_tasks.openstack.tasks import local_key
    from osk8s_tasks.core.ssh import write_private

    path, known = cluster_nodes.nodes_ssh_config(s.settings), s.settings.lab_dir / "nodes_known_hosts"
    clouds = cloud.Clouds(s.settings)

    def wanted() -> tuple[str, str]:
        blocks, hosts = [], []
        for name in cluster_nodes.node_names(s.settings):
            srv = openstack_servers._server(clouds, name)
            if srv is None:
                raise StepFailed(f"server {name} does not exist. Fix: inv openstack.servers")
            port = next(iter(clouds.main.network.ports(device_id=srv.id)), None)
            fip = next(iter(clouds.main.network.ips(port_id=port.id)), None) if port else None
            if fip is None:
                raise StepFailed(f"server {name} has no floating IP. Fix: inv openstack.servers")
            keys = cluster_nodes.parse_console_host_keys(clouds.main.compute.get_server_console_output(srv)["output"])
            if not keys:
                raise StepFailed(f"{name}: no SSH host keys on its console yet (cloud-init prints them when it is done). "
                                 "Fix: wait for the server to finish booting, then run cluster.ssh-config again")
            hosts += [f"{fip.floating_ip_address} {k}" for k in keys]
            blocks.append(f"Host {name}\n  HostName {fip.floating_ip_address}\n  User {s.settings.cluster.ssh_user}\n"
                          f"  IdentityFile {local_key(s.settings)}\n  IdentitiesOnly yes\n  UserKnownHostsFile {known}\n"
                          "  StrictHostKeyChecking yes\n")
        return "".join(blocks), "".join(f"{h}\n" for h in hosts)

    def check():
        config, hosts = wanted()
        ok = path.exists() and path.read_text() == config and known.exists() and known.read_text() == hosts
        return Status(ok, f"{path.name}: {len(cluster_nodes.node_names(s.settings))} nodes, host keys from their consoles" if ok
                      else f"{path.name} missing or out of date", "" if ok else f"write {path} and {known.name}")

    def apply():
        config, hosts = wanted()
        write_private(known, hosts)
        write_private(path, config)

    return [Step("nodes ssh_config", check, apply)]


def run_nodes(s) -> None:
    from osk8s_tasks.cluster import nodes as cluster_nodes

    with cluster_nodes.connections(s) as remotes:
        s.plan_nodes(cluster_nodes.node_plan(s, remotes))


def run_control_plane(s) -> None:
    from osk8s_tasks.cluster import nodes as cluster_nodes

    roles = cluster_nodes.node_names(s.settings)
    masters = [n for n, role in roles.items() if role == "control-plane"]
    if len(masters) != 1:
        raise StepFailed(f"one control-plane node is supported, config has {len(masters)}")
    with cluster_nodes.connections(s) as remotes:
        master = remotes[masters[0]]
        s.plan([cluster_nodes.init_step(s, master, masters[0]), cluster_nodes.kubeconfig_step(s, master, masters[0]),
                cluster_nodes.cni_step(s, master, masters[0])])
        workers = {n: [cluster_nodes.join_step(s, master, remotes[n], n)] for n, role in roles.items() if role == "worker"}
        if workers:
            s.plan_nodes(workers)


@task(name="ssh-config", help=COMMON_HELP)
def ssh_config(c, dry_run=False, log_json=None):
    """Write the nodes' ssh_config (floating IPs, lab key, jump host) with host keys read from their consoles."""
    with session(c, "cluster.ssh-config", dry_run, log_json) as s:
        s.plan(ssh_config_steps(s))


@task(name="prepare-nodes", help=COMMON_HELP)
def prepare_nodes(c, dry_run=False, log_json=None):
    """Kernel modules, sysctls, swap off, containerd (systemd cgroups), kubelet/kubeadm/kubectl at
    the pinned version: on every node at once, through the jump host."""
    with session(c, "cluster.prepare-nodes", dry_run, log_json) as s:
        run_nodes(s)


@task(help=COMMON_HELP)
def addons(c, dry_run=False, log_json=None):
    """cloud.conf Secrets (application credential), openstack-cloud-controller-manager and
    cinder-csi-plugin, applied server-side only where they differ; then wait until every node has
    a providerID and the CSI driver is registered."""
    from osk8s_tasks.cluster import addons as cluster_addons

    with session(c, "cluster.addons", dry_run, log_json) as s:
        cluster_addons.run_addons(s)


@task(help=COMMON_HELP)
def deploy(c, dry_run=False, log_json=None):
    """prepare-nodes -> kubeadm init (only without /etc/kubernetes/admin.conf) -> admin kubeconfig
    (0600) -> kubeadm join for every worker not yet in the cluster -> add-ons."""
    from osk8s_tasks.cluster import addons as cluster_addons

    with session(c, "cluster.deploy", dry_run, log_json) as s:
        run_nodes(s)
        run_control_plane(s)
        cluster_addons.run_addons(s)


@task(help=COMMON_HELP)
def destroy(c, dry_run=False, log_json=None):
    """Delete LoadBalancer Services and the tool's add-ons (the cloud provider removes its load
    balancers), drain the workers, kubeadm reset every node, then openstack.teardown."""
    from osk8s_tasks.cluster import destroy as cluster_destroy

    with session(c, "cluster.destroy", dry_run, log_json) as s:
        cluster_destroy.run_destroy(s)


@task(help={"log_json": COMMON_HELP["log_json"]})
def status(c, log_json=None):
    """Nodes with their providerIDs and readiness, and the add-on pods (read-only)."""
    from osk8s_tasks.cluster import addons as cluster_addons

    with session(c, "cluster.status", log_json=log_json, quiet=True) as s, cluster_addons.api_of(s) as api:
        print(cluster_addons.status_text(s, api))


@task(name="lint-cloud-config", help={
    "file": "A cloud-config / cloud.conf file (the write-up's /etc/kubernetes/cloud-config, say).",
    "component": "Whose file it is: occm (openstack-cloud-controller-manager, default) or cinder-csi.",
})
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


ns = Collection("cluster", ssh_config, prepare_nodes, addons, deploy, destroy, status, lint_cloud_config)
