"""lab.collect: one diagnostics bundle of the whole lab, the way a maintainer asks for it in a bug
report. A tar.gz (mode 0600) whose every text is masked (log.redact: every password, credential
secret and token this run knows), with an index.txt naming each part, its size, or why it could
not be read: an unreachable part is one line there, never a failure of the bundle."""

from __future__ import annotations

import io
import json
import os
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import yaml

from osk8s_tasks.cluster.addons import api_of
from osk8s_tasks.cluster.nodes import connections
from osk8s_tasks.core import log
from osk8s_tasks.core.engine import StepFailed
from osk8s_tasks.core.files import make_dirs
from osk8s_tasks.devstack.stack import collect_logs, register_vm_secrets
from osk8s_tasks.devstack.steps import connected
from osk8s_tasks.openstack import clouds as cloud

Part = tuple[str, Callable[[], Iterator[tuple[str, bytes | str]]]]  # (name, yields (path in bundle, content))
CONTROLLERS = ("openstack-cloud-controller-manager", "csi-cinder", "octavia-ingress-controller", "k8s-keystone-auth")


def _yaml(obj) -> str:
    return yaml.safe_dump(obj, sort_keys=False)


def devstack_part(s) -> Iterator[tuple[str, bytes | str]]:
    with tempfile.TemporaryDirectory() as d, connected(s) as r:
        register_vm_secrets(s, r)  # the journals print the VM's passwords
        tgz = Path(d) / "devstack.tgz"
        collect_logs(s, r, tgz)
        with tarfile.open(tgz) as t:
            files = [m for m in t.getmembers() if m.isfile()]
            if not files:  # a host where DevStack never ran: say so, rather than "nothing to collect"
                raise StepFailed(
                    f"no DevStack unit journal or stack log on {r.conn.host} (not stacked yet? inv devstack.status)"
                )
            for m in files:
                yield f"devstack/{m.name.lstrip('./')}", t.extractfile(m).read()


def cloud_parts(s) -> list[Part]:
    clouds = cloud.Clouds(s.settings)
    lab = s.settings.lab.name

    def load_balancers():
        lbs = [
            lb
            for lb in clouds.main.load_balancer.load_balancers()
            if lb.name.startswith((f"kube_service_{lab}_", f"kube_ingress_{lab}_"))
        ]
        yield "openstack/load-balancers.json", json.dumps([lb.to_dict(computed=False) for lb in lbs], indent=2, default=str)
        for lb in lbs:
            tree = clouds.main.load_balancer.get_load_balancer_statuses(lb)
            yield f"openstack/lb-status-{lb.name}.json", json.dumps(tree.to_dict(computed=False), indent=2, default=str)

    def volumes():
        vols = [
            v
            for v in clouds.main.block_storage.volumes(details=True)
            if (v.metadata or {}).get("cinder.csi.openstack.org/cluster") == lab
        ]
        yield (
            "openstack/volumes.json",
            json.dumps(
                [
                    {
                        "id": v.id,
                        "name": v.name,
                        "status": v.status,
                        "size": v.size,
                        "attachments": v.attachments,
                        "metadata": v.metadata,
                    }
                    for v in vols
                ],
                indent=2,
                default=str,
            ),
        )

    def consoles():
        for name, srv in clouds.servers().items():
            out = clouds.main.compute.get_server_console_output(srv).get("output", "")
            yield f"openstack/console-{name}.log", out

    return [("octavia load balancers", load_balancers), ("cinder volumes", volumes), ("server consoles", consoles)]


