"""The cloud objects the lab owns before any server: flavor, keypair, security group, application
credential. One decision per kind, as openstack.cloud's resource module (StateMachine) does it:
read_* gather the facts (I/O), decide_* are pure (find -> create / update with a computed diff /
replace / nothing; table-tested), act_* change the cloud. Every object carries the `<lab>-` name
prefix and the tag `osk8s:<lab>` (flavors: the extra spec osk8s:lab)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml

from osk8s_tasks.core import lab, log
from osk8s_tasks.core.engine import Decision, Step, StepFailed, decision_step
from osk8s_tasks.core.files import private_dir, write_private
from osk8s_tasks.openstack import clouds as cloud

PROTOCOL_NUMBERS = {"icmp": "1", "tcp": "6", "udp": "17", "ipip": "4"}


def names(settings) -> dict[str, str]:
    o, lab_name = settings.openstack, settings.lab.name
    return {
        "flavor": o.flavor.name or f"{lab_name}-k8s",
        "keypair": o.keypair or f"{lab_name}-key",
        "secgroup": o.security_group or f"{lab_name}-k8s",
        "image": f"{lab_name}-{o.image.name}",
        "appcred": f"{lab_name}-cloud-provider",
    }


def step(clouds, name: str, read, decide, act) -> Step:
    """decision_step, with the clouds' read cache dropped after every change."""
    return decision_step(name, read, decide, act, after_act=clouds.cache.clear)


# --- flavor ---------------------------------------------------------------------------------------


def flavor_named(clouds, name: str):
    return next((f for f in clouds.admin.compute.flavors() if f.name == name), None)


def decide_flavor(have, name: str, want: dict) -> Decision:
    """have: the flavor of that name or None; want: {ram, vcpus, disk}. Flavors are immutable: any
    difference is a replace (running servers keep their embedded copy)."""
    if have is None:
        return Decision("create", f"no flavor {name}", f"create flavor {name}: {want}")
    diff = {k: (getattr(have, k), v) for k, v in want.items() if getattr(have, k) != v}
    if diff:
        return Decision(
            "replace", f"flavor {name} differs", "; ".join(f"{k} {a} -> {b}" for k, (a, b) in diff.items()), have
        )
    return Decision("none", f"flavor {name}: {want['ram']} MiB, {want['vcpus']} vCPU, {want['disk']} GB")


def flavor_step(s, clouds) -> Step:
    f, name, lab_name = s.settings.openstack.flavor, names(s.settings)["flavor"], s.settings.lab.name
    want = {"ram": f.ram, "vcpus": f.vcpus, "disk": f.disk}

    def act(d):
        admin = clouds.admin.compute
        if d.action == "replace":
            admin.delete_flavor(d.obj)
        created = admin.create_flavor(name=name, ram=f.ram, vcpus=f.vcpus, disk=f.disk, is_public=True)
        admin.create_flavor_extra_specs(created, {"osk8s:lab": lab_name})

    return step(
        clouds, f"flavor {name}", lambda: flavor_named(clouds, name), lambda have: decide_flavor(have, name, want), act
    )


# --- keypair --------------------------------------------------------------------------------------


def decide_keypair(have, name: str, key: Path, local_public: str | None) -> Decision:
    """have: the keypair of that name or None; local_public: the local key's public half or None."""
    if have is None:
        return Decision(
            "create", f"no keypair {name}", f"import {'' if local_public else 'a new '}key {key} as keypair {name}"
        )
    if local_public is None or have.public_key.split()[:2] != local_public.split()[:2]:
        why = "no local private key" if local_public is None else "public key differs from the local key"
        return Decision("replace", f"keypair {name}: {why}", f"replace keypair {name} with {key}.pub", have)
    return Decision("none", f"keypair {name} matches {key.name} (private key 0600)")


