"""The cinder-csi NODE plugin, as the kubelet meets it: a stand-in, part of the kubelet stand-in.

Why a stand-in: the node plugin pod (osk8s' csi-cinder-nodeplugin DaemonSet) is node-driver-registrar +
livenessprobe + cinder-csi-plugin --provide-controller-service=false. node-driver-registrar cannot be
built here (its module path lacks the /v2 its tags need: tests/peers/k8s/README.md), and the node
service needs what a test node does not have: the instance metadata (config drive or the metadata
API at 169.254.169.254) and the kubelet's mounts (NodeStage formats and mounts a block device).

What it does, as upstream does it once the pod runs on the node (k8s.io/kubernetes v1.37.2 unless named):
- node-driver-registrar puts its registration socket in /var/lib/kubelet/plugins_registry; the kubelet's
  plugin manager (pkg/kubelet/pluginmanager) calls its GetInfo, then the CSI plugin's registration
  handler (pkg/volume/csi/csi_plugin.go RegisterPlugin) calls the driver's NodeGetInfo and hands the
  answer to pkg/volume/csi/nodeinfomanager/nodeinfomanager.go InstallCSIDriver:
  * the Node: annotation csi.volume.kubernetes.io/nodeid = {"<driver>": "<node id>"} (merged into the
    JSON map already there) and one label per topology segment (a different existing value is a
    "topology value collision" error, nothing is written);
  * the CSINode named as the node, owned by the Node (created if missing), its spec.drivers entry for
    the driver replaced by {name, nodeID, topologyKeys (sorted), allocatable.count when the limit > 0};
    written only when it differs.
- NodeGetInfo is cinder-csi's (cloud-provider-openstack v1.36.0 pkg/csi/cinder/nodeserver.go): NodeId =
  the instance ID from the metadata = the Nova server's ID, which is also the suffix of the providerID
  openstack:///<id> OCCM sets, so the registration waits for that (on a real node the metadata is there
  from boot); MaxVolumesPerNode = [BlockStorage] node-volume-attach-limit of the plugin's cloud.conf (read
  from the Secret the pod mounts; 0 when unset, values outside 0..256 become 256: utils.go
  NewNodeServer); with --with-topology (default true) AccessibleTopology {topology.cinder.csi.openstack.org/zone:
  the availability zone from the metadata} plus each --additional-topology k=v. The zone is Nova's AZ of
  the server, which OCCM also writes to the node label topology.kubernetes.io/zone; it is taken from there.
- when the pod is deleted (or gone), the registration socket goes away and the plugin manager calls
  UninstallCSIDriver: the driver leaves CSINode.spec.drivers and the nodeid annotation; the pod is
  then deleted for good (grace 0, UID precondition), as the kubelet finishes a pod that stopped.
- the pod's status is what the kubelet reports for a running pod: Running, every container started
  and ready (no probes are declared in the DaemonSet), hostNetwork: podIP = hostIP = the node's IP.

A pod's volume (`NodePlugin.publish`, the pod runner's CSI hook for persistentVolumeClaim volumes), as the
kubelet and the node service set it up (pkg/volume/csi/csi_attacher.go WaitForAttach and MountDevice,
csi_mounter.go SetUpAt; cloud-provider-openstack pkg/csi/cinder/nodeserver.go NodeStageVolume,
NodePublishVolume):
- the driver must be registered on the node ("driver name ... not found in the list of registered CSI
  drivers" otherwise);
- WaitForAttach: the VolumeAttachment csi-<sha256(volume handle + driver + node)> says attached (the real
  csi-attacher sets it once cinder-csi's ControllerPublishVolume had Nova attach the volume);
- NodeStage looks for the block device of the volume on the node (/dev/disk/by-id/virtio-<id>), which
  exists only while Nova has the volume attached to this server: here, the volume's attachments in Cinder
  are asked (with the plugin's cloud.conf credentials, as the node service holds them) for this node's
  server, and the volume must be in-use there;
- the "filesystem" on the volume is a directory per Cinder volume ID under VOLUME_STORE (peers.env), shared
  by the nodes as the volume is by the servers it moves between; NodePublish bind-mounts it into the pod
  (the pod runner links it at pods/<uid>/volumes/kubernetes.io~csi/<pv>/mount).
Why: Cinder's fake volume driver stores no data and the test nodes have no block devices, so the data a pod
writes lives in that directory; the rest (provisioning, attaching, detaching, deleting) is the real
controllers' work on the real Cinder and Nova.

Not done: the node service's gRPC itself, NodeUnstage/NodeUnpublish (the directory stays until the lab
goes), volume stats, block volume mode, fsGroup ownership changes.
"""

