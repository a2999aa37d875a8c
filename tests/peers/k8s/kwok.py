"""kwok (sigs.k8s.io/kwok) for one node: what the kubelet stand-in hands the status of its Node
and of ordinary Pods to. Two pieces:

1. `stages(source, runner_images)`: kwok's own Stage objects, read from the kwok module source the
   node was given (never copied into this repository), as kwokctl picks them for a cluster
   without node leases (pkg/kwokctl/runtime/cluster.go getDefaultNodeStages / getDefaultPodStages):
   kustomize/stage/node/fast/node-initialize.yaml, kustomize/stage/node/heartbeat/node-heartbeat.yaml,
   kustomize/stage/pod/fast/pod-{ready,complete,delete}.yaml. node-initialize writes no addresses (see
   ADDRESSES below: they are the kubelet's and the cloud controller's). Every pod stage gets a
   selector that leaves alone the pods the pod runner runs for real (any container or init
   container whose image repository is in `runner_images`), so kwok never marks them Running nor
   deletes them; their status and final deletion are the runner's (see kubelet/daemon.py, POD RUNNER HOOK).
   Mirror pods (annotation kubernetes.io/config.mirror) are skipped too: the kubelet stand-in
   reports their static pod's real containers on them, as the kubelet's status manager does.

2. `NodeScopedProxy`: kwok reaches the API server through it with the node's own credentials.
   Why: kwok is written for cluster-wide credentials, and the Node authorizer of 1.37 refuses
   one of its calls to a node: at start kwok lists all Nodes once (pkg/kwok/cmd/root.go
   waitForReady: Nodes().List(Limit: 1), no selector), which plugin/pkg/auth/authorizer/node/
   node_authorizer.go authorizeNode answers "node cannot read all nodes, only its own Node
   object"; kwok then gives up after five tries and exits. The proxy adds the field selector
   metadata.name=<node> to that one request (an unscoped GET /api/v1/nodes) and passes every
   other request and answer through unchanged, streaming watches; the API server authorizes
   everything else as the node. kwok's node lease controller is not used either (its informer
   lists Leases, which authorizeLease refuses: get/create/update/patch/delete only); the kubelet
   stand-in renews the node Lease itself, as the kubelet does.
"""

from __future__ import annotations

import http.client
import http.server
import re
import socket
import threading
import urllib.parse
from pathlib import Path

from tests.peers.httpserver import QuietHTTPServer

NODE_STAGES = ("kustomize/stage/node/fast/node-initialize.yaml", "kustomize/stage/node/heartbeat/node-heartbeat.yaml")
POD_STAGES = (
    "kustomize/stage/pod/fast/pod-ready.yaml",
    "kustomize/stage/pod/fast/pod-complete.yaml",
    "kustomize/stage/pod/fast/pod-delete.yaml",
)
# mirror pods: their status is the kubelet's (the static pod's real containers), never kwok's
MIRROR_SELECTOR_KEY = '.metadata.annotations["kubernetes.io/config.mirror"]'
# every image repository of the pod (tag and digest cut off); a pod without containers yields nothing
RUNNER_SELECTOR_KEY = (
    '((.spec.containers // []) + (.spec.initContainers // [])) | .[].image | sub("@.*$"; "") | sub(":[^:/]*$"; "")'
)


def image_repository(image: str) -> str:
    """The image without tag or digest, as RUNNER_SELECTOR_KEY computes it in kwok."""
    image = image.split("@", 1)[0]
    head, sep, tail = image.rpartition(":")
    return head if sep and "/" not in tail else image


# node-initialize's address block: with no InternalIP on the Node and no --node-ip it writes an empty
# `addresses:` (null), which wipes the kubelet's Hostname address; the addresses are the kubelet's and the
# cloud provider's to set (pkg/kubelet/nodestatus/setters.go NodeAddress with --cloud-provider=external,
# k8s.io/cloud-provider controllers/node updateNodeAddress), so the block is taken out of the template.
ADDRESSES = re.compile(r"\n *\{\{ \$hasInternalIP := false \}\}.*?(?=\n *\{\{ with NodePort \}\})", re.S)


