"""verify.status and verify.destroy: what verify runs left behind (with --keep or when
interrupted), found by the lab label and the names the cloud provider gives its OpenStack objects."""

from __future__ import annotations

from osk8s_tasks.core.engine import Status, Step, StepFailed
from osk8s_tasks.openstack.teardown import CSI_CLUSTER
from osk8s_tasks.verify.harness import Ctx, items, wait
from osk8s_tasks.verify.keystone import check as verify_keystone

KINDS = (
    ("Ingress", "/apis/networking.k8s.io/v1/namespaces/{ns}/ingresses"),
    ("Service", "/api/v1/namespaces/{ns}/services"),
    ("Deployment", "/apis/apps/v1/namespaces/{ns}/deployments"),
    ("Pod", "/api/v1/namespaces/{ns}/pods"),
    ("PersistentVolumeClaim", "/api/v1/namespaces/{ns}/persistentvolumeclaims"),
)


def objects(s, api) -> list[str]:
    ns, sel = s.settings.verify.namespace, f"osk8s.io/lab={s.settings.lab.name}"
    return [f"{kind} {ns}/{o['metadata']['name']}" for kind, path in KINDS for o in items(api, path.format(ns=ns), sel)]


PVC_NAMESPACE = "csi.storage.k8s.io/pvc/namespace"  # csi-provisioner --extra-create-metadata


def cloud_objects(s, clouds) -> list[str]:
    """Octavia load balancers of the verify namespace (OCCM and octavia-ingress-controller names) and the
    Cinder volumes of its claims (cinder-csi's cluster key and the claim's namespace in their metadata:
    pkg/csi/cinder/controllerserver.go CreateVolume, external-provisioner's extra create metadata)."""
    lab, ns = s.settings.lab.name, s.settings.verify.namespace
    prefixes = (f"kube_service_{lab}_{ns}_", f"kube_ingress_{lab}_{ns}_")
    lbs = [
        f"load balancer {lb.name} ({lb.provisioning_status})"
        for lb in clouds.main.load_balancer.load_balancers()
        if lb.name.startswith(prefixes)
    ]
    volumes = [
        f"volume {v.name} ({v.status})"
        for v in clouds.main.block_storage.volumes(details=True)
        if (v.metadata or {}).get(CSI_CLUSTER) == lab and (v.metadata or {}).get(PVC_NAMESPACE) == ns
    ]
    return lbs + volumes


def text(s, api, clouds) -> str:
    found, left = objects(s, api), cloud_objects(s, clouds)
    lines = [f"verify objects in namespace {s.settings.verify.namespace}: {len(found)}"]
    lines += [f"  {x}" for x in found]
    lines.append(f"OpenStack objects of those (load balancers, volumes): {len(left)}")
    lines += [f"  {x}" for x in left]
    if found or left:
        lines.append("remove them with: inv verify.destroy")
    return "\n".join(lines)


def destroy_steps(s, api, clouds) -> list[Step]:
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": s.settings.verify.namespace}}
    ctx = Ctx(s, api, clouds, keep=False)

    def check_ns():
        live = api.get(ns)
        if live is None:
            return Status(True, f"no namespace {s.settings.verify.namespace}")
        if live.get("metadata", {}).get("labels", {}).get("osk8s.io/lab") != s.settings.lab.name:
            return Status(True, f"namespace {s.settings.verify.namespace} is not this lab's: left alone")
        return Status(
            False,
            f"namespace {s.settings.verify.namespace} exists ({len(objects(s, api))} test objects)",
            f"delete namespace {s.settings.verify.namespace} (the cloud provider deletes its load balancers "
            "and the volumes)",
        )

    def delete_ns():
        """The namespace goes once what is in it went: the Services after OCCM's finalizer deleted their
        load balancers, the claims (and with reclaimPolicy Delete their volumes) after their pods."""
        if not api.get(ns).get("metadata", {}).get("deletionTimestamp"):
            api.delete(ns)
        ok, detail = wait(
            lambda: Status(api.get(ns) is None, f"namespace {s.settings.verify.namespace} is terminating"),
            s.settings.verify.timeout,
        )
        if not ok:
            raise StepFailed(f"{detail}: kubectl get all -n {s.settings.verify.namespace} shows what holds it")

    def check_cloud():
        left = cloud_objects(s, clouds)
        return Status(
            not left,
            "no load balancer or volume of the verify namespace in OpenStack" if not left else "; ".join(left),
            "wait for the cloud provider and cinder-csi to delete them",
        )

    def wait_cloud():
        ok, detail = wait(check_cloud, s.settings.verify.timeout)
        if not ok:
            raise StepFailed(f"{detail}. Is the cloud controller running? inv openstack.teardown removes them too")

    def check_keystone():
        _, ident, role = verify_keystone.viewer_grant(ctx)
        has = role is not None
        return Status(
            not has,
            f"{ident['username']} has no {s.settings.verify.viewer_role} role from verify"
            if not has
            else f"{ident['username']} has role {role.name}",
            f"take role {s.settings.verify.viewer_role} from {ident['username']}",
        )

    return [
        Step("verify namespace", check_ns, delete_ns),
        Step("verify load balancers and volumes", check_cloud, wait_cloud),
        Step("keystone test grant", check_keystone, lambda: verify_keystone.cleanup_keystone(ctx)),
    ]
