"""The Node and its Lease, following upstream k8s.io/kubernetes:
pkg/kubelet/kubelet_node_status.go (initialNode, registerWithAPIServer,
tryRegisterWithAPIServer, updateDefaultLabels), pkg/kubelet/nodestatus/setters.go (NodeAddress,
MachineInfo, NodeInfo), the lease: staging/src/k8s.io/component-helpers/apimachinery/lease/
controller.go with the kubelet's defaults (nodeLeaseDurationSeconds 40, renewed every quarter of
it, owned by the Node)."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

from tests.peers.k8s.apiclient import ApiError, Client
from tests.peers.k8s.kubelet.flags import Flags, parse_taints

LEASE_DURATION = 40


def goarch() -> str:
    m = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x"}.get(m, m)


def _read(path: str, default: str = "") -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return default


def machine_status(root_dir: str, max_pods: int, kubelet_version: str) -> dict:
    """capacity/allocatable/nodeInfo as nodestatus.MachineInfo and NodeInfo set them."""
    mem_kib = next(int(ln.split()[1]) for ln in Path("/proc/meminfo").read_text().splitlines() if ln.startswith("MemTotal:"))
    st = os.statvfs(root_dir)
    disk_kib = st.f_blocks * st.f_frsize // 1024
    capacity = {
        "cpu": str(os.cpu_count()),
        "memory": f"{mem_kib}Ki",
        "pods": str(max_pods),
        "ephemeral-storage": f"{disk_kib}Ki",
        "hugepages-1Gi": "0",
        "hugepages-2Mi": "0",
    }
    allocatable = dict(capacity, memory=f"{mem_kib - 100 * 1024}Ki", **{"ephemeral-storage": str(disk_kib * 1024 * 9 // 10)})
    os_release = dict(ln.split("=", 1) for ln in _read("/etc/os-release").splitlines() if "=" in ln)
    info = {
        "machineID": _read("/etc/machine-id"),
        "systemUUID": _read("/sys/class/dmi/id/product_uuid"),
        "bootID": _read("/proc/sys/kernel/random/boot_id"),
        "kernelVersion": platform.release(),
        "osImage": os_release.get("PRETTY_NAME", "").strip('"'),
        "containerRuntimeVersion": "osk8s-runtime-standin://1",
        "kubeletVersion": kubelet_version,
        "operatingSystem": "linux",
        "architecture": goarch(),
    }
    return {
        "capacity": capacity,
        "allocatable": allocatable,
        "nodeInfo": info,
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
    }


def initial_node(name: str, hostname: str, flags: Flags, config: dict, kubelet_version: str) -> dict:
    arch = goarch()
    labels = {
        "kubernetes.io/hostname": hostname,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": arch,
        "beta.kubernetes.io/os": "linux",
        "beta.kubernetes.io/arch": arch,
    }
    for kv in filter(None, flags.node_labels.split(",")):
        k, _, v = kv.partition("=")
        labels[k] = v
    for k, v in (config.get("nodeLabels") or {}).items():
        labels[k] = v
    taints = parse_taints(flags.register_with_taints) + list(config.get("registerWithTaints") or [])
    external = flags.cloud_provider == "external"
    if external:
        taints.append({"key": "node.cloudprovider.kubernetes.io/uninitialized", "value": "true", "effect": "NoSchedule"})
    annotations = {"volumes.kubernetes.io/controller-managed-attach-detach": "true"}
    node_ip = flags.node_ip
    if external and node_ip:
        annotations["alpha.kubernetes.io/provided-node-ip"] = node_ip
    status = machine_status(flags.root_dir, int(config.get("maxPods") or 110), kubelet_version)
    if node_ip:
        status["addresses"] = [{"type": "InternalIP", "address": node_ip}, {"type": "Hostname", "address": hostname}]
    elif external:  # nodestatus.NodeAddress: wait for the cloud provider to set them
        status["addresses"] = [{"type": "Hostname", "address": hostname}]
    node = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels, "annotations": annotations},
        "spec": {},
        "status": status,
    }
    if taints:
        node["spec"]["taints"] = taints
    return node


def register(client: Client, node: dict) -> dict:
    """tryRegisterWithAPIServer: create; if it exists, reconcile the default labels (never taints)."""
    try:
        return client.request("POST", "/api/v1/nodes", node)
    except ApiError as exc:
        if exc.status != 409:
            raise
    name = node["metadata"]["name"]
    existing = client.request("GET", f"/api/v1/nodes/{name}")
    want = {
        k: v
        for k, v in node["metadata"]["labels"].items()
        if k
        in (
            "kubernetes.io/hostname",
            "kubernetes.io/os",
            "kubernetes.io/arch",
            "beta.kubernetes.io/os",
            "beta.kubernetes.io/arch",
        )
        and existing["metadata"].get("labels", {}).get(k) != v
    }
    if want:
        existing = client.request(
            "PATCH",
            f"/api/v1/nodes/{name}",
            {"metadata": {"labels": want}},
            content_type="application/strategic-merge-patch+json",
        )
    return existing


def rfc3339nano(t: float | None = None) -> str:
    ns = time.time_ns() if t is None else int(t * 1e9)
    sec, frac = divmod(ns, 1_000_000_000)
    f = f"{frac:09d}".rstrip("0")
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + (f".{f}" if f else "") + "Z"


def rfc3339(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def micro_time() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e6):06d}Z"


def renew_lease(client: Client, name: str, node_uid: str) -> None:
    path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{name}"
    lease = client.request("GET", path, ok_missing=True)
    owner = [{"apiVersion": "v1", "kind": "Node", "name": name, "uid": node_uid}]
    if lease is None:
        client.request(
            "POST",
            "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
            {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": name, "namespace": "kube-node-lease", "ownerReferences": owner},
                "spec": {"holderIdentity": name, "leaseDurationSeconds": LEASE_DURATION, "renewTime": micro_time()},
            },
        )
        return
    lease["spec"].update(holderIdentity=name, leaseDurationSeconds=LEASE_DURATION, renewTime=micro_time())
    if not lease["metadata"].get("ownerReferences"):
        lease["metadata"]["ownerReferences"] = owner
    client.request("PUT", path, lease)
