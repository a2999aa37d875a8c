"""`openstack`: make a cloud ready for a Kubernetes cluster, idempotently (openstacksdk).

One decision function per resource kind (find -> create / update with a computed diff / nothing),
used by both the check (and so --dry-run) and the apply, as openstack.cloud's resource module
does. Every object the lab creates carries the `<lab>-` name prefix and the tag `osk8s:<lab>`.
Read-only preflight checks run first, so bad input fails before the first write.
"""

from __future__ import annotations

import hashlib
from contextlib import contextmanager
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from invoke import Collection, task

from osk8s_tasks.openstack import clouds as cloud
from osk8s_tasks.core.ssh import write_private
from osk8s_tasks.core.files import private_dir
from osk8s_tasks.core.engine import COMMON_HELP, Status, Step, StepFailed, session

PROTOCOL_NUMBERS = {"icmp": "1", "tcp": "6", "udp": "17", "ipip": "4"}


@dataclass
class Decision:
    action: str  # none | create | update | replace
    reason: str
    diff: str = ""
    obj: Any = None
    data: dict = field(default_factory=dict)


def resource_step(clouds, name: str, decide: Callable[[], Decision], act: Callable[[Decision], None]) -> Step:
    """A Step whose check and apply share one decision function."""

    def check():
        d = decide()
        return Status(d.action == "none", d.reason, d.diff)

    def apply():
        act(decide())
        clouds.cache.clear()

    return Step(name, check, apply)


def names(settings) -> dict[str, str]:
    o, lab = settings.openstack, settings.lab.name
    return {"flavor": o.flavor.name or f"{lab}-k8s", "keypair": o.keypair or f"{lab}-key",
            "secgroup": o.security_group or f"{lab}-k8s", "image": f"{lab}-{o.image.name}",
            "appcred": f"{lab}-cloud-provider"}


# --- preflight: read-only checks that make bad input fail before any write --------------------------


def preflight_steps(s, clouds) -> list[Step]:
    o = s.settings.openstack

    def cloud_ok(name):
        def check():
            conn = clouds.get(name)
            return Status(True, f"authenticated to {conn.config.auth['auth_url']} as {conn.config.auth.get('username')}")
        return check

    def networks():
        net = clouds.main.network
        ext = cloud.by_name(net.networks(name=o.external_network))
        if ext is None or not ext.is_router_external:
            have = [n.name for n in net.networks(is_router_external=True)]
            raise StepFailed(f"external network {o.external_network!r} not found (external networks: {', '.join(have) or 'none'}). "
                             "Fix: set openstack.external_network")
        missing = [f"{k} {v!r}" for k, v, f in (("network", o.network, net.networks), ("subnet", o.subnet, net.subnets),
                                                 ("router", o.router, net.routers)) if cloud.by_name(f(name=v)) is None]
        if missing:
            raise StepFailed(f"not found: {', '.join(missing)}. Fix: set openstack.network/subnet/router to existing names")
        return Status(True, f"{o.network}/{o.subnet} behind {o.router}, floating IPs from {o.external_network}")

    def image_source():
        if o.image.file:
            if not Path(o.image.file).is_file():
                raise StepFailed(f"openstack.image.file {o.image.file!r}: no such file. Fix: give the path of the image")
            return Status(True, f"image file {o.image.file} is readable")
        if o.image.url:
            try:
                req = urllib.request.Request(o.image.url, method="HEAD")
                with _open_url(req, timeout=15) as r:
                    size = r.headers.get("Content-Length", "?")
            except (OSError, ValueError) as exc:
                raise StepFailed(f"openstack.image.url {o.image.url!r} is unreachable ({exc}). "
                                 "Fix: check the URL, or download the image and set openstack.image.file") from None
            return Status(True, f"image URL answers ({size} bytes)")
        found = _find_image(s, clouds)
        if found is None:
            raise StepFailed(f"no image {o.image.name!r} in the cloud and no source given. "
                             "Fix: set openstack.image.url or openstack.image.file")
        return Status(True, f"image {found.name} exists")

    return [Step(f"cloud {o.cloud}", cloud_ok(o.cloud)), Step(f"cloud {o.admin_cloud}", cloud_ok(o.admin_cloud)),
            Step("networks", networks), Step("image source", image_source)]


# --- resources -----------------------------------------------------------------------------------------


