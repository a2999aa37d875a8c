"""A pod's status as the kubelet reports it: pkg/kubelet/status/generate.go (the conditions
PodReadyToStartContainers, Initialized, ContainersReady, Ready; PodScheduled and foreign ones
kept), pkg/kubelet/kubelet_pods.go getPhase and convertToAPIContainerStatuses, and
pkg/kubelet/status/status_manager.go syncPod (patched with the node's credentials when it
changed, checked every 10 s, resourceVersion and UID as preconditions)."""

from __future__ import annotations

import json
import time

from tests.peers.k8s.pods.client import ApiError, rfc3339
from tests.peers.k8s.pods.state import Ctr

STATUS_RESYNC = 10.0  # status manager syncBatch period


class PodStatus:
    """PodWorker's part that computes and patches the pod's status."""

    # -- status ------------------------------------------------------------------------------------------
    def ctr_status(self, c: Ctr, waiting_default: str) -> dict:
        spec = c.spec
        st: dict = {
            "name": c.name,
            "image": spec["image"],
            "imageID": c.image_id,
            "ready": c.ready,
            "restartCount": c.restart_count,
            "started": c.started if c.running else False,
        }
        if c.running:
            st["state"] = {"running": {"startedAt": rfc3339(c.started_at)}}
            st["containerID"] = f"osk8s-pods://{c.cid}"
        elif c.terminated is not None:
            st["state"] = {"terminated": {k: v for k, v in c.terminated.items() if not k.startswith("_")}}
            st["containerID"] = c.terminated["containerID"]
        else:
            reason, message = c.waiting or (waiting_default, "")
            st["state"] = {"waiting": {"reason": reason, **({"message": message} if message else {})}}
        st["lastState"] = (
            {"terminated": {k: v for k, v in c.last_terminated.items() if not k.startswith("_")}}
            if c.last_terminated
            else {}
        )
        if not c.image_id:
            del st["imageID"]
        mounts = [
            {
                "name": m["name"],
                "mountPath": m["mountPath"],
                **({"readOnly": True, "recursiveReadOnly": "Disabled"} if m.get("readOnly") else {}),
            }
            for m in spec.get("volumeMounts") or []
        ]
        if mounts:
            st["volumeMounts"] = mounts
        if c.running:
            uid, gid, groups = c.user
            st["user"] = {"linux": {"uid": uid, "gid": gid, "supplementalGroups": sorted({gid, *groups})}}
        return st

    def desired_status(self, current: dict) -> dict:
        pod = self.pod
        gen = pod["metadata"].get("generation", 1)
        init_done = all(c.terminated and c.terminated["exitCode"] == 0 for c in self.init)
        default = "PodInitializing" if self.init and not init_done else "ContainerCreating"
        cs = [self.ctr_status(c, default) for c in self.ctrs]
        ics = [self.ctr_status(c, "PodInitializing" if i else "ContainerCreating") for i, c in enumerate(self.init)]
        phase = self.phase(cs, ics)
        old = {c["type"]: c for c in current.get("conditions") or []}
        now = rfc3339()

        def cond(kind: str, ok: bool, reason: str = "", message: str = "") -> dict:
            status = "True" if ok else "False"
            prev = old.get(kind)
            c = {
                "type": kind,
                "status": status,
                "observedGeneration": gen,
                "lastProbeTime": None,
                "lastTransitionTime": prev["lastTransitionTime"] if prev and prev.get("status") == status else now,
            }
            if reason:
                c["reason"] = reason
            if message:
                c["message"] = message
            return c

        unready = [c.name for c in self.ctrs if not c.ready]
        terminal = phase in ("Succeeded", "Failed")
        if terminal:
            reason = "PodCompleted" if phase == "Succeeded" else "PodFailed"
            ready = cond("ContainersReady", False, reason)
        elif unready:
            ready = cond(
                "ContainersReady", False, "ContainersNotReady", f"containers with unready status: [{' '.join(unready)}]"
            )
        else:
            ready = cond("ContainersReady", True)
        incomplete = [c.name for c in self.init if not (c.terminated and c.terminated["exitCode"] == 0)]
        started_any = any(c.running or c.terminated or c.last_terminated for c in self.ctrs)
        if incomplete and not started_any:
            initialized = cond(
                "Initialized",
                False,
                "ContainersNotInitialized",
                f"containers with incomplete status: [{' '.join(incomplete)}]",
            )
        else:
            initialized = cond("Initialized", True, "PodCompleted" if phase == "Succeeded" and self.init else "")
        gates = [g["conditionType"] for g in pod["spec"].get("readinessGates") or []]
        gate_msgs = [
            f'corresponding condition of pod readiness gate "{g}" does not exist.'
            if g not in old
            else f'the status of pod readiness gate "{g}" is not "True", but {old[g]["status"]}'
            for g in gates
            if old.get(g, {}).get("status") != "True"
        ]
        if ready["status"] != "True":
            pod_ready = {**ready, "type": "Ready"}
            prev = old.get("Ready")
            pod_ready["lastTransitionTime"] = (
                prev["lastTransitionTime"] if prev and prev.get("status") == ready["status"] else now
            )
        elif gate_msgs:
            pod_ready = cond("Ready", False, "ReadinessGatesNotReady", ", ".join(gate_msgs))
        else:
            pod_ready = cond("Ready", True)
        sandbox = cond("PodReadyToStartContainers", self.sandbox and not terminal)
        mine = {
            "PodReadyToStartContainers": sandbox,
            "Initialized": initialized,
            "Ready": pod_ready,
            "ContainersReady": ready,
        }
        conditions = [mine.pop(c["type"], c) for c in current.get("conditions") or []] + list(mine.values())
        status = {
            "phase": phase,
            "conditions": conditions,
            "observedGeneration": gen,
            "hostIP": self.runner.node_ip,
            "hostIPs": [{"ip": self.runner.node_ip}],
            "startTime": current.get("startTime") or rfc3339(self.first_seen),
            "containerStatuses": cs,
        }
        if self.sandbox:
            status["podIP"], status["podIPs"] = self.runner.node_ip, [{"ip": self.runner.node_ip}]
        if ics:
            status["initContainerStatuses"] = ics
        return status

    def phase(self, cs: list[dict], ics: list[dict]) -> str:
        """kubelet_pods.go getPhase with ContainerRestartRules (beta, on in 1.37); no sidecar init containers."""

        def restartable(spec: dict, term: dict) -> bool:
            return self.should_restart(spec, term["exitCode"])

        pending_init = failed_init_final = 0
        for c, s in zip(self.init, ics, strict=True):
            st, last = s["state"], s["lastState"].get("terminated")
            if "running" in st:
                pending_init += 1
            elif "terminated" in st:
                failed_init_final += st["terminated"]["exitCode"] != 0 and not restartable(c.spec, st["terminated"])
            elif last:
                failed_init_final += last["exitCode"] != 0 and not restartable(c.spec, last)
            else:
                pending_init += 1
        running = waiting = stopped = stopped_final = succeeded = 0
        for c, s in zip(self.ctrs, cs, strict=True):
            st, last = s["state"], s["lastState"].get("terminated")
            if "running" in st:
                running += 1
            elif "terminated" in st:
                stopped += 1
                stopped_final += not restartable(c.spec, st["terminated"])
                succeeded += st["terminated"]["exitCode"] == 0
            elif last:
                stopped += 1
                stopped_final += not restartable(c.spec, last)
            else:
                waiting += 1
        if failed_init_final:
            return "Failed"
        if pending_init or waiting:
            return "Pending"
        if running:
            return "Running"
        if stopped:
            if stopped != stopped_final:
                return "Running"
            return "Succeeded" if stopped == succeeded else "Failed"
        return "Pending"

    def push_status(self, force: bool = False) -> None:
        """status_manager.go syncPod: the status patched when it changed (or every 10 s checked against
        the API), with the node's credentials, resourceVersion and UID as preconditions."""
        now = time.monotonic()
        snapshot = json.dumps(self.desired_status(self.status_sent or {}), sort_keys=True, default=str)
        if (
            not force
            and self.status_sent is not None
            and now < self.next_status_sync
            and snapshot == json.dumps(self.status_sent, sort_keys=True, default=str)
        ):
            return
        path = f"/api/v1/namespaces/{self.ns}/pods/{self.name}"
        for _ in range(3):
            try:
                current = self.api.get(path)
            except ApiError as e:
                if e.status == 404:
                    return
                raise
            if current["metadata"]["uid"] != self.uid:
                return
            want = self.desired_status(current.get("status") or {})
            have = current.get("status") or {}
            patch = {k: v for k, v in want.items() if have.get(k) != v}
            self.next_status_sync = now + STATUS_RESYNC
            if not patch:
                self.status_sent = want
                return
            try:
                self.api.request(
                    "PATCH",
                    path + "/status",
                    {
                        "metadata": {"uid": self.uid, "resourceVersion": current["metadata"]["resourceVersion"]},
                        "status": patch,
                    },
                    content_type="application/merge-patch+json",
                )
                self.status_sent = want
                return
            except ApiError as e:
                if e.status == 404:
                    return
                if e.status != 409:
                    raise


# ---------------------------------------------------------------------------------------------------