from __future__ import annotations

import base64
import configparser
import hashlib
import json
import os
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.peers.k8s.apiclient import ApiError

DRIVER = "cinder.csi.openstack.org"
REGISTRAR = "registry.k8s.io/sig-storage/csi-node-driver-registrar"
PLUGIN = "registry.k8s.io/provider-os/cinder-csi-plugin"
REGISTRATION_PATH = f"/var/lib/kubelet/plugins/{DRIVER}/csi.sock"
NODE_ID_ANNOTATION = "csi.volume.kubernetes.io/nodeid"
TOPOLOGY_KEY = f"topology.{DRIVER}/zone"
ZONE_LABEL = "topology.kubernetes.io/zone"
MAX_VOLUMES = 256


def _repo(image: str) -> str:
    image = image.split("@", 1)[0]
    head, sep, tail = image.rpartition(":")
    return head if sep and "/" not in tail else image


def _args(c: dict) -> list[str]:
    return list(c.get("command") or []) + list(c.get("args") or [])


def is_node_plugin(pod: dict) -> bool:
    """A pod with node-driver-registrar registering cinder-csi's socket, beside cinder-csi-plugin."""
    cs = pod["spec"].get("containers") or []
    registrar = any(
        _repo(c.get("image", "")) == REGISTRAR and f"--kubelet-registration-path={REGISTRATION_PATH}" in _args(c) for c in cs
    )
    return registrar and any(_repo(c.get("image", "")) == PLUGIN for c in cs)


def plugin_flags(pod: dict) -> tuple[bool, dict[str, str]]:
    """(--with-topology, --additional-topology map) of the cinder-csi-plugin container (cobra/pflag)."""
    c = next(c for c in pod["spec"]["containers"] if _repo(c.get("image", "")) == PLUGIN)
    with_topology, extra = True, {}
    args = _args(c)
    i = 0
    while i < len(args):
        a = args[i]
        name, eq, value = a.lstrip("-").partition("=")
        if name == "with-topology":
            with_topology = value.lower() not in ("false", "0", "f") if eq else True
        elif name == "additional-topology":
            if not eq and i + 1 < len(args):
                i += 1
                value = args[i]
            for kv in filter(None, value.split(",")):
                k, _, v = kv.partition("=")
                extra[k] = v
        i += 1
    return with_topology, extra


def attach_limit(cloud_conf: str) -> int:
    """[BlockStorage] node-volume-attach-limit (gcfg; 0 when unset), clamped as NewNodeServer does."""
    cp = configparser.ConfigParser(strict=False, interpolation=None)
    cp.read_string(cloud_conf)
    try:
        limit = int(cp.get("BlockStorage", "node-volume-attach-limit", fallback="0"))
    except ValueError:
        limit = 0
    return MAX_VOLUMES if limit < 0 or limit > MAX_VOLUMES else limit


def node_info(pod: dict, node: dict, cloud_conf: str) -> tuple[str, int, dict[str, str]] | None:
    """cinder-csi's NodeGetInfo on this node: (node id, max volumes, topology), None while the
    instance is not known yet (no providerID)."""
    provider = (node.get("spec") or {}).get("providerID") or ""
    if not provider.startswith("openstack://"):
        return None
    node_id = provider.rsplit("/", 1)[-1]
    with_topology, extra = plugin_flags(pod)
    topology = {}
    if with_topology:
        zone = (node["metadata"].get("labels") or {}).get(ZONE_LABEL)
        if not zone:
            return None
        topology = {TOPOLOGY_KEY: zone, **extra}
    return node_id, attach_limit(cloud_conf), topology


def csinode_driver(node_id: str, limit: int, topology: dict[str, str]) -> dict:
    d = {"name": DRIVER, "nodeID": node_id, "topologyKeys": sorted(topology)}
    if limit > 0:
        d["allocatable"] = {"count": limit}
    return d


def same_driver(have: dict, want: dict) -> bool:
    """installDriverToCSINode's test for "no change" (topology keys as a set, the count kept)."""
    return (
        have.get("nodeID") == want["nodeID"]
        and set(have.get("topologyKeys") or []) == set(want["topologyKeys"])
        and (have.get("allocatable") or {}).get("count") == (want.get("allocatable") or {}).get("count")
    )


