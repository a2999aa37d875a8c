"""verify.pv: persistent storage through cinder-csi. The default StorageClass is cinder's; a PVC
without a class binds; its Cinder volume becomes in-use on the server of the Pod's node; a file
written by one Pod is read back by the next; after cleanup the volume is deleted (reclaimPolicy
Delete). A lab without a data plane is judged up to the attach: the pod's mount and the data are
skipped (harness.data_plane_skip)."""

from __future__ import annotations

import time

from osk8s_tasks.cluster.addons import CSI_DRIVER
from osk8s_tasks.core.engine import Status
from osk8s_tasks.verify import octavia as verify_cloud
from osk8s_tasks.verify.harness import Ctx, data_plane_skip, items, wait

ASSERTIONS = [
    "default StorageClass is cinder CSI",
    "PVC bound",
    "writer pod running",
    "cinder: volume in-use on the pod's node",
    "file written",
    "file read back by a new pod",
    "cleanup: volume deleted",
]
# what needs the data plane: the writer runs only once its node mounted the volume
DATA_PLANE = ["writer pod running", "file written", "file read back by a new pod"]
DEFAULT = "storageclass.kubernetes.io/is-default-class"


def docs(ctx: Ctx, write: bool) -> list[dict]:
    return ctx.render("manifests/verify/pv.yaml.j2", pod="writer" if write else "reader", write=write, nonce=ctx.nonce)


def default_class(api) -> tuple[bool, str]:
    classes = items(api, "/apis/storage.k8s.io/v1/storageclasses")
    default = [c for c in classes if c["metadata"].get("annotations", {}).get(DEFAULT) == "true"]
    if len(default) != 1:
        return False, (
            f"{len(default)} default StorageClasses ({', '.join(c['metadata']['name'] for c in default) or 'none'}): "
            "a PVC without a class needs exactly one. Fix: inv cluster.addons"
        )
    sc = default[0]
    if sc.get("provisioner") != CSI_DRIVER:
        return False, f"the default StorageClass {sc['metadata']['name']} uses {sc.get('provisioner')}, not {CSI_DRIVER}"
    if sc.get("reclaimPolicy", "Delete") != "Delete":
        return False, f"{sc['metadata']['name']} has reclaimPolicy {sc['reclaimPolicy']}: volumes would outlive their PVCs"
    return True, f"{sc['metadata']['name']}: {CSI_DRIVER}, reclaimPolicy Delete"


def _pvc(ctx: Ctx) -> dict:
    return ctx.api.request("GET", f"/api/v1/namespaces/{ctx.namespace}/persistentvolumeclaims/data") or {}


def _pod(ctx: Ctx, name: str) -> dict:
    return ctx.api.request("GET", f"/api/v1/namespaces/{ctx.namespace}/pods/{name}") or {}


def _phase(ctx: Ctx, name: str, want: tuple[str, ...]):
    def check():
        phase = _pod(ctx, name).get("status", {}).get("phase", "absent")
        return Status(phase in want, f"pod {name} is {phase}")

    return check


def _logs(ctx: Ctx, name: str) -> str:
    status, data = ctx.api.call("GET", f"/api/v1/namespaces/{ctx.namespace}/pods/{name}/log")
    return data.decode(errors="replace").strip() if status == 200 else f"(no logs: HTTP {status})"


def _wrote(ctx: Ctx, name: str):
    """The writer's output is its nonce: a Running pod has started its shell, not necessarily written,
    synced and read the file yet (sync on a real Cinder volume waits for the block device)."""

    def check():
        text = _logs(ctx, name)
        return Status(text == ctx.nonce, f"pod {name} printed {text[:80]!r} so far")

    return check


def _server_of(ctx: Ctx, node: str) -> str:
    n = ctx.api.request("GET", f"/api/v1/nodes/{node}") or {}
    return n.get("spec", {}).get("providerID", "").rsplit("/", 1)[-1]


def _gone(ctx: Ctx, pod: str):
    def check():
        return Status(not _pod(ctx, pod), f"pod {pod} deleted")

    return check


