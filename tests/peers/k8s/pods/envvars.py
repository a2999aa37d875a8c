"""A container's environment and the values it is given: makeEnvironmentVariables
(pkg/kubelet/kubelet_pods.go: envFrom, then env in order with `$(VAR)` expansion, fieldRef /
resourceFieldRef / configMapKeyRef / secretKeyRef, then the service links, the `kubernetes`
Service always), the service links (pkg/kubelet/envvars/envvars.go FromServices), the expansion
(third_party/forked/golang/expansion/expand.go), resource quantities
(k8s.io/apimachinery pkg/api/resource/quantity.go).
"""

from __future__ import annotations

import base64
import json
import re

from tests.peers.k8s.pods.client import ApiError
from tests.peers.k8s.pods.errors import ConfigError
from tests.peers.k8s.pods.state import Ctr

# $(VAR) expansion, exactly third_party/forked/golang/expansion/expand.go


def expand(text: str, *maps: dict[str, str]) -> str:
    out, i, n = [], 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "$" and i + 1 < n:
            nxt = text[i + 1]
            if nxt == "$":
                out.append("$")
                i += 2
                continue
            if nxt == "(":
                close = text.find(")", i + 2)
                if close == -1:
                    out.append("$(")
                    i += 2
                    continue
                name = text[i + 2 : close]
                out.append(next((m[name] for m in maps if name in m), f"$({name})"))
                i = close + 1
                continue
            out.append("$" + nxt)
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def service_env(services: list[dict]) -> dict[str, str]:
    """pkg/kubelet/envvars/envvars.go FromServices."""
    env: dict[str, str] = {}
    for svc in services:
        ip = svc["spec"].get("clusterIP")
        if not ip or ip == "None" or not svc["spec"].get("ports"):
            continue
        prefix = svc["metadata"]["name"].upper().replace("-", "_")
        ports = svc["spec"]["ports"]
        env[f"{prefix}_SERVICE_HOST"] = ip
        env[f"{prefix}_SERVICE_PORT"] = str(ports[0]["port"])
        for p in ports:
            if p.get("name"):
                env[f"{prefix}_SERVICE_PORT_{p['name'].upper().replace('-', '_')}"] = str(p["port"])
        for i, p in enumerate(ports):
            proto = p.get("protocol", "TCP")
            hostport = f"[{ip}]:{p['port']}" if ":" in ip else f"{ip}:{p['port']}"
            if i == 0:
                env[f"{prefix}_PORT"] = f"{proto.lower()}://{hostport}"
            pp = f"{prefix}_PORT_{p['port']}_{proto.upper()}"
            env[pp] = f"{proto.lower()}://{hostport}"
            env[pp + "_PROTO"] = proto.lower()
            env[pp + "_PORT"] = str(p["port"])
            env[pp + "_ADDR"] = ip
    return env


_QUANTITY = {
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
    "n": 1e-9,
    "u": 1e-6,
    "m": 1e-3,
    "": 1,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "E": 1e18,
}


def quantity(q) -> float:
    m = re.fullmatch(r"([0-9.]+)(e[0-9]+|[A-Za-z]*)", str(q))
    if not m:
        raise ValueError(f"bad quantity {q!r}")
    num, suffix = float(m.group(1)), m.group(2)
    return num * 10 ** int(suffix[1:]) if suffix.startswith("e") else num * _QUANTITY[suffix]


