"""One typed settings model for every namespace, validated once before the first side effect.

Invoke gathers the values (its config chain); this module types and checks them. A bad value
never reaches a task: :func:`load` raises :class:`ConfigError`, whose lines each name the key,
the bad value and the fix, and tasks turn it into a one-line error and a non-zero exit.
"""

from __future__ import annotations

import copy
import difflib
import ipaddress
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from osk8s_tasks.core import values
from osk8s_tasks.core.defaults import DEFAULTS
from osk8s_tasks.core.embedded import embedded_clashes, embedded_dir, embedded_settings
from osk8s_tasks.core.values import DNS1123_WHY, PROJECT_DIR, KeyedError

SECTIONS = tuple(DEFAULTS)


class ConfigError(Exception):
    """Bad configuration; ``str()`` is one line per problem, each naming key, value and fix."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


Label = Annotated[str, AfterValidator(values.dns_label)]
RemotePath = Annotated[str, AfterValidator(values.remote_path)]
GitRef = Annotated[str, AfterValidator(values.git_ref)]
OneLine = Annotated[str, AfterValidator(values.one_line)]
Cidr = Annotated[str, AfterValidator(values.cidr)]
PosInt = Annotated[int, Field(gt=0)]
ImageRef = Annotated[str, AfterValidator(values.image_ref)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Lab(Section):
    name: Label
    state_dir: str | None
    kind: Literal["full", "embedded"]


class Log(Section):
    json_: str | None = Field(alias="json")


class Versions(Section):
    kubernetes: Annotated[str, Field(pattern=r"^1\.(3[0-9]|[4-9][0-9])\.(0|[1-9][0-9]{0,2})$")]
    openstack_branch: Annotated[str, Field(pattern=r"^(master|(stable|unmaintained)/\d{4}\.\d)$")]
    cloud_provider_openstack: Annotated[str, Field(pattern=r"^v\d+\.\d+\.\d+$")]
    calico: Annotated[str, Field(pattern=r"^v\d+\.\d+\.\d+$")]
    calico_manifest_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    kubernetes_apt_key_fingerprint: Annotated[str, Field(pattern=r"^[0-9A-F]{40}$")]
    csi_attacher: Annotated[str, Field(pattern=r"^v\d+\.\d+\.\d+$")]
    csi_provisioner: Annotated[str, Field(pattern=r"^v\d+\.\d+\.\d+$")]
    csi_resizer: Annotated[str, Field(pattern=r"^v\d+\.\d+\.\d+$")]
    csi_snapshotter: Annotated[str, Field(pattern=r"^v\d+\.\d+\.\d+$")]
    csi_livenessprobe: Annotated[str, Field(pattern=r"^v\d+\.\d+\.\d+$")]
    csi_node_driver_registrar: Annotated[str, Field(pattern=r"^v\d+\.\d+\.\d+$")]
    agnhost: Annotated[str, Field(pattern=r"^\d+\.\d+$")]
    busybox: Annotated[str, Field(pattern=r"^[\w.-]+$")]
    box: str | None  # checked where it is used: host.box
    box_version: str | None


class ManagementNetwork(Section):
    name: Annotated[str, Field(min_length=1)]
    address: Cidr


class Host(Section):
    driver: Literal["kvm", "qemu"]
    cpu_mode: Literal["host-passthrough", "host-model", "maximum"]
    nested: bool
    box: Annotated[str | None, AfterValidator(values.box)]
    box_version: str | None
    box_url: str | None
    memory: Annotated[int, Field(ge=512)]
    cpus: Annotated[int, Field(ge=1, le=256)]
    disk_gb: Annotated[int, Field(ge=8)] | None
    libvirt_uri: Annotated[str, Field(pattern=r"^(qemu|qemu\+\w+)://")]
    storage_pool: Annotated[str, Field(min_length=1)]
    management_network: ManagementNetwork
    install_plugin: bool
    boot_timeout: PosInt
    vagrantfile: str

    @model_validator(mode="after")
    def _cpu_mode_fits_driver(self) -> Host:
        if self.driver == "qemu" and self.cpu_mode != "maximum":
            raise KeyedError(
                "host.cpu_mode",
                self.cpu_mode,
                "does not work with driver 'qemu' (TCG)",
                "use 'maximum' or leave host.cpu_mode unset",
            )
        return self


class WatchedService(Section):
    unit: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]*$")]
    url: Annotated[str, Field(pattern=r"^https?://")]


class Watchdog(Section):
    services: Annotated[list[WatchedService], BeforeValidator(values.yaml_string)]
    unhealthy_seconds: PosInt
    interval: PosInt


class Devstack(Section):
    ssh_target: str | None
    ssh_config: str | None
    repo: Annotated[str, Field(pattern=r"^(https://|file:///|ssh://|git://)[^\s'\"$`\\]+$")]
    branch: GitRef
    dest: RemotePath
    packages: Annotated[list[Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9.+-]*$")]], BeforeValidator(values.yaml_string)]
    octavia_provider: Literal["amphora", "ovn"]
    amphora_image: RemotePath | None
    cinder_lvm_size: Annotated[str, Field(pattern=r"^\d+[MG]$")]
    enable_barbican: bool
    patches: Annotated[list[Annotated[str, AfterValidator(values.patch_file)]], BeforeValidator(values.yaml_string)]
    stack_timeout: PosInt
    watchdog: Watchdog

    def patch_path(self, name: str) -> Path:
        return Path(name) if os.path.isabs(name) else PROJECT_DIR / "devstack" / "patches" / name


class Flavor(Section):
    name: str | None
    ram: Annotated[int, Field(ge=512)]
    vcpus: PosInt
    disk: PosInt


class Image(Section):
    name: Annotated[str, Field(min_length=1)]
    url: Annotated[str, Field(pattern=r"^(https?|file)://")] | None
    file: str | None
    checksum: Annotated[str, Field(pattern=r"^(md5|sha256|sha512):[0-9a-f]+$")] | None
    disk_format: Literal["qcow2", "raw"]

    @model_validator(mode="after")
    def _one_source(self) -> Image:
        if self.url and self.file:
            raise KeyedError(
                "openstack.image.url",
                self.url,
                "given together with openstack.image.file",
                "give image.url or image.file, not both",
            )
        if self.url and not self.url.startswith("https://") and not self.checksum:
            raise KeyedError(
                "openstack.image.url",
                self.url,
                "is not https and has no checksum: anything on the way could replace the node image",
                "use an https URL, or set openstack.image.checksum (e.g. sha256:...)",
            )
        return self


class Openstack(Section):
    clouds_yaml: str | None
    cloud: Annotated[str, Field(min_length=1)]
    admin_cloud: Annotated[str, Field(min_length=1)]
    flavor: Flavor
    image: Image
    keypair: str | None
    security_group: str | None
    network: OneLine
    subnet: OneLine
    router: OneLine
    external_network: OneLine
    nodeport_range: Annotated[str, AfterValidator(values.port_range)]
    allowed_cidrs: Annotated[list[Cidr], BeforeValidator(values.yaml_string), Field(min_length=1)] | None
    app_credential: bool
    server_timeout: PosInt
    boot_concurrency: Annotated[int, Field(ge=1, le=32)]
    config_drive: bool


class Node(Section):
    name: Label
    role: Literal["control-plane", "worker"]


class Images(Section):
    occm: ImageRef | None
    cinder_csi: ImageRef | None
    octavia_ingress: ImageRef | None
    keystone_auth: ImageRef | None


class Cluster(Section):
    nodes: Annotated[list[Node], BeforeValidator(values.yaml_string), Field(min_length=1)]
    ssh_user: Annotated[str, AfterValidator(values.user_name)]
    ssh_config: str | None
    api_server: Annotated[str, Field(pattern=r"^https?://")] | None
    pod_subnet: Cidr
    service_subnet: Cidr
    cni: Literal["calico", "cilium"]
    lb_provider: Literal["amphora", "ovn"]
    manage_security_groups: bool
    create_monitor: bool
    images: Images

    @model_validator(mode="after")
    def _nodes_and_subnets(self) -> Cluster:
        names = [n.name for n in self.nodes]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise KeyedError(
                "cluster.nodes", ", ".join(dupes), "node names must be unique; repeated", "give each node its own name"
            )
        if not any(n.role == "control-plane" for n in self.nodes):
            raise KeyedError(
                "cluster.nodes",
                f"{len(self.nodes)} node(s), all workers",
                "at least one node needs role control-plane",
                "give one node role: control-plane, e.g. {name: master, role: control-plane}",
            )
        if ipaddress.ip_network(self.pod_subnet).overlaps(ipaddress.ip_network(self.service_subnet)):
            raise KeyedError(
                "cluster.pod_subnet",
                self.pod_subnet,
                f"overlaps cluster.service_subnet {self.service_subnet}",
                "choose two disjoint networks, e.g. 10.244.0.0/16 and 10.96.0.0/12",
            )
        return self


class Verify(Section):
    checks: Annotated[list[Literal["lb", "pv", "ingress", "keystone"]], BeforeValidator(values.yaml_string)]
    keep: bool
    timeout: PosInt
    namespace: Label
    viewer_role: Annotated[str, Field(min_length=1)]
    keystone_user_cloud: str | None


class Embedded(Section):
    workers: Annotated[int, Field(ge=1, le=8)]


class Settings(Section):
    lab: Lab
    log: Log
    versions: Versions
    host: Host
    devstack: Devstack
    openstack: Openstack
    cluster: Cluster
    embedded: Embedded
    verify: Verify

    @model_validator(mode="after")
    def _server_names_fit(self) -> Settings:
        for n, node in enumerate(self.cluster.nodes):
            full = f"{self.lab.name}-{node.name}"
            if len(full) > 63:
                raise KeyedError(
                    f"cluster.nodes.{n}.name",
                    node.name,
                    f"server name {full!r} is longer than 63 characters: {DNS1123_WHY}",
                    "shorten lab.name or the node name",
                )
        return self

    @property
    def state_dir(self) -> Path:
        return Path(self.lab.state_dir or PROJECT_DIR / ".osk8s").resolve()

    @property
    def lab_dir(self) -> Path:
        return self.state_dir / self.lab.name

    @property
    def embedded_dir(self) -> Path:
        """The embedded lab's machines: sshd hosts' keys and private directories, nodes.json."""
        return embedded_dir(self.lab.name)


# --- loading -----------------------------------------------------------------------------------

# The fix for a key, when it is more specific than "set KEY to a valid value".
FIXES = {
    "lab.name": "use lower-case letters, digits and '-' (e.g. 'osk8s-lab')",
    "cluster.nodes": "give each node a DNS-1123 name and a role (control-plane|worker), e.g. "
    "[{name: master, role: control-plane}, {name: worker-1, role: worker}]",
    "host.driver": "use 'kvm' on hosts with VT-x/AMD-V (see `inv host.check`), else 'qemu' (TCG, slow)",
    "host.cpu_mode": "leave it unset: host-passthrough is used for kvm and maximum for qemu",
    "host.memory": "give the lab VM at least 512 MiB (DevStack with Octavia wants 12288 or more)",
    "host.box": "name a Vagrant box with a libvirt flavour, e.g. cloud-image/ubuntu-24.04",
    "versions.box": "name a Vagrant box with a libvirt flavour, e.g. cloud-image/ubuntu-24.04",
    "versions.kubernetes": "pin a 1.30+ release as MAJOR.MINOR.PATCH, e.g. 1.37.2",
    "versions.openstack_branch": "use 'master' or a branch such as stable/2026.1",
    "devstack.octavia_provider": "use 'amphora' (VMs, slower) or 'ovn' (no VMs)",
    "cluster.lb_provider": "use 'amphora' or 'ovn', matching devstack.octavia_provider",
    "devstack.patches": "put the patch in devstack/patches/ and list its file name",
    "devstack.watchdog.services": "list {unit: g-api, url: 'http://{host_ip}/image'} entries",
    "cluster.images": "give the name your build has, as `docker images` or `ctr images ls` shows it (e.g. "
    "registry.k8s.io/provider-os/openstack-cloud-controller-manager:v1.36.0-dev), or leave it unset for upstream's",
}


def _env_name(key: str) -> str:
    return "INVOKE_" + key.upper().replace(".", "_")


def _fix(key: str) -> str:
    for prefix in sorted(FIXES, key=len, reverse=True):
        if key == prefix or key.startswith(prefix + "."):
            return FIXES[prefix]
    return f"set {key} to a valid value (invoke.yaml, -f FILE or {_env_name(key)})"


def _known_keys(tree: dict, prefix: str = "") -> list[str]:
    keys = []
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        keys.append(dotted)
        if isinstance(value, dict):
            keys.extend(_known_keys(value, dotted + "."))
    return keys


def _describe(error: dict) -> str:
    # Model-level validators name their key through KeyedError; list items keep their index.
    keyed = (error.get("ctx") or {}).get("error")
    if isinstance(keyed, KeyedError):
        return f"config: {keyed.key} = {keyed.value!r}: {keyed.message}. Fix: {keyed.fix}"
    key = ".".join(str(p) for p in error["loc"]) or "config"  # pydantic names fields by alias (log.json)
    value = error.get("input")
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        close = difflib.get_close_matches(key, _known_keys(DEFAULTS), n=1)
        hint = f"did you mean {close[0]}?" if close else "remove it; `inv --help TASK` lists the settings"
        return f"config: unknown key {key}: {hint}"
    shown = value if not isinstance(value, dict) else "{...}"
    return f"config: {key} = {shown!r}: {message}. Fix: {_fix(key)}"


def _merge(base: dict, override: dict) -> dict:
    """Defaults overlaid with every value that was given (None means 'not given')."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if value is None:
            continue
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _plain(value: Any) -> Any:
    """Invoke's DataProxy tree as plain dicts and lists."""
    if hasattr(value, "keys") and not isinstance(value, dict | str):
        return {k: _plain(value[k]) for k in value.keys()}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _derive(raw: dict) -> dict:
    """Fill the keys whose default depends on another key."""
    host, versions, devstack = raw["host"], raw["versions"], raw["devstack"]
    if host.get("box") is None:
        host["box"] = versions.get("box")
        if host.get("box_version") is None:
            host["box_version"] = versions.get("box_version")
    if host.get("cpu_mode") is None:
        host["cpu_mode"] = "maximum" if host.get("driver") == "qemu" else "host-passthrough"
    if host.get("vagrantfile") is None:
        host["vagrantfile"] = str(PROJECT_DIR / "Vagrantfile")
    if devstack.get("branch") is None:
        devstack["branch"] = versions.get("openstack_branch")
    return raw