def run_pv(ctx: Ctx) -> None:
    timeout = ctx.settings.verify.timeout
    ok, detail = default_class(ctx.api)
    ctx.record("default StorageClass is cinder CSI", ok, detail)
    for leftover in ("writer", "reader"):  # an interrupted run's pod: its command cannot be changed in place
        if _pod(ctx, leftover):
            ctx.api.delete(docs(ctx, write=leftover == "writer")[-1])
            wait(_gone(ctx, leftover), timeout)
    writer = docs(ctx, write=True)
    ctx.apply(writer)
    t0 = time.monotonic()
    bound = wait(
        lambda: Status(
            _pvc(ctx).get("status", {}).get("phase") == "Bound",
            f"PVC data is {_pvc(ctx).get('status', {}).get('phase', 'absent')}",
        ),
        timeout,
    )
    volume = _pvc(ctx).get("spec", {}).get("volumeName", "")
    if not ctx.record(
        "PVC bound",
        bound[0],
        f"PVC data bound to {volume}"
        if bound[0]
        else f"{bound[1]}: cinder-csi did not provision a volume (kubectl -n {ctx.namespace} describe pvc data; "
        "csi-cinder-controllerplugin logs; Cinder quota)",
        t0,
    ):
        ctx.cleanup("pv", writer)
        return
    no_data = data_plane_skip(ctx.settings)
    if no_data:
        ctx.skip("writer pod running", no_data)
        running = True  # not judged: the attach gets the whole timeout
    else:
        t0 = time.monotonic()
        running = ctx.record("writer pod running", *wait(_phase(ctx, "writer", ("Running",)), timeout), t0)
    _attached(ctx, volume, timeout if running else 1)
    if no_data:
        ctx.skip("file written", no_data)
        ctx.skip("file read back by a new pod", no_data)
        ctx.cleanup("pv", writer, gone=_volume_gone(ctx, volume))
        return
    t0 = time.monotonic()
    wait(_wrote(ctx, "writer"), timeout if running else 1)
    text = _logs(ctx, "writer")
    ctx.record(
        "file written",
        text == ctx.nonce,
        f"the pod wrote and read {text!r}"
        if text == ctx.nonce
        else f"the pod's output is {text[:120]!r}, not {ctx.nonce!r}",
        t0,
    )
    ctx.api.delete(writer[-1])
    wait(_gone(ctx, "writer"), timeout)
    reader = docs(ctx, write=False)
    ctx.apply(reader[-1:])
    t0 = time.monotonic()
    done, why = wait(_phase(ctx, "reader", ("Succeeded", "Failed")), timeout)
    text = _logs(ctx, "reader")
    ctx.record(
        "file read back by a new pod",
        text == ctx.nonce,
        f"reader found {text!r} on the volume"
        if text == ctx.nonce
        else f"reader found {text[:120]!r}, not {ctx.nonce!r} ({why})",
        t0,
    )
    ctx.cleanup("pv", writer[:-1] + reader[-1:], gone=_volume_gone(ctx, volume))


def _attached(ctx: Ctx, volume: str, timeout: float) -> None:
    """The PVC's Cinder volume in-use on the Nova server of the writer's node. The node is read on
    each look: with WaitForFirstConsumer the scheduler binds the PVC before it sets the pod's node
    (kube-scheduler VolumeBinding PreBind, then Bind), so a check that does not wait for the pod
    to run first would otherwise judge the volume on no server."""
    t0, node = time.monotonic(), [""]

    def check():
        node[0] = _pod(ctx, "writer").get("spec", {}).get("nodeName", "")
        if not node[0]:
            return Status(False, "pod writer has no node yet")
        found = verify_cloud.check_volume(ctx.clouds.main, volume, _server_of(ctx, node[0]))
        return Status(found[0].ok, found[0].detail)

    ok, detail = wait(check, timeout)
    ctx.record("cinder: volume in-use on the pod's node", ok, f"{detail} (node {node[0]})", t0)


def _volume_gone(ctx: Ctx, name: str):
    def check():
        vol = next((v for v in ctx.clouds.main.block_storage.volumes() if v.name == name), None)
        return Status(
            vol is None,
            f"Cinder volume {name} deleted (reclaimPolicy Delete)"
            if vol is None
            else f"Cinder volume {name} still exists ({vol.status})",
        )

    return check