def without_addresses(template: str) -> str:
    out, n = ADDRESSES.subn("\n", template)
    if n != 1:
        raise ValueError("kwok's node-initialize template changed: its address block was not found (kwok.py ADDRESSES)")
    return out


def stages(source: Path, runner_images) -> list[dict]:
    import yaml

    out = []
    for rel in NODE_STAGES + POD_STAGES:
        doc = yaml.safe_load((Path(source) / rel).read_text())
        if doc["metadata"]["name"] == "node-initialize":
            doc["spec"]["next"]["statusTemplate"] = without_addresses(doc["spec"]["next"]["statusTemplate"])
        if rel in POD_STAGES:
            exprs = doc["spec"].setdefault("selector", {}).setdefault("matchExpressions", [])
            exprs.append({"key": MIRROR_SELECTOR_KEY, "operator": "DoesNotExist"})
            if runner_images:
                exprs.append({"key": RUNNER_SELECTOR_KEY, "operator": "NotIn", "values": sorted(runner_images)})
        out.append(doc)
    return out


def write_config(path: Path, source: Path, runner_images) -> None:
    import yaml

    path.write_text(yaml.safe_dump_all(stages(source, runner_images), sort_keys=False))


def write_kubeconfig(path: Path, server: str) -> None:
    path.write_text(
        "apiVersion: v1\nkind: Config\n"
        f"clusters:\n- name: node-proxy\n  cluster:\n    server: {server}\n"
        "users:\n- name: node\n  user: {}\n"
        "contexts:\n- name: node\n  context:\n    cluster: node-proxy\n    user: node\n"
        "current-context: node\n"
    )


HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
}


def scoped(method: str, target: str, node: str) -> str:
    """The request target, with the one unscoped Node list kwok makes narrowed to its own Node."""
    u = urllib.parse.urlsplit(target)
    if method == "GET" and u.path.rstrip("/") == "/api/v1/nodes":
        q = urllib.parse.parse_qsl(u.query, keep_blank_values=True)
        if not any(k == "fieldSelector" and v for k, v in q):
            q = [(k, v) for k, v in q if k != "fieldSelector"] + [("fieldSelector", f"metadata.name={node}")]
            return urllib.parse.urlunsplit(("", "", u.path, urllib.parse.urlencode(q), ""))
    return target


class NodeScopedProxy:
    """http://127.0.0.1:<port> -> the API server, as the node (client certificate from `client`)."""

    def __init__(self, client, node: str, log=print):
        self.client, self.node, self.log = client, node, log
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, fmt, *args):  # quiet: kwok's own log says what it does
                pass

            def _forward(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                target = scoped(self.command, self.path, proxy.node)
                if target != self.path:
                    proxy.log(f"kwok proxy: {self.command} {self.path} -> {target} (Node authorizer: own Node only)")
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                try:
                    conn = proxy.client.connection(timeout=None)
                    conn.request(self.command, target, body=body, headers=headers)
                    resp = conn.getresponse()
                except (OSError, http.client.HTTPException) as exc:
                    msg = f"upstream: {exc}".encode()
                    self.send_response(502)
                    self.send_header("Content-Type", "text/plain")
                    self.send_header("Content-Length", str(len(msg)))
                    self.end_headers()
                    self.wfile.write(msg)
                    return
                try:
                    self.send_response_only(resp.status, resp.reason)
                    for k, v in resp.getheaders():
                        if k.lower() not in HOP_BY_HOP:
                            self.send_header(k, v)
                    if self.command == "HEAD" or resp.status in (204, 304):
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    if resp.chunked or resp.length is None:  # watches: stream as they come
                        self.send_header("Transfer-Encoding", "chunked")
                        self.end_headers()
                        while True:
                            chunk = resp.read1(65536)
                            if not chunk:
                                break
                            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                            self.wfile.flush()
                        self.wfile.write(b"0\r\n\r\n")
                    else:
                        data = resp.read()
                        self.send_header("Content-Length", str(len(data)))
                        self.end_headers()
                        self.wfile.write(data)
                except (OSError, http.client.HTTPException):
                    self.close_connection = True
                finally:
                    conn.close()

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _forward

        class Server(QuietHTTPServer):
            daemon_threads = True
            address_family = socket.AF_INET

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, name="kwok-proxy", daemon=True)

    def start(self) -> NodeScopedProxy:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