def cluster_parts(s, api) -> list[Part]:
    ns = s.settings.verify.namespace
    sel = f"osk8s.io/lab={s.settings.lab.name}"

    def objects():
        yield "cluster/nodes.yaml", _yaml(api.request("GET", "/api/v1/nodes"))
        for kind, path in (
            ("deployments", "/apis/apps/v1/namespaces/kube-system/deployments"),
            ("daemonsets", "/apis/apps/v1/namespaces/kube-system/daemonsets"),
            ("statefulsets", "/apis/apps/v1/namespaces/kube-system/statefulsets"),
            ("pods", "/api/v1/namespaces/kube-system/pods"),
        ):
            yield f"cluster/kube-system-{kind}.yaml", _yaml(api.request("GET", path, query=[("labelSelector", sel)]))
        for kind, path in (
            ("all", f"/api/v1/namespaces/{ns}/pods"),
            ("services", f"/api/v1/namespaces/{ns}/services"),
            ("pvcs", f"/api/v1/namespaces/{ns}/persistentvolumeclaims"),
        ):
            yield f"cluster/{ns}-{kind}.yaml", _yaml(api.request("GET", path) or {})
        for where in ("kube-system", ns):
            yield f"cluster/events-{where}.yaml", _yaml(api.request("GET", f"/api/v1/namespaces/{where}/events") or {})

    def controller_logs():
        for pod in api.items("/api/v1/namespaces/kube-system/pods"):
            name = pod["metadata"]["name"]
            if not name.startswith(CONTROLLERS):
                continue
            for c in pod["spec"]["containers"]:
                for previous in (False, True):
                    query = [("container", c["name"])] + ([("previous", "true")] if previous else [])
                    code, body = api.call("GET", f"/api/v1/namespaces/kube-system/pods/{name}/log", query=query)
                    suffix = "previous" if previous else "current"
                    yield (
                        f"cluster/logs/{name}/{c['name']}.{suffix}.log",
                        body if code == 200 else f"(no log: HTTP {code}: {body[:200].decode(errors='replace')})\n",
                    )

    return [("cluster objects and events", objects), ("controller pod logs", controller_logs)]


def node_parts(s, remotes: dict) -> list[Part]:
    def journals():
        for node, r in remotes.items():
            for unit in ("kubelet", "containerd"):
                out = r.run(
                    f"journalctl -u {unit} --no-pager -n 3000 2>&1 || echo 'no journal of {unit}'", sudo=True, warn=True
                ).stdout
                yield f"nodes/{node}/{unit}.log", out

    return [("node journals (kubelet, containerd)", journals)]


def collect(s, output: str | None = None) -> Path:
    """Write the bundle; returns its path. Parts are read one after the other; each failure is a
    line of index.txt."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = Path(output) if output else s.settings.lab_dir / f"collect-{stamp}.tar.gz"
    make_dirs(out.parent)
    index: list[str] = [
        f"osk8s lab {s.settings.lab.name} diagnostics bundle, {time.strftime('%Y-%m-%d %H:%M:%S %Z')}",
        "every text is masked: passwords, credential secrets and tokens read as ***",
        "",
    ]
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.")
    try:
        with os.fdopen(fd, "wb") as fh, tarfile.open(fileobj=fh, mode="w:gz") as bundle:

            def add(path: str, content: bytes | str) -> int:
                text = content.decode(errors="replace") if isinstance(content, bytes) else content
                data = log.redact(text).encode()
                info = tarfile.TarInfo(path)
                info.size, info.mode, info.mtime = len(data), 0o600, int(time.time())
                bundle.addfile(info, io.BytesIO(data))
                return len(data)

            def run(name: str, produce) -> None:
                try:
                    files = [(p, add(p, c)) for p, c in produce()]
                    index.append(f"ok      {name}: " + (", ".join(f"{p} ({n} B)" for p, n in files) or "nothing to collect"))
                except StepFailed as exc:
                    index.append(f"missing {name}: {exc}")
                except Exception as exc:  # a part that cannot be read is a line here, not the bundle's end  # noqa: BLE001
                    index.append(f"missing {name}: {exc.__class__.__name__}: {str(exc)[:300]}")
                s.log.info("collect.part", part=name, result=index[-1].split()[0])

            run("devstack unit journals and stack logs", lambda: devstack_part(s))
            try:
                parts = cloud_parts(s)
            except StepFailed as exc:
                parts = []
                index.append(f"missing openstack: {exc}")
            for name, produce in parts:
                run(name, produce)
            with ExitStack() as stack:
                try:
                    api = stack.enter_context(api_of(s))
                    parts = cluster_parts(s, api)
                except StepFailed as exc:
                    parts = []
                    index.append(f"missing cluster: {exc}")
                for name, produce in parts:
                    run(name, produce)
                try:
                    remotes = stack.enter_context(connections(s))
                    parts = node_parts(s, remotes)
                except StepFailed as exc:
                    parts = []
                    index.append(f"missing node journals: {exc}")
                for name, produce in parts:
                    run(name, produce)
            add("index.txt", "\n".join(index) + "\n")
        os.replace(tmp, out)
    finally:
        Path(tmp).unlink(missing_ok=True)
    os.chmod(out, 0o600)
    return out
