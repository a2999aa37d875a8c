"""Static pods and their mirror pods, following upstream k8s.io/kubernetes:
pkg/kubelet/config/file.go and config/common.go (the manifests
of staticPodPath, name "<name>-<node>", UID a hash of the manifest), pkg/kubelet/kuberuntime
(restartPolicy Always with the crash-loop back-off, the grace period, logs under /var/log/pods,
kuberuntime_gc.go evictPodLogsDirectories), pkg/volume/hostpath (the hostPath types),
pkg/kubelet/pod/mirror_client.go and kubelet.go deleteOrphanedMirrorPods (mirror pods), and
pkg/kubelet/status (the static pod's status on its mirror pod). An image is a binary built here:
see STATIC_IMAGES and container_argv."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.peers.k8s import kwok as kwokmod
from tests.peers.k8s.apiclient import ApiError, Client
from tests.peers.k8s.kubelet.flags import log
from tests.peers.k8s.kubelet.node import rfc3339, rfc3339nano
from tests.peers.k8s.runtime import Container, Runtime

# static pods: image repository -> binary (the only translation), and which version it must carry
STATIC_IMAGES = {
    "registry.k8s.io/kube-apiserver": "kube-apiserver",
    "registry.k8s.io/kube-controller-manager": "kube-controller-manager",
    "registry.k8s.io/kube-scheduler": "kube-scheduler",
    "registry.k8s.io/etcd": "etcd",
}


CRASH_BACKOFF_INITIAL, CRASH_BACKOFF_MAX, CRASH_BACKOFF_RESET = 10.0, 300.0, 600.0


@dataclass
class StaticPod:
    file: str
    uid: str
    name: str
    namespace: str
    spec: dict
    doc: dict = field(default_factory=dict)
    seen: str = ""


def fnv128a(data: bytes) -> str:
    """hash/fnv New128a, hex (the hasher config/common.go uses for a static pod's UID)."""
    h = 0x6C62272E07BB014262B821756295C58D
    for b in data:
        h = ((h ^ b) * 0x0000000001000000000000000000013B) & ((1 << 128) - 1)
    return f"{h:032x}"


def read_static_pods(directory: str, node: str) -> dict[str, StaticPod]:
    """config/file.go + common.go: {uid: pod} of the manifests in `directory`."""
    import yaml

    out = {}
    d = Path(directory)
    if not d.is_dir():
        return out
    for p in sorted(d.iterdir()):
        if p.name.startswith(".") or not p.is_file():
            continue
        try:
            raw = p.read_bytes()
            doc = yaml.safe_load(raw)
        except (OSError, yaml.YAMLError) as exc:
            log(f"static pod {p}: cannot read: {exc}")
            continue
        if not isinstance(doc, dict) or doc.get("kind") != "Pod" or doc.get("apiVersion") != "v1":
            log(f"static pod {p}: not a v1 Pod: skipped")
            continue
        meta = doc.get("metadata") or {}
        # kubelet hashes the decoded Pod (DeepHashObject, a spew dump of the Go struct, which Python
        # cannot reproduce); the file's bytes stand in for it: same file, same UID; any edit, a new one
        uid = meta.get("uid") or fnv128a(raw + f"host:{node}".encode() + f"file:{p}".encode())
        out[uid] = StaticPod(
            str(p),
            uid,
            f"{meta.get('name', '')}-{node}",
            meta.get("namespace") or "default",
            doc.get("spec") or {},
            doc,
            rfc3339nano(),
        )
    return out


def container_argv(pod: StaticPod, container: dict, binaries: dict[str, str], versions: dict[str, str]) -> list[str]:
    """The process for a container: the built binary for its image, with command[1:] + args."""
    image = container.get("image", "")
    repo = kwokmod.image_repository(image)
    tag = image[len(repo) + 1 :] if image.startswith(repo + ":") else ""
    binary = STATIC_IMAGES.get(repo)
    if binary is None:
        raise ValueError(f"image {image!r}: no such image here (only {', '.join(sorted(STATIC_IMAGES))})")
    want = versions["etcd"] if binary == "etcd" else versions["kubernetes"]
    have = tag.split("-", 1)[0] if binary == "etcd" else tag
    if have != want:
        raise ValueError(f"image {image!r}: tag {tag!r} is not the built {binary} {want!r}")
    command = list(container.get("command") or [])
    if command and os.path.basename(command[0]) != binary:
        raise ValueError(f"container {container['name']}: command {command[0]!r} is not {binary} (image {image})")
    return [binaries[binary], *command[1:], *(container.get("args") or [])]


def prepare_volumes(pod: StaticPod, container: dict) -> list[tuple[str, str, bool]]:
    """Check/create the hostPath volumes the container mounts; [(hostPath, mountPath, readOnly)]."""
    volumes = {v["name"]: v for v in pod.spec.get("volumes") or []}
    mounts = []
    for m in container.get("volumeMounts") or []:
        v = volumes.get(m["name"])
        if v is None:
            raise ValueError(f"volumeMount {m['name']!r}: no such volume")
        hp = v.get("hostPath")
        if hp is None:
            raise ValueError(f"volume {m['name']!r}: only hostPath volumes are supported for static pods here")
        path, kind = hp["path"], hp.get("type") or ""
        if kind == "DirectoryOrCreate" and not os.path.exists(path):
            os.makedirs(path, mode=0o755, exist_ok=True)
        elif kind == "FileOrCreate" and not os.path.exists(path):
            Path(path).touch(mode=0o644)
        elif kind == "Directory" and not os.path.isdir(path):
            raise ValueError(f"hostPath type check failed: {path} is not a directory")
        elif kind == "File" and not os.path.isfile(path):
            raise ValueError(f"hostPath type check failed: {path} is not a file")
        elif kind not in ("", "DirectoryOrCreate", "FileOrCreate", "Directory", "File"):
            raise ValueError(f"hostPath type {kind!r} is not supported here")
        mounts.append((path, m["mountPath"], bool(m.get("readOnly"))))
    return mounts


def with_mounts(argv: list[str], mounts: list[tuple[str, str, bool]]) -> list[str]:
    """Run argv in a private mount namespace when a mount is elsewhere or read-only."""
    todo = [(h, m, ro) for h, m, ro in mounts if h != m or ro]
    if not todo:
        return argv
    script, args = ["set -e"], []
    for i, (h, m, ro) in enumerate(todo):
        args += [h, m]
        a, b = f'"${{{2 * i + 1}}}"', f'"${{{2 * i + 2}}}"'
        script.append(
            f'[ -e {b} ] || {{ if [ -d {a} ]; then mkdir -p {b}; else mkdir -p "$(dirname {b})"; touch {b}; fi; }}'
        )
        script.append(f"mount --bind {a} {b}")
        if ro:
            script.append(f"mount -o remount,bind,ro {b}")
    script.append(f'shift {2 * len(todo)}; exec "$@"')
    return ["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c", "; ".join(script), "sh", *args, *argv]


def pod_log_dir(pod: StaticPod) -> Path:
    return Path("/var/log/pods") / f"{pod.namespace}_{pod.name}_{pod.uid}"


class StaticPods:
    """Keeps the containers of the manifests in staticPodPath running, and only those."""

    def __init__(self, runtime: Runtime, node: str, binaries: dict[str, str], versions: dict[str, str]):
        self.runtime, self.node, self.binaries, self.versions = runtime, node, binaries, versions
        self.backoff: dict[tuple[str, str], dict] = {}  # (uid, container) -> failures, not_before, seen
        self.refused: dict[tuple[str, str], tuple[str, float]] = {}  # -> (why, retry at)
        self.by_file: dict[str, StaticPod] = {}
        self.removed_logs: dict[str, float] = {}  # log dir -> when its pod went away (GC after a minute)
        self.seen: dict[str, str] = {}  # uid -> kubernetes.io/config.seen
        self.current: dict[str, StaticPod] = {}
        self.reported: dict[str, str] = {}  # mirror pod uid -> the status last patched (JSON)
        self.transitions: dict[tuple[str, str], tuple[str, str]] = {}  # (uid, condition) -> (status, time)

    def desired(self, directory: str) -> dict[str, StaticPod]:
        """The manifests, except one written less than half a second ago: its previous version
        stays wanted until it is complete (kubeadm and `install` write in place, not by rename)."""
        now = time.time()
        out = {}
        for uid, pod in read_static_pods(directory, self.node).items():
            try:
                fresh = now - os.stat(pod.file).st_mtime < 0.5
            except OSError:
                continue
            if fresh:
                prev = self.by_file.get(pod.file)
                if prev is not None:
                    out[prev.uid] = prev
                continue
            pod.seen = self.seen.setdefault(uid, pod.seen)
            out[uid] = pod
        self.by_file = {p.file: p for p in out.values()}
        return out

    def sync(self, directory: str) -> dict:
        desired = self.desired(directory)
        containers = [c for c in self.runtime.list() if c.labels.get("source") == "static"]
        by_key: dict[tuple[str, str], list[Container]] = {}
        for c in containers:
            by_key.setdefault((c.pod_uid, c.name), []).append(c)
        # pods no longer wanted (manifest removed or changed): stop their containers first
        for c in containers:
            if c.pod_uid not in desired:
                if c.running:
                    log(f"static pod {c.namespace}/{c.pod} ({c.pod_uid[:8]}) is gone from {directory}: stopping {c.name}")
                    self.runtime.stop(c)
                self.runtime.remove(c)
                self.removed_logs.setdefault(str(Path(c.log_path).parent.parent), time.time())
        now = time.time()
        for d, since in list(self.removed_logs.items()):  # kuberuntime_gc.go evictPodLogsDirectories
            if now - since > 60 and not any(str(pod_log_dir(p)) == d for p in desired.values()):
                subprocess.run(["rm", "-rf", "--one-file-system", d], check=False)
                del self.removed_logs[d]
        for pod in desired.values():
            for container in pod.spec.get("containers") or []:
                self._sync_container(
                    pod, container, sorted(by_key.get((pod.uid, container["name"]), []), key=lambda c: c.restart_count)
                )
        self.current = desired
        return {p.uid: {"name": p.name, "namespace": p.namespace, "file": p.file} for p in desired.values()}

    # -- mirror pods: pkg/kubelet/pod/mirror_client.go, kubelet.go syncPod and deleteOrphanedMirrorPods,
    #    pkg/kubelet/status (the static pod's status reported on its mirror pod)
    def mirror_sync(self, client: Client, node: dict, api_pods: list[dict]) -> None:
        name_, node_uid = node["metadata"]["name"], node["metadata"]["uid"]
        node_ips = [a["address"] for a in node.get("status", {}).get("addresses") or [] if a["type"] == "InternalIP"]
        wanted = {(p.namespace, p.name): p for p in self.current.values()}
        mirrors = {}
        for m in api_pods:
            meta = m["metadata"]
            if "kubernetes.io/config.mirror" not in (meta.get("annotations") or {}):
                continue
            pod = wanted.get((meta["namespace"], meta["name"]))
            if pod is None or meta["annotations"]["kubernetes.io/config.mirror"] != pod.uid or meta.get("deletionTimestamp"):
                log(f"deleting mirror pod {meta['namespace']}/{meta['name']} ({'outdated' if pod else 'orphaned'})")
                try:
                    client.request(
                        "DELETE",
                        f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}",
                        {
                            "apiVersion": "v1",
                            "kind": "DeleteOptions",
                            "gracePeriodSeconds": 0,
                            "preconditions": {"uid": meta["uid"]},
                        },
                        ok_missing=True,
                    )
                except ApiError as exc:
                    if exc.status != 409:
                        raise
                self.reported.pop(meta["uid"], None)
                continue
            mirrors[(meta["namespace"], meta["name"])] = m
        containers = [c for c in self.runtime.list() if c.labels.get("source") == "static"]
        for key, pod in wanted.items():
            m = mirrors.get(key)
            if m is None:
                try:
                    client.request("POST", f"/api/v1/namespaces/{pod.namespace}/pods", self.mirror_pod(pod, name_, node_uid))
                    log(f"mirror pod {pod.namespace}/{pod.name} created")
                except ApiError as exc:
                    if exc.status != 409:
                        log(f"failed creating mirror pod {pod.namespace}/{pod.name}: {exc}")
                continue
            status = self.pod_status(pod, [c for c in containers if c.pod_uid == pod.uid], node_ips)
            text = json.dumps(status, sort_keys=True)
            if self.reported.get(m["metadata"]["uid"]) != text:
                client.request(
                    "PATCH",
                    f"/api/v1/namespaces/{pod.namespace}/pods/{pod.name}/status",
                    {"metadata": {"uid": m["metadata"]["uid"]}, "status": status},
                    content_type="application/strategic-merge-patch+json",
                )
                self.reported[m["metadata"]["uid"]] = text

    def mirror_pod(self, pod: StaticPod, node: str, node_uid: str) -> dict:
        doc = json.loads(json.dumps(pod.doc))
        doc.pop("status", None)
        meta = doc.setdefault("metadata", {})
        for k in ("uid", "resourceVersion", "generation", "creationTimestamp"):
            meta.pop(k, None)
        meta.update(name=pod.name, namespace=pod.namespace)
        meta.setdefault("annotations", {}).update(
            {
                "kubernetes.io/config.hash": pod.uid,
                "kubernetes.io/config.mirror": pod.uid,
                "kubernetes.io/config.seen": pod.seen,
                "kubernetes.io/config.source": "file",
            }
        )
        meta["ownerReferences"] = [{"apiVersion": "v1", "kind": "Node", "name": node, "uid": node_uid, "controller": True}]
        spec = doc.setdefault("spec", {})
        spec["nodeName"] = node
        tolerations = spec.setdefault("tolerations", [])
        if not any(
            t.get("operator") == "Exists" and t.get("effect") == "NoExecute" and not t.get("key") for t in tolerations
        ):
            tolerations.append({"operator": "Exists", "effect": "NoExecute"})
        return doc

    def pod_status(self, pod: StaticPod, containers: list[Container], node_ips: list[str]) -> dict:
        """What the status manager reports for a static pod (generateAPIPodStatus, without probes:
        a running container counts as ready)."""
        history: dict[str, list[Container]] = {}
        for c in sorted(containers, key=lambda c: c.restart_count):
            history.setdefault(c.name, []).append(c)
        statuses, ready, running = [], True, False
        for spec_c in pod.spec.get("containers") or []:
            name = spec_c["name"]
            runs = history.get(name, [])
            st = {
                "name": name,
                "image": spec_c.get("image", ""),
                "imageID": "",
                "ready": False,
                "started": False,
                "restartCount": runs[-1].restart_count if runs else 0,
            }
            if not runs:
                refused = self.refused.get((pod.uid, name))
                st["state"] = {
                    "waiting": {"reason": "CreateContainerError", "message": refused[0]}
                    if refused
                    else {"reason": "ContainerCreating"}
                }
            else:
                c = runs[-1]
                st["containerID"] = f"osk8s-runtime-standin://{c.id}"
                if c.running:
                    st["state"] = {"running": {"startedAt": rfc3339(c.started_at)}}
                    st.update(ready=True, started=True)
                    running = True
                else:
                    st["state"] = {
                        "waiting": {
                            "reason": "CrashLoopBackOff",
                            "message": f"back-off restarting failed container {name} in pod "
                            f"{pod.name}_{pod.namespace}({pod.uid})",
                        }
                    }
                prev = [r for r in runs if not r.running]
                if prev:
                    e = prev[-1].exit or {}
                    st["lastState"] = {
                        "terminated": {
                            "exitCode": e.get("exitCode", 255),
                            "reason": "Completed" if e.get("exitCode") == 0 else "Error",
                            "startedAt": rfc3339(prev[-1].started_at),
                            "finishedAt": e.get("finishedAt") or rfc3339(time.time()),
                            "containerID": f"osk8s-runtime-standin://{prev[-1].id}",
                        }
                    }
            ready = ready and st["ready"]
            statuses.append(st)

        def cond(kind: str, value: bool) -> dict:
            v = "True" if value else "False"
            old = self.transitions.get((pod.uid, kind))
            if old is None or old[0] != v:
                old = self.transitions[(pod.uid, kind)] = (v, rfc3339(time.time()))
            return {"type": kind, "status": v, "lastTransitionTime": old[1]}

        status = {
            "phase": "Running" if running else "Pending",
            "startTime": pod.seen.split(".")[0].rstrip("Z") + "Z",
            "conditions": [
                cond("PodReadyToStartContainers", True),
                cond("Initialized", True),
                cond("Ready", ready),
                cond("ContainersReady", ready),
                cond("PodScheduled", True),
            ],
            "containerStatuses": statuses,
        }
        if node_ips:  # hostNetwork: the pod's IPs are the node's
            status.update(
                hostIP=node_ips[0],
                hostIPs=[{"ip": i} for i in node_ips],
                podIP=node_ips[0],
                podIPs=[{"ip": i} for i in node_ips],
            )
        return status

    def _sync_container(self, pod: StaticPod, container: dict, history: list[Container]) -> None:
        key = (pod.uid, container["name"])
        latest = history[-1] if history else None
        if latest and latest.running:
            return
        now = time.time()
        if key in self.refused and now < self.refused[key][1]:
            return
        if latest is not None:  # it exited: restartPolicy Always, with the crash-loop back-off
            entry = self.backoff.get(key)
            if entry is None or entry["seen"] != latest.id:
                failures = entry["failures"] if entry else 0
                if now - latest.started_at > CRASH_BACKOFF_RESET:
                    failures = 0
                delay = 0.0 if failures == 0 else min(CRASH_BACKOFF_INITIAL * 2 ** (failures - 1), CRASH_BACKOFF_MAX)
                entry = {"failures": failures + 1, "not_before": now + delay, "seen": latest.id}
                self.backoff[key] = entry
                log(
                    f"{pod.namespace}/{pod.name} {container['name']} exited ({latest.exit}); "
                    f"restart {latest.restart_count + 1} in {delay:.0f}s"
                )
            if now < entry["not_before"]:
                return
        restart = latest.restart_count + 1 if latest else 0
        try:
            if pod.spec.get("hostNetwork") is not True:
                raise ValueError("pod is not hostNetwork: a pod network needs a CNI and a sandbox, not here")
            argv = container_argv(pod, container, self.binaries, self.versions)
            argv = with_mounts(argv, prepare_volumes(pod, container))
            env = list(container.get("env") or [])
            if any("value" not in e for e in env):
                raise ValueError("env valueFrom is not supported for static pods here")
        except (ValueError, KeyError, OSError) as exc:
            if self.refused.get(key, ("",))[0] != str(exc):
                log(f"static pod {pod.namespace}/{pod.name} ({pod.file}): container {container['name']} refused: {exc}")
            self.refused[key] = (str(exc), now + CRASH_BACKOFF_INITIAL)
            return
        self.refused.pop(key, None)
        # keep the previous container (its log is `kubectl logs --previous`), remove older ones with their logs
        for old in history[:-1]:
            self.runtime.remove(old)
            Path(old.log_path).unlink(missing_ok=True)
        log_path = pod_log_dir(pod) / container["name"] / f"{restart}.log"
        grace = float(pod.spec.get("terminationGracePeriodSeconds") or 30)
        env_prefix = [
            "env",
            "-i",
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            f"HOSTNAME={platform.node()}",
            "HOME=/root",
            *[f"{e['name']}={e['value']}" for e in env],
        ]
        c = self.runtime.run(
            pod_uid=pod.uid,
            pod=pod.name,
            namespace=pod.namespace,
            name=container["name"],
            restart_count=restart,
            argv=env_prefix + argv,
            log_path=str(log_path),
            grace=grace,
            labels={"source": "static", "file": pod.file},
        )
        log(f"started {pod.namespace}/{pod.name} {container['name']} (restart {restart}, shim {c.shim_pid}) log {log_path}")