def pod_status(pod: dict, node_ip: str, started: str, current: dict) -> dict:
    old = {c["type"]: c for c in current.get("conditions") or []}

    def cond(kind):
        prev = old.get(kind)
        return {
            "type": kind,
            "status": "True",
            "lastTransitionTime": prev["lastTransitionTime"] if prev and prev.get("status") == "True" else started,
        }

    conditions = [c for c in current.get("conditions") or [] if c["type"] == "PodScheduled"]
    conditions += [cond(k) for k in ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady")]
    return {
        "phase": "Running",
        "conditions": conditions,
        "hostIP": node_ip,
        "hostIPs": [{"ip": node_ip}],
        "podIP": node_ip,
        "podIPs": [{"ip": node_ip}],
        "startTime": current.get("startTime") or started,
        "containerStatuses": [
            {
                "name": c["name"],
                "image": c["image"],
                "imageID": "",
                "ready": True,
                "started": True,
                "restartCount": 0,
                "containerID": f"osk8s-csinode-standin://{pod['metadata']['uid'][:8]}-{c['name']}",
                "state": {"running": {"startedAt": started}},
            }
            for c in pod["spec"]["containers"]
        ],
    }


def attachment_name(volume_handle: str, driver: str, node: str) -> str:
    """pkg/volume/csi/csi_attacher.go getAttachmentName."""
    return "csi-" + hashlib.sha256(f"{volume_handle}{driver}{node}".encode()).hexdigest()


def cloud_global(cloud_conf: str) -> dict[str, str]:
    cp = configparser.ConfigParser(strict=False, interpolation=None)
    cp.read_string(cloud_conf)
    return {k: v.strip().strip('"') for k, v in cp.items("Global")} if cp.has_section("Global") else {}


def cinder_volume(cloud_conf: str, volume_id: str, timeout: float = 15) -> dict:
    """The volume as Cinder shows it, asked with the [Global] application credential of cloud.conf
    (Keystone v3 token, then the block-storage endpoint of the catalog in the region)."""
    g = cloud_global(cloud_conf)
    if not g.get("application-credential-id") or not g.get("application-credential-secret"):
        raise ValueError("osk8s CSI stand-in: cloud.conf [Global] has no application credential")
    auth = {
        "auth": {
            "identity": {
                "methods": ["application_credential"],
                "application_credential": {
                    "id": g["application-credential-id"],
                    "secret": g["application-credential-secret"],
                },
            }
        }
    }
    req = urllib.request.Request(
        g["auth-url"].rstrip("/") + "/auth/tokens", json.dumps(auth).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=timeout) as r:
        token, body = r.headers["X-Subject-Token"], json.load(r)
    region = g.get("region")
    url = next(
        e["url"]
        for svc in body["token"]["catalog"]
        if svc["type"] in ("block-storage", "volumev3")
        for e in svc["endpoints"]
        if e["interface"] == "public" and (not region or e.get("region_id") == region)
    )
    req = urllib.request.Request(f"{url.rstrip('/')}/volumes/{volume_id}", headers={"X-Auth-Token": token})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.load(r)["volume"]


class NodePlugin:
    """One node's registration of cinder-csi, driven by the kubelet stand-in's pod loop; and the
    node service's part in setting up a pod's cinder volume (publish)."""

    def __init__(self, client, node_name: str, log, volume_store: Path | None = None):
        self.client, self.node_name, self.log = client, node_name, log
        self.volume_store = volume_store
        self.registered: tuple | None = None
        self.plugin_pod: dict | None = None
        self.waiting = ""
        self.started: dict[str, str] = {}

    def publish(self, pod: dict, volume: str, pv: dict) -> Path:
        """The directory holding the volume's data once it is attached to this node's server; MountError
        (the pod runner's) until then, with the kubelet's words."""
        from tests.peers.k8s.pods import MountError

        csi = pv["spec"]["csi"]
        name, handle, driver = pv["metadata"]["name"], csi["volumeHandle"], csi["driver"]
        if driver != DRIVER or self.registered is None or self.plugin_pod is None:
            raise MountError(
                f'MountVolume.MountDevice failed for volume "{name}" : kubernetes.io/csi: attacher.'
                f"MountDevice failed to create newCsiDriverClient: driver name {driver} not found in the list "
                "of registered CSI drivers"
            )
        va_name = attachment_name(handle, driver, self.node_name)
        va = self.client.request("GET", f"/apis/storage.k8s.io/v1/volumeattachments/{va_name}", ok_missing=True)
        if va is None or not (va.get("status") or {}).get("attached"):
            why = ((va or {}).get("status") or {}).get("attachError", {}).get("message") or "not attached yet"
            raise MountError(f'MountVolume.WaitForAttach failed for volume "{name}" : volume attachment {va_name}: {why}')
        server = self.registered[0]
        try:
            vol = cinder_volume(self.cloud_conf(self.plugin_pod), handle)
        except (OSError, ValueError, KeyError, StopIteration, urllib.error.URLError) as exc:
            raise MountError(
                f'MountVolume.MountDevice failed for volume "{name}" : rpc error: code = Internal desc = '
                f"[NodeStageVolume] osk8s stand-in: Cinder not asked: {exc}"
            ) from exc
        servers = [a.get("server_id") for a in vol.get("attachments") or []]
        if vol.get("status") != "in-use" or server not in servers:
            raise MountError(
                f'MountVolume.MountDevice failed for volume "{name}" : rpc error: code = Internal desc = '
                f"[NodeStageVolume] Failed to find devicePath for volume: volume {handle} is "
                f"{vol.get('status')} (attached to {servers or 'no server'}), not on this server {server}"
            )
        if self.volume_store is None:
            raise MountError("osk8s CSI stand-in: no VOLUME_STORE in peers.env")
        data = self.volume_store / handle  # the filesystem on the volume ("formatted" on first stage)
        data.mkdir(parents=True, exist_ok=True)
        os.chmod(data, 0o777)
        return data

    def sync(self, pods: list[dict], node_ip: str) -> list[str]:
        """The node plugin pods among `pods` (all bound to this node): status, registration, deletion.
        Returns the UIDs it took care of."""
        mine = [p for p in pods if is_node_plugin(p)]
        live = [p for p in mine if not p["metadata"].get("deletionTimestamp")]
        for p in mine:
            if p["metadata"].get("deletionTimestamp"):
                self.finish(p)
        if not live:
            self.plugin_pod = None
            if self.registered is not None:
                self.uninstall()
            return [p["metadata"]["uid"] for p in mine]
        pod = live[0]
        self.plugin_pod = pod
        self.report(pod, node_ip)
        self.register(pod)
        return [p["metadata"]["uid"] for p in mine]

    def report(self, pod: dict, node_ip: str) -> None:
        md = pod["metadata"]
        started = self.started.setdefault(md["uid"], time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        current = pod.get("status") or {}
        want = pod_status(pod, node_ip, started, current)
        if all(current.get(k) == v for k, v in want.items()):
            return
        self.client.request(
            "PATCH",
            f"/api/v1/namespaces/{md['namespace']}/pods/{md['name']}/status",
            {"metadata": {"uid": md["uid"]}, "status": want},
            content_type="application/merge-patch+json",
        )

    def cloud_conf(self, pod: dict) -> str:
        """The cloud.conf the plugin container mounts at --cloud-config (its Secret volume)."""
        c = next(c for c in pod["spec"]["containers"] if _repo(c.get("image", "")) == PLUGIN)
        path = next((a.split("=", 1)[1] for a in _args(c) if a.startswith("--cloud-config=")), "/etc/config/cloud.conf")
        vols = {v["name"]: v for v in pod["spec"].get("volumes") or []}
        for m in c.get("volumeMounts") or []:
            mount = m["mountPath"].rstrip("/")
            if path.startswith(mount + "/") and "secret" in vols.get(m["name"], {}):
                key = path[len(mount) + 1 :]
                ns, name = pod["metadata"]["namespace"], vols[m["name"]]["secret"]["secretName"]
                secret = self.client.request("GET", f"/api/v1/namespaces/{ns}/secrets/{name}")
                return base64.b64decode((secret.get("data") or {}).get(key, "")).decode()
        return ""

    def register(self, pod: dict) -> None:
        node = self.client.request("GET", f"/api/v1/nodes/{self.node_name}")
        info = node_info(pod, node, self.cloud_conf(pod))
        if info is None:
            why = "the instance ID and zone (the node's providerID and topology.kubernetes.io/zone, which OCCM sets)"
            if self.waiting != why:
                self.waiting = why
                self.log(f"csi {DRIVER}: NodeGetInfo waits for {why}")
            return
        if info == self.registered:
            return
        node_id, limit, topology = info
        self.install(node, node_id, limit, topology)
        self.registered, self.waiting = info, ""
        self.log(f"csi {DRIVER} registered: nodeID {node_id}, topology {topology}, max volumes {limit}")

    def install(self, node: dict, node_id: str, limit: int, topology: dict[str, str]) -> None:
        """nodeinfomanager InstallCSIDriver: the Node first, then the CSINode."""
        md = node["metadata"]
        labels, annotations = md.get("labels") or {}, md.get("annotations") or {}
        for k, v in topology.items():
            if k in labels and labels[k] != v:
                raise RuntimeError(
                    f"detected topology value collision: driver reported {k!r}:{v!r} but existing "
                    f"label is {k!r}:{labels[k]!r}"
                )
        ids = json.loads(annotations.get(NODE_ID_ANNOTATION) or "{}")
        patch: dict = {}
        if ids.get(DRIVER) != node_id:
            patch.setdefault("metadata", {})["annotations"] = {
                NODE_ID_ANNOTATION: json.dumps({**ids, DRIVER: node_id}, separators=(",", ":"))
            }
        new_labels = {k: v for k, v in topology.items() if labels.get(k) != v}
        if new_labels:
            patch.setdefault("metadata", {})["labels"] = new_labels
        if patch:
            patch["metadata"]["resourceVersion"] = md["resourceVersion"]
            self.client.request(
                "PATCH", f"/api/v1/nodes/{self.node_name}", patch, content_type="application/merge-patch+json"
            )
        path = f"/apis/storage.k8s.io/v1/csinodes/{self.node_name}"
        want = csinode_driver(node_id, limit, topology)
        csinode = self.client.request("GET", path, ok_missing=True)
        if csinode is None:
            csinode = self.client.request(
                "POST",
                "/apis/storage.k8s.io/v1/csinodes",
                {
                    "apiVersion": "storage.k8s.io/v1",
                    "kind": "CSINode",
                    "metadata": {
                        "name": self.node_name,
                        "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": self.node_name, "uid": md["uid"]}],
                    },
                    "spec": {"drivers": []},
                },
            )
        drivers = csinode["spec"].get("drivers") or []
        have = next((d for d in drivers if d["name"] == DRIVER), None)
        if have is not None and same_driver(have, want):
            return
        csinode["spec"]["drivers"] = [d for d in drivers if d["name"] != DRIVER] + [want]
        self.client.request("PUT", path, csinode)

    def uninstall(self) -> None:
        """nodeinfomanager UninstallCSIDriver: out of CSINode, then out of the node's annotation."""
        path = f"/apis/storage.k8s.io/v1/csinodes/{self.node_name}"
        csinode = self.client.request("GET", path, ok_missing=True)
        if csinode is not None and any(d["name"] == DRIVER for d in csinode["spec"].get("drivers") or []):
            csinode["spec"]["drivers"] = [d for d in csinode["spec"]["drivers"] if d["name"] != DRIVER]
            self.client.request("PUT", path, csinode)
        node = self.client.request("GET", f"/api/v1/nodes/{self.node_name}", ok_missing=True)
        if node is not None:
            ids = json.loads((node["metadata"].get("annotations") or {}).get(NODE_ID_ANNOTATION) or "{}")
            if DRIVER in ids:
                del ids[DRIVER]
                value = json.dumps(ids, separators=(",", ":")) if ids else None
                self.client.request(
                    "PATCH",
                    f"/api/v1/nodes/{self.node_name}",
                    {"metadata": {"annotations": {NODE_ID_ANNOTATION: value}}},
                    content_type="application/merge-patch+json",
                )
        self.registered = None
        self.log(f"csi {DRIVER} unregistered (its node plugin pod is gone)")

    def finish(self, pod: dict) -> None:
        md = pod["metadata"]
        if self.registered is not None:
            self.uninstall()
        try:
            self.client.request(
                "DELETE",
                f"/api/v1/namespaces/{md['namespace']}/pods/{md['name']}",
                {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0, "preconditions": {"uid": md["uid"]}},
                ok_missing=True,
            )
        except ApiError as exc:
            if exc.status != 409:  # another pod of that name by now
                raise
        self.started.pop(md["uid"], None)
