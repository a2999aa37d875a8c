"""`cluster.destroy`: undo what the tool made, cluster first, then the cloud (openstack.teardown),
so no load balancer or volume the cloud provider created is left behind."""

from __future__ import annotations

from osk8s_tasks.cluster.addons import api_of, documents
from osk8s_tasks.cluster.control_plane import KUBECTL
from osk8s_tasks.cluster.nodes import connections
from osk8s_tasks.core import kube, lab
from osk8s_tasks.core.engine import Status, Step, StepFailed
from osk8s_tasks.core.wait import until
from osk8s_tasks.openstack import clouds as cloud
from osk8s_tasks.openstack import teardown as openstack_teardown
from osk8s_tasks.openstack.preflight import preflight_steps
from osk8s_tasks.openstack.steps import report_api


def api_steps(s, api) -> list[Step]:
    def delete_all(what: str, listing, prefix: str, who: str) -> Step:
        """Every object `listing()` returns, deleted so that `who` removes the load balancer behind it.
        The delete only marks them: `who`'s finalizer (OCCM: service.kubernetes.io/load-balancer-cleanup,
        k8s.io/cloud-provider controllers/service) deletes the load balancer, then the object goes. So
        this waits until they are gone, before the add-ons (the controllers themselves) are deleted."""

        def check():
            found = ", ".join(f"{x['metadata']['namespace']}/{x['metadata']['name']}" for x in listing())
            return Status(
                not found,
                f"no {what} left" if not found else f"{what}: {found}",
                f"delete {found} ({who} deletes their Octavia load balancers)",
            )

        def delete():
            for x in listing():
                m = x["metadata"]
                if not m.get("deletionTimestamp"):
                    api.request("DELETE", f"{prefix}/namespaces/{m['namespace']}/{kube.KINDS[x['kind']][1]}/{m['name']}")
            ok, _ = until(check, s.settings.verify.timeout, what="cluster.destroy")
            if not ok:
                left = ", ".join(f"{x['metadata']['namespace']}/{x['metadata']['name']}" for x in listing())
                raise StepFailed(
                    f"{what} still present after {s.settings.verify.timeout} s: {left} (their finalizer "
                    f"waits for {who}: its logs say why). Fix: repair it, then run cluster.destroy again"
                )

        return Step(what, check, delete)

    services = lambda: [
        dict(x, kind="Service")
        for x in api.items("/api/v1/services")  # noqa: E731
        if x.get("spec", {}).get("type") == "LoadBalancer"
    ]
    ingresses = lambda: [dict(x, kind="Ingress") for x in api.items("/apis/networking.k8s.io/v1/ingresses")]  # noqa: E731
    docs = list(reversed(documents(s, cloud.Clouds(s.settings))))

    def check_addons():
        present = [kube.label(d) for d in docs if api.get(d) is not None]
        return Status(
            not present,
            "no add-on object of the tool left" if not present else f"{len(present)} add-on objects",
            "delete " + ", ".join(present),
        )

    def delete_addons():
        for d in docs:
            if api.get(d) is not None:
                api.request("DELETE", kube.path_of(d))

    return [
        delete_all("Ingresses", ingresses, "/apis/networking.k8s.io/v1", "octavia-ingress-controller"),
        delete_all("LoadBalancer Services", services, "/api/v1", "the cloud provider"),
        Step("add-ons", check_addons, delete_addons),
    ]


def drain_steps(s, master_remote) -> list[Step]:
    """One per worker, in sequence: they all talk through the control plane's one connection."""
    m, steps = master_remote, []
    for name in [n for n, role in lab.node_names(s.settings).items() if role == "worker"]:

        def check(name=name):
            if m.run("test -f /etc/kubernetes/admin.conf", warn=True).exited:
                return Status(True, "no control plane: nothing to drain from")
            out = m.run(f"{KUBECTL} get node {name} -o jsonpath='{{.spec.unschedulable}}'", sudo=True, warn=True)
            drained = out.exited or out.stdout.strip() == "true"
            return Status(drained, "drained or not in the cluster" if drained else f"{name} schedulable", f"drain {name}")

        steps.append(
            Step(
                "drained",
                check,
                lambda name=name: m.run(
                    f"{KUBECTL} drain {name} --ignore-daemonsets --delete-emptydir-data --force --timeout=300s",
                    sudo=True,
                    timeout=600,
                ),
                node=name,
            )
        )
    return steps


def reset_step(r, name: str) -> Step:
    def check():
        left = r.run("ls /etc/kubernetes/*.conf 2>/dev/null", warn=True).stdout.split()
        return Status(
            not left,
            "kubeadm reset done (no /etc/kubernetes/*.conf)" if not left else f"{', '.join(left)} present",
            "kubeadm reset -f",
        )

    return Step("kubeadm reset", check, lambda: r.run("kubeadm reset -f", sudo=True, timeout=600), node=name)


def run_destroy(s) -> None:
    kubeconfig = lab.admin_conf(s.settings)
    if kubeconfig.exists():
        try:
            with api_of(s) as api:
                s.converge(api_steps(s, api))
        except StepFailed as exc:
            s.log.warning("cluster.api_unreachable", reason=str(exc), then="openstack.teardown removes the cloud objects")
    master = lab.control_plane(s.settings)
    try:
        with connections(s) as remotes:
            s.converge(drain_steps(s, remotes[master]))
            s.converge_nodes({n: [reset_step(r, n)] for n, r in remotes.items() if n != master})  # workers first
            s.converge([reset_step(remotes[master], master)])
    except StepFailed as exc:
        if "no ssh_config for the nodes" not in str(exc):
            raise
        s.log.info("cluster.nodes_unknown", reason=str(exc))

    def check_local():
        return Status(
            not kubeconfig.exists(),
            "no local admin kubeconfig" if not kubeconfig.exists() else "local admin.conf",
            f"remove {kubeconfig}",
        )

    s.converge([Step("local kubeconfig", check_local, lambda: kubeconfig.unlink(missing_ok=True))])
    clouds = cloud.Clouds(s.settings)
    try:
        s.converge(preflight_steps(s, clouds)[:2])
        s.converge(openstack_teardown.teardown_steps(s, clouds))
    finally:
        report_api(s, clouds)
