"""What the kubelet stand-in is started with (following upstream's code, named below):
its flags as the kubeadm drop-in of the kubelet
package passes them (10-kubeadm.conf: --bootstrap-kubeconfig, --kubeconfig, --config,
$KUBELET_KUBEADM_ARGS, $KUBELET_EXTRA_ARGS; an unknown flag is refused, as kubelet's pflag does:
cmd/kubelet/app/options/options.go), its KubeletConfiguration (kubelet.config.k8s.io/v1beta1,
drop-ins of --config-dir merged over it), --register-with-taints; and what the test nodes give
it: its state directory and peers.env (the binaries built here, their versions, the project's
Python). Its log lines carry a klog-like header."""

from __future__ import annotations

import os
import shlex
import time
from dataclasses import dataclass
from pathlib import Path

STATE = Path(os.environ.get("OSK8S_STANDIN_STATE", "/var/lib/osk8s-standin"))

# the kubeadm drop-in of the kubelet package (10-kubeadm.conf), as the systemd unit runs it
UNIT_KUBECONFIG_ARGS = [
    "--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf",
    "--kubeconfig=/etc/kubernetes/kubelet.conf",
]
UNIT_CONFIG_ARGS = ["--config=/var/lib/kubelet/config.yaml"]
UNIT_ENV_FILES = ["/var/lib/kubelet/kubeadm-flags.env", "/etc/default/kubelet"]


def log(msg: str) -> None:
    t = time.time()
    print(f"{time.strftime('%m%d %H:%M:%S', time.localtime(t))}.{int(t % 1 * 1e6):06d} kubelet-standin] {msg}", flush=True)


def peers(state: Path = STATE) -> dict[str, str]:
    """KEY=value lines node_hosts wrote: the real binaries, their versions, the project's Python."""
    out = {}
    for line in (state / "peers.env").read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            k, v = line.split("=", 1)
            out[k.strip()] = shlex.split(v)[0] if v.strip() else ""
    return out


@dataclass
class Flags:
    kubeconfig: str = ""
    bootstrap_kubeconfig: str = ""
    config: str = ""
    config_dir: str = ""
    hostname_override: str = ""
    node_ip: str = ""
    cloud_provider: str = ""
    register_with_taints: str = ""
    node_labels: str = ""
    cert_dir: str = "/var/lib/kubelet/pki"
    root_dir: str = "/var/lib/kubelet"
    container_runtime_endpoint: str = ""
    pod_infra_container_image: str = ""
    v: str = ""


def parse_flags(argv: list[str]) -> Flags:
    """kubelet's flags as pflag takes them (--name=value or --name value); unknown ones refused."""
    f, known = Flags(), {k.replace("_", "-") for k in Flags.__dataclass_fields__}
    i = 0
    while i < len(argv):
        a = argv[i]
        if not a.startswith("--"):
            raise SystemExit(f"kubelet: unexpected argument {a!r}")
        name, eq, value = a[2:].partition("=")
        if name not in known:
            raise SystemExit(f"kubelet: unknown flag: --{name}")
        if not eq:
            i += 1
            if i >= len(argv):
                raise SystemExit(f"kubelet: flag needs an argument: --{name}")
            value = argv[i]
        setattr(f, name.replace("-", "_"), value)
        i += 1
    return f


def load_config(path: str, config_dir: str = "") -> dict:
    """KubeletConfiguration (kubelet.config.k8s.io/v1beta1), drop-ins of --config-dir merged over it."""
    import yaml

    doc = yaml.safe_load(Path(path).read_text()) or {}
    if doc.get("kind") != "KubeletConfiguration" or doc.get("apiVersion") != "kubelet.config.k8s.io/v1beta1":
        raise ValueError(f"{path}: not a kubelet.config.k8s.io/v1beta1 KubeletConfiguration")
    if config_dir and Path(config_dir).is_dir():
        for drop in sorted(Path(config_dir).glob("*.conf")):
            doc.update(yaml.safe_load(drop.read_text()) or {})
    return doc


def parse_taints(text: str) -> list[dict]:
    """--register-with-taints: key=value:Effect,key:Effect."""
    out = []
    for t in filter(None, text.split(",")):
        kv, _, effect = t.rpartition(":")
        key, eq, value = kv.partition("=")
        out.append({"key": key, "effect": effect, **({"value": value} if eq else {})})
    return out