def flavor_step(s, clouds) -> Step:
    f, name, lab = s.settings.openstack.flavor, names(s.settings)["flavor"], s.settings.lab.name

    def decide():
        have = flavor_named(clouds, name)
        want = {"ram": f.ram, "vcpus": f.vcpus, "disk": f.disk}
        if have is None:
            return Decision("create", f"no flavor {name}", f"create flavor {name}: {want}")
        diff = {k: (getattr(have, k), v) for k, v in want.items() if getattr(have, k) != v}
        if diff:  # flavors are immutable: replace (running servers keep their embedded copy)
            return Decision("replace", f"flavor {name} differs", "; ".join(f"{k} {a} -> {b}" for k, (a, b) in diff.items()), have)
        return Decision("none", f"flavor {name}: {f.ram} MiB, {f.vcpus} vCPU, {f.disk} GB")

    def act(d):
        admin = clouds.admin.compute
        if d.action == "replace":
            admin.delete_flavor(d.obj)
        created = admin.create_flavor(name=name, ram=f.ram, vcpus=f.vcpus, disk=f.disk, is_public=True)
        admin.create_flavor_extra_specs(created, {"osk8s:lab": lab})

    return resource_step(clouds, f"flavor {name}", decide, act)


def flavor_named(clouds, name: str):
    return next((f for f in clouds.admin.compute.flavors() if f.name == name), None)


def local_key(settings) -> Path:
    return settings.lab_dir / "id_ed25519"


def keypair_step(s, clouds) -> Step:
    name, key = names(s.settings)["keypair"], local_key(s.settings)

    def decide():
        have = next((k for k in clouds.main.compute.keypairs() if k.name == name), None)
        pub = key.with_suffix(".pub").read_text().strip() if key.exists() else None
        if have is None:
            return Decision("create", f"no keypair {name}", f"import {'' if pub else 'a new '}key {key} as keypair {name}")
        if pub is None or have.public_key.split()[:2] != pub.split()[:2]:
            why = "no local private key" if pub is None else "public key differs from the local key"
            return Decision("replace", f"keypair {name}: {why}", f"replace keypair {name} with {key}.pub", have)
        return Decision("none", f"keypair {name} matches {key.name} (private key 0600)")

    def act(d):
        if not key.exists():
            private_dir(key.parent)
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"osk8s {s.settings.lab.name}", "-f", str(key)], check=True)
        key.chmod(0o600)
        if d.action == "replace":
            clouds.main.compute.delete_keypair(d.obj)
        clouds.main.compute.create_keypair(name=name, public_key=key.with_suffix(".pub").read_text().strip())

    return resource_step(clouds, f"keypair {name}", decide, act)


def wanted_rules(settings, cidrs: list[str]) -> list[dict]:
    """Rules the nodes need. What is reached from outside the cluster (ping, SSH, the API, the
    NodePort range: the 2018 write-up's LoadBalancer Service was unreachable for want of it) is
    open to `cidrs` only, one rule each; the nodes' own traffic to the group itself."""
    lo, hi = (int(x) for x in settings.openstack.nodeport_range.split("-"))
    group = "self"
    outside = [("icmp", None, None, "ping"), ("tcp", 22, 22, "ssh"), ("tcp", 6443, 6443, "kubernetes API"),
               ("tcp", lo, hi, "NodePort services"), ("udp", lo, hi, "NodePort services (udp)")]
    rules = [(p, a, b, cidr, w) for p, a, b, w in outside for cidr in cidrs]
    rules += [("tcp", 10250, 10250, group, "kubelet"), ("tcp", 2379, 2380, group, "etcd")]
    if settings.cluster.cni == "calico":
        rules += [("tcp", 179, 179, group, "calico BGP"), ("ipip", None, None, group, "calico IP-in-IP"),
                  ("udp", 4789, 4789, group, "calico VXLAN")]
    else:
        rules += [("udp", 8472, 8472, group, "cilium VXLAN"), ("tcp", 4240, 4240, group, "cilium health")]
    return [{"protocol": p, "port_range_min": a, "port_range_max": b, "remote": r, "why": w} for p, a, b, r, w in rules]