def keypair_step(s, clouds) -> Step:
    name, key = names(s.settings)["keypair"], lab.private_key(s.settings)

    def read():
        have = next((k for k in clouds.main.compute.keypairs() if k.name == name), None)
        return have, key.with_suffix(".pub").read_text().strip() if key.exists() else None

    def act(d):
        if not key.exists():
            private_dir(key.parent)
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"osk8s {s.settings.lab.name}", "-f", str(key)],
                check=True,
            )
        key.chmod(0o600)
        if d.action == "replace":
            clouds.main.compute.delete_keypair(d.obj)
        clouds.main.compute.create_keypair(name=name, public_key=key.with_suffix(".pub").read_text().strip())

    return step(clouds, f"keypair {name}", read, lambda facts: decide_keypair(facts[0], name, key, facts[1]), act)


# --- security group -------------------------------------------------------------------------------


def wanted_rules(settings, cidrs: list[str]) -> list[dict]:
    """Rules the nodes need. What is reached from outside the cluster (ping, SSH, the API, the
    NodePort range: the 2018 write-up's LoadBalancer Service was unreachable for want of it) is
    open to `cidrs` only, one rule each; the nodes' own traffic to the group itself."""
    lo, hi = (int(x) for x in settings.openstack.nodeport_range.split("-"))
    group = "self"
    outside = [
        ("icmp", None, None, "ping"),
        ("tcp", 22, 22, "ssh"),
        ("tcp", 6443, 6443, "kubernetes API"),
        ("tcp", lo, hi, "NodePort services"),
        ("udp", lo, hi, "NodePort services (udp)"),
    ]
    rules = [(p, a, b, cidr, w) for p, a, b, w in outside for cidr in cidrs]
    rules += [("tcp", 10250, 10250, group, "kubelet"), ("tcp", 2379, 2380, group, "etcd")]
    if settings.cluster.cni == "calico":
        rules += [
            ("tcp", 179, 179, group, "calico BGP"),
            ("ipip", None, None, group, "calico IP-in-IP"),
            ("udp", 4789, 4789, group, "calico VXLAN"),
        ]
    else:
        rules += [("udp", 8472, 8472, group, "cilium VXLAN"), ("tcp", 4240, 4240, group, "cilium health")]
    return [{"protocol": p, "port_range_min": a, "port_range_max": b, "remote": r, "why": w} for p, a, b, r, w in rules]


def rule_key(protocol, lo, hi, remote) -> tuple:
    return (PROTOCOL_NUMBERS.get(str(protocol), str(protocol)), lo, hi, remote)


@dataclass
class GroupFacts:
    group: object  # the security group, or None
    rules: list  # its ingress rules
    cidrs: list[str]  # who may reach the nodes from outside


def decide_secgroup(facts: GroupFacts, name: str, wanted: list[dict]) -> Decision:
    """Missing rules are added; rules the tool made (description `osk8s: ...`) and no longer wants
    are removed (openstack.allowed_cidrs changed): a change is drift. Others' rules stay."""
    if facts.group is None:
        return Decision(
            "create",
            f"no security group {name}",
            f"create {name} with {len(wanted)} rules (from outside: {', '.join(facts.cidrs)}): "
            + ", ".join(dict.fromkeys(w["why"] for w in wanted)),
        )
    have = {
        rule_key(
            r.protocol,
            r.port_range_min,
            r.port_range_max,
            "self" if r.remote_group_id == facts.group.id else r.remote_ip_prefix,
        ): r
        for r in facts.rules
    }
    keys = {rule_key(w["protocol"], w["port_range_min"], w["port_range_max"], w["remote"]) for w in wanted}
    missing = [
        w for w in wanted if rule_key(w["protocol"], w["port_range_min"], w["port_range_max"], w["remote"]) not in have
    ]
    extra = [r for k, r in have.items() if k not in keys and (r.description or "").startswith("osk8s:")]
    if not missing and not extra:
        return Decision(
            "none", f"security group {name}: all {len(wanted)} rules present, from outside {', '.join(facts.cidrs)}"
        )

    def show(proto, lo, hi, remote, why):
        ports = f" {lo or ''}-{hi or ''}".replace(" -", "") if lo or hi else ""
        return f"{why} ({proto}{ports} from {remote})"

    desc = "; ".join(
        filter(
            None,
            [
                "add: "
                + ", ".join(
                    show(w["protocol"], w["port_range_min"], w["port_range_max"], w["remote"], w["why"]) for w in missing
                )
                if missing
                else "",
                "remove: "
                + ", ".join(
                    show(
                        r.protocol,
                        r.port_range_min,
                        r.port_range_max,
                        r.remote_ip_prefix or "group",
                        (r.description or "")[len("osk8s: ") :],
                    )
                    for r in extra
                )
                if extra
                else "",
            ],
        )
    )
    return Decision(
        "update",
        f"{len(missing)} rule(s) missing from {name}, {len(extra)} no longer wanted",
        desc,
        facts.group,
        {"missing": missing, "extra": extra},
    )


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
        raise StepFailed(
            f"no IPv4 subnet on external network {o.external_network!r} or subnet {o.subnet!r} to open the "
            "nodes to. Fix: set openstack.allowed_cidrs (e.g. [203.0.113.0/24])"
        )
    return sorted(dict.fromkeys(cidrs))


