"""The files `cluster` renders: kubeadm v1beta4 init/join configs, the two cloud.conf files and
the add-on manifests (templates in kubeadm/ and manifests/, StrictUndefined)."""

from __future__ import annotations

from osk8s_tasks.core.imageref import component_image
from osk8s_tasks.core.render import render

SIDECARS = (  # (container, image name, extra args) of the cinder-csi controller
    ("csi-attacher", "csi-attacher", ("--timeout=3m", "--leader-election=true", "--default-fstype=ext4")),
    (
        "csi-provisioner",
        "csi-provisioner",
        (
            "--timeout=3m",
            "--default-fstype=ext4",
            "--feature-gates=Topology=true",
            "--extra-create-metadata",
            "--leader-election=true",
        ),
    ),
    ("csi-resizer", "csi-resizer", ("--timeout=3m", "--handle-volume-inuse-error=false", "--leader-election=true")),
    ("liveness-probe", "livenessprobe", ()),
)


def init_config(settings, advertise_address: str, node_name: str, floating_ip: str | None) -> str:
    c = settings.cluster
    # 127.0.0.1: the tool reaches the API through an SSH forward, with TLS checked against this certificate
    sans = [advertise_address, node_name, "127.0.0.1"] + ([floating_ip] if floating_ip else [])
    return render(
        "kubeadm/init.yaml.j2",
        lab=settings.lab.name,
        advertise_address=advertise_address,
        node_name=node_name,
        kubernetes_version=settings.versions.kubernetes,
        pod_subnet=c.pod_subnet,
        service_subnet=c.service_subnet,
        cert_sans=sans,
    )


def join_config(settings, node_name: str, api_endpoint: str, token: str, ca_cert_hash: str) -> str:
    return render(
        "kubeadm/join.yaml.j2",
        lab=settings.lab.name,
        node_name=node_name,
        api_endpoint=api_endpoint,
        token=token,
        ca_cert_hash=ca_cert_hash,
    )


def cloud_conf(settings, cloud: dict) -> str:
    """cloud: auth_url, app_credential_id, app_credential_secret, region, subnet_id, floating_network_id."""
    c, o = settings.cluster, settings.openstack
    return render(
        "manifests/cloud.conf.j2",
        lab=settings.lab.name,
        lb_provider=c.lb_provider,
        manage_security_groups=c.manage_security_groups,
        create_monitor=c.create_monitor,
        external_network=o.external_network,
        network=o.network,
        **cloud,
    )


def cinder_conf(settings, cloud: dict) -> str:
    keys = ("auth_url", "app_credential_id", "app_credential_secret", "region")
    return render("manifests/cinder-csi.conf.j2", lab=settings.lab.name, **{k: cloud[k] for k in keys})


def occm_manifests(settings) -> str:
    image, pull_policy = component_image(settings, "occm")
    return render("manifests/occm.yaml.j2", lab=settings.lab.name, image=image, pull_policy=pull_policy)


def cinder_csi_manifests(settings) -> str:
    v = settings.versions
    tags = {
        "csi-attacher": v.csi_attacher,
        "csi-provisioner": v.csi_provisioner,
        "csi-resizer": v.csi_resizer,
        "livenessprobe": v.csi_livenessprobe,
    }
    sidecars = [(name, f"{image}:{tags[image]}", extra) for name, image, extra in SIDECARS]
    image, pull_policy = component_image(settings, "cinder_csi")
    return render(
        "manifests/cinder-csi.yaml.j2",
        lab=settings.lab.name,
        image=image,
        pull_policy=pull_policy,
        versions=v,
        sidecars=sidecars,
    )