def allowed_cidrs(settings, clouds) -> list[str]:
    """openstack.allowed_cidrs, or by default the external network's subnets (where floating-IP
    clients, the devstack host included, come from) and the nodes' own subnet (Octavia amphorae
    reach the NodePorts from it): never 0.0.0.0/0 unless the user says so."""
    o = settings.openstack
    if o.allowed_cidrs is not None:
        return list(o.allowed_cidrs)
    net = clouds.main.network
    ext = cloud.by_name(net.networks(name=o.external_network))
    own = cloud.by_name(net.subnets(name=o.subnet))
    cidrs = [sn.cidr for sn in net.subnets(network_id=ext.id) if sn.ip_version == 4] if ext else []
    if own is not None and own.ip_version == 4:
        cidrs.append(own.cidr)
    if not cidrs:
        raise StepFailed(f"no IPv4 subnet on external network {o.external_network!r} or subnet {o.subnet!r} to open the "
                         "nodes to. Fix: set openstack.allowed_cidrs (e.g. [203.0.113.0/24])")
    return sorted(dict.fromkeys(cidrs))


def _rule_key(protocol, lo, hi, remote) -> tuple:
    return (PROTOCOL_NUMBERS.get(str(protocol), str(protocol)), lo, hi, remote)


def secgroup_step(s, clouds) -> Step:
    name, lab_tag = names(s.settings)["secgroup"], cloud.tag(s.settings)

    def decide():
        net = clouds.main.network
        sg = cloud.by_name(net.security_groups(name=name))
        cidrs = allowed_cidrs(s.settings, clouds)
        wanted = wanted_rules(s.settings, cidrs)
        if sg is None:
            return Decision("create", f"no security group {name}",
                            f"create {name} with {len(wanted)} rules (from outside: {', '.join(cidrs)}): "
                            + ", ".join(dict.fromkeys(w["why"] for w in wanted)))
        have = {_rule_key(r.protocol, r.port_range_min, r.port_range_max, "self" if r.remote_group_id == sg.id else r.remote_ip_prefix): r
                for r in net.security_group_rules(security_group_id=sg.id, direction="ingress")}
        keys = {_rule_key(w["protocol"], w["port_range_min"], w["port_range_max"], w["remote"]) for w in wanted}
        missing = [w for w in wanted if _rule_key(w["protocol"], w["port_range_min"], w["port_range_max"], w["remote"]) not in have]
        extra = [r for k, r in have.items() if k not in keys and (r.description or "").startswith("osk8s:")]
        if missing or extra:
            def show(proto, lo, hi, remote, why):
                ports = f" {lo or ''}-{hi or ''}".replace(" -", "") if lo or hi else ""
                return f"{why} ({proto}{ports} from {remote})"

            desc = "; ".join(filter(None, [
                "add: " + ", ".join(show(w["protocol"], w["port_range_min"], w["port_range_max"], w["remote"], w["why"])
                                    for w in missing) if missing else "",
                "remove: " + ", ".join(show(r.protocol, r.port_range_min, r.port_range_max, r.remote_ip_prefix or "group",
                                            (r.description or "")[len("osk8s: "):]) for r in extra) if extra else ""]))
            return Decision("update", f"{len(missing)} rule(s) missing from {name}, {len(extra)} no longer wanted",
                            desc, sg, {"missing": missing, "extra": extra})
        return Decision("none", f"security group {name}: all {len(wanted)} rules present, from outside {', '.join(cidrs)}")

    def act(d):
        net = clouds.main.network
        sg = d.obj
        if d.action == "create":
            sg = net.create_security_group(name=name, description=f"osk8s lab {s.settings.lab.name}: Kubernetes nodes")
            net.set_tags(sg, [lab_tag])
            d.data.update(missing=wanted_rules(s.settings, allowed_cidrs(s.settings, clouds)), extra=[])
        for r in d.data["extra"]:
            net.delete_security_group_rule(r)
        for w in d.data["missing"]:
            remote = {"remote_group_id": sg.id} if w["remote"] == "self" else {"remote_ip_prefix": w["remote"]}
            net.create_security_group_rule(security_group_id=sg.id, direction="ingress", ethertype="IPv4",
                                           protocol=w["protocol"], port_range_min=w["port_range_min"],
                                           port_range_max=w["port_range_max"], description=f"osk8s: {w['why']}", **remote)

    return resource_step(clouds, f"security group {name}", decide, act)


