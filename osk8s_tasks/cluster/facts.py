"""What a Kubernetes node is, read with one shell command each and parsed by a pure function
(tested on recorded output in tests/unit/facts/): loaded kernel modules, swap, containerd, and
the kubeadm/kubelet/kubectl versions."""

from __future__ import annotations

from dataclasses import dataclass

LSMOD_PROBE = "lsmod"


def parse_lsmod(text: str) -> set[str]:
    """Module names from `lsmod` (its first line is a header)."""
    return {line.split()[0] for line in text.splitlines()[1:] if line.strip()}


SWAP_PROBE = (
    r"swapon --noheadings --show 2>/dev/null; echo @@osk8s-fstab@@; "
    r"grep -Ec '^[^#].*\sswap\s' /etc/fstab 2>/dev/null"
)


def parse_swap(text: str) -> tuple[bool, bool]:
    """(swap active now, a swap line in /etc/fstab)."""
    active, _, fstab = text.partition("@@osk8s-fstab@@")
    return bool(active.strip()), fstab.strip() not in ("", "0")


CONTAINERD_PROBE = (
    "if command -v containerd >/dev/null; then echo installed; echo @@; "
    "grep -c 'SystemdCgroup = true' /etc/containerd/config.toml 2>/dev/null; echo @@; "
    "systemctl is-active containerd 2>/dev/null; else echo @@; echo @@; fi"
)


@dataclass(frozen=True)
class Containerd:
    installed: bool
    systemd_cgroup: bool
    active: str


def parse_containerd(text: str) -> Containerd:
    parts = (text.split("@@") + ["", "", ""])[:3]
    return Containerd(parts[0].strip() == "installed", parts[1].strip() not in ("", "0"), parts[2].strip() or "unknown")


KUBE_VERSIONS_PROBE = (
    "kubeadm version -o short 2>/dev/null; echo @@; kubelet --version 2>/dev/null; echo @@; "
    "kubectl version --client -o yaml 2>/dev/null | grep gitVersion"
)


def parse_kube_versions(text: str) -> dict[str, str | None]:
    """{kubeadm, kubelet, kubectl: 'v1.37.2' or None}: `kubeadm version -o short` prints the version,
    `kubelet --version` 'Kubernetes v1.37.2', kubectl's YAML a `gitVersion: v1.37.2` line."""
    parts = (text.split("@@") + ["", "", ""])[:3]
    last = [(p.split() or [None])[-1] for p in parts]
    return dict(zip(("kubeadm", "kubelet", "kubectl"), last, strict=True))


NODE_MARK = "@@osk8s-node "


def node_probe(sections: dict[str, str]) -> str:
    """One command that runs every probe of a node's checks, each section after a marker line:
    one SSH exec per node for all its checks instead of one per check. Each marker starts on a line
    of its own even after output without a final newline: the newline printed before it, and one
    after the last section, are the parser's to drop."""
    body = "; ".join(f"printf '\\n{NODE_MARK}{name}\\n'; {{ {command}; }}" for name, command in sections.items())
    return body + "; printf '\\n'"


def parse_node_probe(text: str) -> dict[str, str]:
    """{section: its output} from node_probe's output."""
    out: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines(keepends=True):
        if line.startswith(NODE_MARK):
            current = line[len(NODE_MARK) :].strip()
            out[current] = []
        elif current is not None:
            out[current].append(line)
    return {k: "".join(v).removesuffix("\n") for k, v in out.items()}


def parse_console_host_keys(console: str) -> list[str]:
    """`<type> <key>` lines that cloud-init prints to the console between its host-key markers:
    the server's own word on its keys, read through the compute API, not over the network."""
    inside, keys = False, []
    for line in console.splitlines():
        if "-----BEGIN SSH HOST KEY KEYS-----" in line:
            inside = True
        elif "-----END SSH HOST KEY KEYS-----" in line:
            inside = False
        elif inside:
            parts = line.split()
            if len(parts) >= 2 and (parts[0].startswith("ssh-") or parts[0].startswith("ecdsa-")):
                keys.append(f"{parts[0]} {parts[1]}")
    return keys


NO_CTR = "@@osk8s-no-ctr@@"
CTR_IMAGES_PROBE = f"if command -v ctr >/dev/null; then ctr -n k8s.io images ls; else echo {NO_CTR}; fi"


@dataclass(frozen=True)
class CtrImage:
    digest: str  # the image's target (manifest or index) digest
    media_type: str
    labels: dict[str, str]


def parse_ctr_images(text: str) -> dict[str, CtrImage] | None:
    """{name: image} from `ctr -n k8s.io images ls`; None when ctr is not installed. The layout is
    containerd v2.4.2's cmd/ctr/commands/images/images.go listCommand: a tabwriter table REF TYPE
    DIGEST SIZE PLATFORMS LABELS, SIZE two words ("7.4 MiB"), PLATFORMS and LABELS "-" when empty,
    labels as sorted k=v joined by ','. A label value with a ',' or a space is not read back
    whole (osk8s's own label has neither)."""
    if text.strip() == NO_CTR:
        return None
    out = {}
    for line in text.splitlines():
        words = line.split()
        if len(words) < 7 or words[:3] == ["REF", "TYPE", "DIGEST"]:
            continue
        name, media_type, digest, labels = words[0], words[1], words[2], " ".join(words[6:])
        pairs = [p.partition("=") for p in labels.split(",")] if labels != "-" else []
        out[name] = CtrImage(digest, media_type, {k: v for k, _, v in pairs})
    return out