def secgroup_step(s, clouds) -> Step:
    name, lab_tag = names(s.settings)["secgroup"], cloud.tag(s.settings)

    def read() -> GroupFacts:
        net = clouds.main.network
        sg = cloud.by_name(net.security_groups(name=name))
        rules = list(net.security_group_rules(security_group_id=sg.id, direction="ingress")) if sg else []
        return GroupFacts(sg, rules, allowed_cidrs(s.settings, clouds))

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
            net.create_security_group_rule(
                security_group_id=sg.id,
                direction="ingress",
                ethertype="IPv4",
                protocol=w["protocol"],
                port_range_min=w["port_range_min"],
                port_range_max=w["port_range_max"],
                description=f"osk8s: {w['why']}",
                **remote,
            )

    return step(
        clouds,
        f"security group {name}",
        read,
        lambda facts: decide_secgroup(facts, name, wanted_rules(s.settings, facts.cidrs)),
        act,
    )


# --- application credential -----------------------------------------------------------------------


def decide_app_credential(have, local: dict | None, name: str, path: Path) -> Decision:
    """have: the credential of that name or None; local: what app-credential.yaml holds or None.
    A credential whose secret is not kept here is useless to the cloud provider: replace it."""
    if have is None:
        return Decision("create", f"no application credential {name}", f"create {name} (secret kept in {path}, 0600)")
    if not local or local.get("id") != have.id:
        return Decision("replace", f"{name}: its secret is not in {path}", f"replace {name}", have)
    return Decision("none", f"application credential {name} ({have.id[:8]}), secret in {path.name} (0600)")


def app_credential_step(s, clouds) -> Step:
    name, path = names(s.settings)["appcred"], lab.app_credential(s.settings)

    def read():
        conn = clouds.main
        have = next(iter(conn.identity.application_credentials(user=conn.current_user_id, name=name)), None)
        return have, yaml.safe_load(path.read_text()) if path.exists() else None

    def act(d):
        conn = clouds.main
        if d.action == "replace":
            conn.identity.delete_application_credential(conn.current_user_id, d.obj)
        cred = conn.identity.create_application_credential(
            conn.current_user_id, name, description=f"osk8s lab {s.settings.lab.name}: cloud provider", unrestricted=False
        )
        log.secret(cred.secret)
        write_private(
            path,
            yaml.safe_dump(
                {
                    "id": cred.id,
                    "name": name,
                    "secret": cred.secret,
                    "auth_url": conn.config.auth["auth_url"],
                    "region": conn.config.region_name or "RegionOne",
                }
            ),
        )

    return step(
        clouds,
        f"application credential {name}",
        read,
        lambda facts: decide_app_credential(facts[0], facts[1], name, path),
        act,
    )