def _file_hash(path: Path, algo: str) -> str:
    """The file's digest, cached beside it in .osk8s by (size, mtime): node images are hundreds of
    MB, and a re-run must not read them again to learn that nothing changed."""
    import json

    st = path.stat()
    key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{algo}"
    cache = Path.home() / ".cache" / "osk8s" / "file-hashes.json"
    try:
        known = json.loads(cache.read_text())
    except (OSError, ValueError):
        known = {}
    if key in known:
        return known[key]
    h = hashlib.new(algo)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    known[key] = h.hexdigest()
    private_dir(cache.parent)
    cache.write_text(json.dumps(known))
    return known[key]


def _image_file(s) -> Path:
    """The local image file: configured, or downloaded once into .osk8s/cache/."""
    o = s.settings.openstack.image
    if o.file:
        return Path(o.file)
    target = s.settings.state_dir / "cache" / Path(o.url.split("?")[0]).name
    if not target.exists():
        private_dir(target.parent)
        s.log.info("image.download", url=o.url, to=str(target))
        part = target.with_suffix(target.suffix + ".part")
        with _open_url(o.url, timeout=60) as r, open(part, "wb") as fh:
            while chunk := r.read(1 << 20):
                fh.write(chunk)
        part.rename(target)
    if o.checksum:
        algo, want = o.checksum.split(":", 1)
        if _file_hash(target, algo) != want:
            raise StepFailed(f"{target}: {algo} does not match openstack.image.checksum. Fix: correct the checksum or the source")
    return target


class _HttpsOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follows a redirect only to https: a redirect to http would let anything on the way swap the image."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if not newurl.startswith("https://"):
            raise urllib.error.HTTPError(newurl, code, f"refused redirect to {newurl} (not https)", headers, fp)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _open_url(req, timeout: float):
    return urllib.request.build_opener(_HttpsOnlyRedirects).open(req, timeout=timeout)


def _find_image(s, clouds):
    """Our own upload (<lab>-<name>), else a pre-existing image of the configured name."""
    n = names(s.settings)["image"]
    img = clouds.main.image
    return cloud.by_name(img.images(name=n)) or cloud.by_name(img.images(name=s.settings.openstack.image.name))


def image_step(s, clouds) -> Step:
    o, name = s.settings.openstack.image, names(s.settings)["image"]

    def decide():
        have = _find_image(s, clouds)
        if not (o.url or o.file):
            s.log.warning("image.trusted_by_name", image=have.name, id=have.id,
                          fix="set openstack.image.url (https) or file, with a checksum")
            return Decision("none", f"image {have.name} ({have.id[:8]}) TRUSTED BY NAME ONLY: no image url/file/checksum")
        local = _image_file(s) if (o.file or not s.dry_run) else None
        if have is not None and local is not None:
            if have.hash_value == _file_hash(local, have.hash_algo or "sha512") and have.status == "active":
                return Decision("none", f"image {have.name} matches {local.name} ({have.hash_algo} checksum)")
            if have.name != name:
                return Decision("create", f"image {have.name} has another checksum", f"upload {local.name} as {name}")
            return Decision("replace", f"image {name} has another checksum", f"replace {name} with {local.name}", have)
        source = local.name if local else o.url
        return Decision("create", f"no image {name}", f"upload {source} as {name} ({o.disk_format})")

    def act(d):
        img = clouds.main.image
        if d.action == "replace":
            img.delete_image(d.obj)
        # allow_duplicates: the decision above already looked; the SDK's own look-up is a deprecated find_image
        created = img.create_image(name=name, filename=str(_image_file(s)), disk_format=o.disk_format,
                                   container_format="bare", tags=[cloud.tag(s.settings)], wait=True,
                                   allow_duplicates=True)
        img.wait_for_status(created, "active", wait=600)

    return resource_step(clouds, f"image {name}", decide, act)


def app_credential_path(settings) -> Path:
    return settings.lab_dir / "app-credential.yaml"


def app_credential_step(s, clouds) -> Step:
    import yaml

    name, path = names(s.settings)["appcred"], app_credential_path(s.settings)

    def decide():
        conn = clouds.main
        idn = conn.identity
        have = next(iter(idn.application_credentials(user=conn.current_user_id, name=name)), None)
        local = yaml.safe_load(path.read_text()) if path.exists() else None
        if have is None:
            return Decision("create", f"no application credential {name}", f"create {name} (secret kept in {path}, 0600)")
        if not local or local.get("id") != have.id:
            return Decision("replace", f"{name}: its secret is not in {path}", f"replace {name}", have)
        return Decision("none", f"application credential {name} ({have.id[:8]}), secret in {path.name} (0600)")

    def act(d):
        conn = clouds.main
        if d.action == "replace":
            conn.identity.delete_application_credential(conn.current_user_id, d.obj)
        cred = conn.identity.create_application_credential(
            conn.current_user_id, name, description=f"osk8s lab {s.settings.lab.name}: cloud provider", unrestricted=False)
        from osk8s_tasks.core import log

        log.secret(cred.secret)
        write_private(path, yaml.safe_dump({"id": cred.id, "name": name, "secret": cred.secret,
                                            "auth_url": conn.config.auth["auth_url"],
                                            "region": conn.config.region_name or "RegionOne"}))

    return resource_step(clouds, f"application credential {name}", decide, act)