class Environment:
    """PodWorker's part that computes a container's environment."""

    def environment(self, c: Ctr) -> dict[str, str]:
        """kubelet_pods.go makeEnvironmentVariables."""
        spec = self.pod["spec"]
        try:
            services = self.api.get("/api/v1/services")["items"]
        except ApiError as e:
            raise ConfigError(f"failed to list services when setting up env vars: {e}") from e
        links = spec.get("enableServiceLinks", True)
        mapped = {
            s["metadata"]["name"]: s
            for s in services
            if (s["metadata"]["namespace"] == "default" and s["metadata"]["name"] == "kubernetes")
        }
        for s in services:
            if (
                s["metadata"]["namespace"] == self.ns
                and links
                and not (self.ns == "default" and s["metadata"]["name"] == "kubernetes")
            ):
                mapped[s["metadata"]["name"]] = s
        svc_env = service_env(list(mapped.values()))
        env: dict[str, str] = {}
        cache: dict[tuple, dict | None] = {}
        for ef in c.spec.get("envFrom") or []:
            for kind in ("configMapRef", "secretRef"):
                ref = ef.get(kind)
                if ref:
                    obj = self._ref(kind, ref["name"], ref.get("optional", False), cache)
                    if obj is None:
                        continue
                    for k, v in self._data(kind, obj).items():
                        env[ef.get("prefix", "") + k] = v.decode()
        for ev in c.spec.get("env") or []:
            value = ev.get("value", "")
            if value:
                value = expand(value, env, svc_env)
            elif ev.get("valueFrom"):
                vf = ev["valueFrom"]
                if "fieldRef" in vf:
                    value = self.field(vf["fieldRef"]["fieldPath"])
                elif "resourceFieldRef" in vf:
                    value = self.resource_field(vf["resourceFieldRef"], c.spec)
                else:
                    kind = "configMapRef" if "configMapKeyRef" in vf else "secretRef"
                    ref = vf.get("configMapKeyRef") or vf.get("secretKeyRef")
                    if ref is None:
                        raise ConfigError(f"osk8s pod runner: env {ev['name']}: unsupported valueFrom {list(vf)}")
                    optional = ref.get("optional", False)
                    obj = self._ref(kind, ref["name"], optional, cache)
                    if obj is None:
                        continue
                    data = self._data(kind, obj)
                    if ref["key"] not in data:
                        if optional:
                            continue
                        what = "ConfigMap" if kind == "configMapRef" else "Secret"
                        raise ConfigError(f"couldn't find key {ref['key']} in {what} {self.ns}/{ref['name']}")
                    value = data[ref["key"]].decode()
            env[ev["name"]] = value
        for k, v in svc_env.items():
            env.setdefault(k, v)
        return env

    def _ref(self, kind: str, name: str, optional: bool, cache: dict) -> dict | None:
        key = (kind, name)
        if key not in cache:
            plural = "configmaps" if kind.startswith("configMap") else "secrets"
            try:
                cache[key] = self.api.get(f"/api/v1/namespaces/{self.ns}/{plural}/{name}")
            except ApiError as e:
                if e.status == 404 and optional:
                    cache[key] = None
                else:
                    what = "configmap" if plural == "configmaps" else "secret"
                    raise ConfigError(f'{what} "{name}" not found' if e.status == 404 else str(e)) from e
        return cache[key]

    @staticmethod
    def _data(kind: str, obj: dict) -> dict[str, bytes]:
        if kind.startswith("configMap"):
            out = {k: v.encode() for k, v in (obj.get("data") or {}).items()}
            out.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
            return out
        return {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}

    def field(self, path: str) -> str:
        md, ip = self.pod["metadata"], self.runner.node_ip
        m = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
        if m:
            return (md.get(m.group(1)) or {}).get(m.group(2), "")
        simple = {
            "metadata.name": md["name"],
            "metadata.namespace": md["namespace"],
            "metadata.uid": md["uid"],
            "spec.nodeName": self.pod["spec"].get("nodeName", ""),
            "spec.serviceAccountName": self.pod["spec"].get("serviceAccountName", ""),
            "status.hostIP": ip,
            "status.hostIPs": ip,
            "status.podIP": ip,
            "status.podIPs": ip,
        }
        if path in simple:
            return simple[path]
        if path in ("metadata.labels", "metadata.annotations"):
            items = md.get(path.split(".")[1]) or {}
            return "\n".join(f'{k}="{json.dumps(v)[1:-1]}"' for k, v in sorted(items.items()))
        raise ConfigError(f"unsupported fieldRef {path}")

    def resource_field(self, ref: dict, container: dict | None) -> str:
        import math

        if ref.get("containerName"):
            container = next(c for c in self.pod["spec"]["containers"] if c["name"] == ref["containerName"])
        kind, res = ref["resource"].split(".", 1)
        value = ((container or {}).get("resources") or {}).get(kind, {}).get(res)
        if value is None and kind == "limits":  # defaulted to the node's allocatable
            node = self.api.get(f"/api/v1/nodes/{self.runner.node_name}")
            value = node.get("status", {}).get("allocatable", {}).get(res, "0")
        divisor = quantity(ref.get("divisor", "1"))
        return str(math.ceil(quantity(value or "0") / divisor))
