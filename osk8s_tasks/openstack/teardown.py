"""What the lab owns in the cloud, found by name prefix and tag in every service; deleted in
dependency order by `openstack.teardown`, listed by `openstack.status`.

The cloud provider creates objects too: OCCM names load balancers `kube_service_<cluster>_...`
(octavia-ingress-controller `kube_ingress_<cluster>_...`, and its security groups too)
and tags them so, cinder-csi marks volumes with `cinder.csi.openstack.org/cluster: <cluster>`;
the cluster name is the lab name, so teardown finds and deletes them before the servers."""

from __future__ import annotations

from osk8s_tasks.core import lab
from osk8s_tasks.core.engine import Status, Step, StepFailed
from osk8s_tasks.openstack import clouds as cloud
from osk8s_tasks.openstack.resources import flavor_named, names

CSI_CLUSTER = "cinder.csi.openstack.org/cluster"


def listers(s, clouds) -> dict:
    """kind -> a function listing [(object, label)] of that kind the lab owns, in teardown order.
    Each teardown step calls only its own; inventory() and the orphan scan call them all."""
    lab, tag, n = s.settings.lab.name, cloud.tag(s.settings), names(s.settings)
    occm = (f"kube_service_{lab}_", f"kube_ingress_{lab}_")  # OCCM's and octavia-ingress-controller's names

    def flavors():
        flavor = flavor_named(clouds, n["flavor"])
        if flavor is not None and clouds.admin.compute.fetch_flavor_extra_specs(flavor).extra_specs.get("osk8s:lab") == lab:
            return [(flavor, flavor.name)]
        return []

    return {
        "load balancers (cluster)": lambda: [
            (lb, f"{lb.name} ({lb.provisioning_status})")
            for lb in clouds.main.load_balancer.load_balancers()
            if lb.name.startswith(occm) or tag in (lb.tags or [])
        ],
        "volumes (cluster)": lambda: [
            (v, f"{v.name or v.id} ({v.status})")
            for v in clouds.main.block_storage.volumes(details=True)
            if (v.metadata or {}).get(CSI_CLUSTER) == lab or (v.metadata or {}).get("osk8s-lab") == lab
        ],
        "servers": lambda: [(x, f"{x.name} ({x.status})") for x in clouds.main.compute.servers(tags=tag)],
        "floating IPs": lambda: [(f, f.floating_ip_address) for f in clouds.main.network.ips(tags=tag)],
        "ports": lambda: [(p, p.name or p.id) for p in clouds.main.network.ports(tags=tag)],
        # OCCM's own group per Service (manage-security-groups): lb-sg-<uid>-<ns>-<name>, described
        # "Security Group for <ns>/<name> Service LoadBalancer in cluster <lab>"
        # (cloud-provider-openstack pkg/openstack/loadbalancer_sg.go ensureAndUpdateOctaviaSecurityGroup)
        "security groups": lambda: [
            (g, g.name)
            for g in clouds.main.network.security_groups()
            if tag in (g.tags or [])
            or g.name.startswith(occm[1])
            or (g.name.startswith("lb-sg-") and (g.description or "").endswith(f" in cluster {lab}"))
        ],
        "keypairs": lambda: [(k, k.name) for k in clouds.main.compute.keypairs() if k.name == n["keypair"]],
        "flavors": flavors,
        "images": lambda: [(i, i.name) for i in clouds.main.image.images(tag=tag)],
        "application credentials": lambda: [
            (c, c.name)
            for c in clouds.main.identity.application_credentials(user=clouds.main.current_user_id, name=n["appcred"])
        ],
    }


def inventory(s, clouds) -> dict[str, list]:
    """kind -> [(object, label)] for every kind, in teardown order."""
    return {kind: list_kind() for kind, list_kind in listers(s, clouds).items()}


def delete(s, clouds, kind: str, obj) -> None:
    main = clouds.main
    if kind.startswith("load balancers"):
        if obj.vip_port_id:  # the floating IP the cloud provider bound to the VIP
            for fip in main.network.ips(port_id=obj.vip_port_id):
                main.network.delete_ip(fip)
        main.load_balancer.delete_load_balancer(obj, cascade=True)
        main.load_balancer.wait_for_delete(obj, wait=300)
    elif kind.startswith("volumes"):
        for att in obj.attachments or []:
            # objects, not IDs: with IDs the SDK guesses their order through a deprecated find_server
            main.compute.delete_volume_attachment(main.compute.get_server(att["server_id"]), obj)
        if obj.attachments:
            main.block_storage.wait_for_status(obj, "available", wait=300)
        main.block_storage.delete_volume(obj)
        main.block_storage.wait_for_delete(obj, wait=300)
    elif kind == "servers":
        main.compute.delete_server(obj)
        main.compute.wait_for_delete(obj, wait=300)
    elif kind == "floating IPs":
        main.network.delete_ip(obj)
    elif kind == "ports":
        main.network.delete_port(obj)
    elif kind == "security groups":
        main.network.delete_security_group(obj)
    elif kind == "keypairs":
        main.compute.delete_keypair(obj)
    elif kind == "flavors":
        clouds.admin.compute.delete_flavor(obj)
    elif kind == "images":
        main.image.delete_image(obj)
    elif kind == "application credentials":
        main.identity.delete_application_credential(main.current_user_id, obj)
        lab.app_credential(s.settings).unlink(missing_ok=True)


def teardown_steps(s, clouds) -> list[Step]:
    steps = []
    for kind, list_kind in listers(s, clouds).items():

        def check(kind=kind, list_kind=list_kind):
            objs = list_kind()
            if not objs:
                return Status(True, f"no {kind} owned by the lab")
            return Status(False, f"{len(objs)} {kind} owned by the lab", "delete " + ", ".join(label for _, label in objs))

        def apply(kind=kind, list_kind=list_kind):
            for obj, label in list_kind():
                s.log.info("teardown.delete", kind=kind, object=label)
                delete(s, clouds, kind, obj)

        steps.append(Step(f"delete {kind}", check, apply))

    def orphans():
        left = {k: v for k, v in inventory(s, clouds).items() if v}
        if left:
            raise StepFailed(
                "objects of the lab remain: " + "; ".join(f"{k}: {', '.join(lbl for _, lbl in v)}" for k, v in left.items())
            )
        return Status(
            True,
            f"0 objects with tag {cloud.tag(s.settings)} or the lab's names remain "
            "(octavia, cinder, nova, neutron, glance, keystone queried)",
        )

    steps.append(Step("orphans", orphans))
    return steps


def status_text(s, clouds) -> str:
    inv = inventory(s, clouds)
    width = max(len(k) for k in inv)
    lines = [f"{k:<{width}}  {', '.join(lbl for _, lbl in v) or '-'}" for k, v in inv.items()]
    total = sum(len(v) for v in inv.values())
    return "\n".join([f"lab {s.settings.lab.name} in cloud {s.settings.openstack.cloud}: {total} objects", *lines])