def prepare_steps(s, clouds) -> list[Step]:
    steps = [flavor_step(s, clouds), keypair_step(s, clouds), secgroup_step(s, clouds), image_step(s, clouds)]
    if s.settings.openstack.app_credential:
        steps.append(app_credential_step(s, clouds))
    return steps


def report_api(s, clouds) -> None:
    counts = clouds.api_counts()
    s.log.info("openstack.api", requests=sum(c["requests"] for c in counts.values()),
               writes=sum(c["writes"] for c in counts.values()), clouds=counts)
    s.log.debug("openstack.api.slowest", requests=clouds.slowest())


@contextmanager
def cloud_session(c, task_name: str, dry_run=False, log_json=None, quiet=False):
    """A run with the lab's clouds; the API request count is logged at its end."""
    with session(c, task_name, dry_run, log_json, quiet=quiet) as s:
        clouds = cloud.Clouds(s.settings)
        try:
            yield s, clouds
        finally:
            report_api(s, clouds)


def concurrently(s, steps: list[Step]) -> None:
    """Independent steps: all checks at once, applies bounded by openstack.boot_concurrency."""
    s.plan_nodes({step.name: [step] for step in steps}, s.settings.openstack.boot_concurrency)


def run_prepare(s, clouds) -> None:
    first, *rest = preflight_steps(s, clouds)
    s.plan([first])  # authenticate to the main cloud first: every other check uses it
    concurrently(s, rest)
    concurrently(s, prepare_steps(s, clouds))


@task(help=COMMON_HELP)
def prepare(c, dry_run=False, log_json=None):
    """Flavor, keypair, security group (incl. the NodePort range), node image, application credential."""
    with cloud_session(c, "openstack.prepare", dry_run, log_json) as (s, clouds):
        run_prepare(s, clouds)


def _servers():
    from osk8s_tasks.openstack import servers as openstack_servers

    return openstack_servers


@task(help=COMMON_HELP)
def servers(c, dry_run=False, log_json=None):
    """The Kubernetes node servers (cluster.nodes), ACTIVE, with keypair, security group and floating IPs."""
    with cloud_session(c, "openstack.servers", dry_run, log_json) as (s, clouds):
        s.plan(preflight_steps(s, clouds)[:3])
        s.plan_nodes(_servers().server_plan(s, clouds), s.settings.openstack.boot_concurrency)


@task(help=COMMON_HELP)
def deploy(c, dry_run=False, log_json=None):
    """prepare -> servers, in one authenticated session: the cloud side of the lab."""
    with cloud_session(c, "openstack.deploy", dry_run, log_json) as (s, clouds):
        run_prepare(s, clouds)
        s.plan_nodes(_servers().server_plan(s, clouds), s.settings.openstack.boot_concurrency)


@task(help=COMMON_HELP)
def teardown(c, dry_run=False, log_json=None):
    """Delete everything the lab owns, in dependency order (cluster LBs and volumes first), then
    report any object still carrying the lab tag as an orphan."""
    from osk8s_tasks.openstack import teardown as openstack_teardown

    with cloud_session(c, "openstack.teardown", dry_run, log_json) as (s, clouds):
        s.plan(preflight_steps(s, clouds)[:2])
        s.plan(openstack_teardown.teardown_steps(s, clouds))


@task(help={"log_json": COMMON_HELP["log_json"]})
def status(c, log_json=None):
    """Everything the lab owns in the cloud, by service (read-only)."""
    from osk8s_tasks.openstack import teardown as openstack_teardown

    with cloud_session(c, "openstack.status", log_json=log_json, quiet=True) as (s, clouds):
        print(openstack_teardown.status_text(s, clouds))


ns = Collection("openstack", prepare, servers, deploy, teardown, status)