def validate(values: dict, overrides: dict[str, Any] | None = None) -> Settings:
    """Validate raw values (as Invoke gathered them) plus task-flag overrides (dotted keys)."""
    raw = _merge(DEFAULTS, {k: v for k, v in values.items() if k in SECTIONS})
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        node = raw
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    try:
        if isinstance(raw.get("lab"), dict) and raw["lab"].get("kind") == "embedded":
            workers = raw.get("embedded", {}).get("workers")
            fixed = embedded_settings(str(raw["lab"].get("name")), workers if isinstance(workers, int) else 1)
            if clash := embedded_clashes(values, fixed):
                raise ConfigError(clash)
            raw = _merge(raw, fixed)
        _derive(raw)
        return Settings.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError([_describe(e) for e in exc.errors()]) from None
    except (AttributeError, TypeError) as exc:  # a section given as a scalar, e.g. `host: 3`
        raise ConfigError([f"config: a section is not a mapping ({exc}). Fix: write it as `key: value` lines"]) from None


def load(c, overrides: dict[str, Any] | None = None) -> Settings:
    """Settings from an Invoke context: the whole config chain, then task flags."""
    runtime = getattr(c.config, "_runtime_path", None)
    if runtime and not os.path.exists(runtime):
        raise ConfigError([f"config: -f {runtime}: no such file. Fix: give the path of a YAML config file"])
    values = {}
    for section in SECTIONS:
        try:
            values[section] = _plain(c.config[section])
        except KeyError:
            continue
    return validate(values, overrides)
