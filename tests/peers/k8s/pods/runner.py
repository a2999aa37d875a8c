"""The pod runner: the part of the kubelet that takes the pods bound to the node and hands each to
its worker (pkg/kubelet/kubelet.go HandlePodAdditions/HandlePodRemoves, pod_workers.go UpdatePod:
a pod deleted before anything of it ran is deleted at once), records Events as the kubelet's
recorder does (source component kubelet, host the node), and acts as the node (its kubelet.conf:
system:node:<name>), so the Node authorizer and NodeRestriction decide what it may read.
"""

from __future__ import annotations

import logging
import os
import secrets as _random
import shutil
import signal
import threading
import time
from pathlib import Path

from tests.peers.k8s.pods.client import ApiError, KubeClient, rfc3339
from tests.peers.k8s.pods.images import IMAGES, ImageConfig, binary_version, split_image
from tests.peers.k8s.pods.state import Backoff
from tests.peers.k8s.pods.worker import PodWorker, _proc_start

log = logging.getLogger("osk8s.pods")


class PodRunner:
    def __init__(
        self,
        node_name: str,
        node_ip: str,
        kubeconfig: Path,
        images: dict[str, Path | list[str]],
        state_dir: Path,
        log_dir: Path = Path("/var/log/pods"),
        csi=None,
    ):
        self.node_name, self.node_ip = node_name, node_ip
        # csi(pod, volume name, PV) -> Path: a CSI persistent volume set up on this node (the kubelet's
        # WaitForAttach, MountDevice/NodeStage and SetUp/NodePublish), raising MountError until it is
        self.csi = csi
        self.images = {k: (v if isinstance(v, list) else Path(v)) for k, v in images.items()}
        self.state_dir, self.log_dir = Path(state_dir), Path(log_dir)
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.state_dir, 0o700)
        self.api = KubeClient.from_kubeconfig(Path(kubeconfig), self.state_dir / "pki", user_agent=f"osk8s-pods/{node_name}")
        self.workers: dict[str, PodWorker] = {}
        self.lock = threading.Lock()
        self.started_at = time.monotonic()
        self.backoff = Backoff()
        self._reap_leftovers()

    # -- what it runs --------------------------------------------------------------------------------
    def explain(self, pod: dict) -> str:
        """Why this runner does not run the pod ('' when it does)."""
        if "kubernetes.io/config.mirror" in (pod["metadata"].get("annotations") or {}):
            return "a mirror pod (its static pod is the kubelet's)"
        spec = pod["spec"]
        for c in spec.get("initContainers", []) + spec.get("containers", []):
            repo, tag = split_image(c.get("image", ""))
            target = self.images.get(repo)
            if target is None:
                return f"container {c['name']}: image {repo} is not mapped"
            if isinstance(target, Path):
                image = IMAGES.get(repo, ImageConfig())
                version = binary_version(target, image.version_argv)
                want, have = (tag or "").lstrip("v"), (version or "").lstrip("v")
                if image.release == "major":
                    want, have = want.split(".")[0], have.split(".")[0]
                if version is not None and want != have:
                    return f"container {c['name']}: image tag {tag} but {target.name} is {version}"
        return ""

    def handles(self, pod: dict) -> bool:
        return not self.explain(pod)

    # -- the kubelet's pod loop ----------------------------------------------------------------------
    def sync(self, pods: list[dict]) -> None:
        seen = set()
        with self.lock:
            for pod in pods:
                uid = pod["metadata"]["uid"]
                if pod["spec"].get("nodeName") != self.node_name:
                    continue
                worker = self.workers.get(uid)
                if worker is None:
                    why = self.explain(pod)
                    if why:
                        continue
                    if pod["metadata"].get("deletionTimestamp"):
                        self.delete_unstarted(pod)  # nothing of it ran here: deleted at once, as kubelet does
                        continue
                    if pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
                        continue
                    worker = PodWorker(self, pod)
                    worker.start()
                    self.workers[uid] = worker
                seen.add(uid)
                worker.update(pod)
            for uid, worker in list(self.workers.items()):
                if uid not in seen:
                    worker.terminate(gone=True)
                if not worker.is_alive() and worker.finished:
                    del self.workers[uid]

    def delete_unstarted(self, pod: dict) -> None:
        md = pod["metadata"]
        try:
            self.api.request(
                "DELETE",
                f"/api/v1/namespaces/{md['namespace']}/pods/{md['name']}",
                {"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0, "preconditions": {"uid": md["uid"]}},
            )
        except ApiError as e:
            if e.status not in (404, 409):
                log.warning("pod %s/%s: delete: %s", md["namespace"], md["name"], e)

    def stop(self) -> None:
        with self.lock:
            workers = list(self.workers.values())
            for w in workers:
                w.terminate(gone=True, shutdown=True)
        for w in workers:
            w.join()
        with self.lock:
            self.workers.clear()

    def pod_dir(self, uid: str) -> Path:
        return self.state_dir / "pods" / uid

    def _reap_leftovers(self) -> None:
        """Containers a previous runner of this state_dir left running: end them (by the PID and start
        time it recorded), then remove their pod directories."""
        base = self.state_dir / "pods"
        if not base.exists():
            return
        for pidfile in base.glob("*/containers/*.pid"):
            try:
                pid, start = pidfile.read_text().split()
                if _proc_start(int(pid)) == start:
                    os.killpg(int(pid), signal.SIGKILL)
            except (ValueError, OSError):
                pass
        shutil.rmtree(base, ignore_errors=True)

    # -- what a container gets -----------------------------------------------------------------------
    def event(self, pod: dict, reason: str, message: str, kind: str = "Normal", field_path: str | None = None) -> None:
        md = pod["metadata"]
        ref = {"kind": "Pod", "namespace": md["namespace"], "name": md["name"], "uid": md["uid"], "apiVersion": "v1"}
        if field_path:
            ref["fieldPath"] = field_path
        now = rfc3339()
        ev = {
            "metadata": {"name": f"{md['name']}.{_random.token_hex(8)}", "namespace": md["namespace"]},
            "involvedObject": ref,
            "reason": reason,
            "message": message,
            "type": kind,
            "source": {"component": "kubelet", "host": self.node_name},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "reportingComponent": "kubelet",
            "reportingInstance": self.node_name,
        }
        try:
            self.api.request("POST", f"/api/v1/namespaces/{md['namespace']}/events", ev)
        except (ApiError, OSError) as e:
            log.debug("event %s %s: %s", reason, md["name"], e)
