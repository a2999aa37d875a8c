"""The verify namespace through the real CLI. Real: the loopback OpenStack (Octavia, Neutron, Nova,
Cinder, Keystone) every OpenStack-side assertion reads; SSH to the devstack host (a gateway sshd
host in a netns, where curl runs) and to the control plane (where verify.keystone writes the
webhook kubeconfig, the AuthorizationConfiguration and the kube-apiserver flags). Fakes, because
nothing Kubernetes can run here: the API server (tests/peers/fake_kube_cluster.py), the
controllers' OpenStack work done by the test on the real cloud (tests/peers/cloud_controllers.py),
the data plane behind the floating IPs (http_responder.py, inside the gateway's netns) and
k8s-keystone-auth (keystone_webhook.py, serving the certificate the tool issued and asking the
real Keystone)."""

import json
import os
import re
import subprocess
import sys
import uuid
import xml.etree.ElementTree as ET
from contextlib import ExitStack
from pathlib import Path

import openstack
import pytest
import yaml
from openstack import exceptions

from tests.conftest import SDK_WARNINGS_AS_ERRORS, require_root_tools, run_inv
from tests.peers.cloud_controllers import Controllers
from tests.peers.fake_kube_cluster import FakeCluster
from tests.peers.k8s_nodes import node_hosts

pytestmark = pytest.mark.sshd
LAB = f"q{uuid.uuid4().hex[:4]}"
NS = "osk8s-verify"
APISERVER = """apiVersion: v1
kind: Pod
metadata: {name: kube-apiserver, namespace: kube-system}
spec:
  hostNetwork: true
  containers:
  - name: kube-apiserver
    image: registry.k8s.io/kube-apiserver:v1.37.0
    command: [kube-apiserver, --authorization-mode=Node,RBAC, --secure-port=6443, --client-ca-file=/etc/kubernetes/pki/ca.crt]
    volumeMounts:
    - {name: k8s-certs, mountPath: /etc/kubernetes/pki, readOnly: true}
  volumes:
  - name: k8s-certs
    hostPath: {path: /etc/kubernetes/pki, type: DirectoryOrCreate}
"""


def boot(conn, name, **kw):
    """One server, retried once: nova on sqlite sometimes loses a build to "database is locked"."""
    for attempt in (1, 2):
        server = conn.compute.create_server(name=name, **kw)
        try:
            return conn.compute.wait_for_server(server, wait=120)
        except (exceptions.ResourceTimeout, exceptions.ResourceFailure):
            if attempt == 2:
                raise
            openstack.connect(cloud="admin").compute.reset_server_state(server, "error")
            conn.compute.delete_server(server)
            conn.compute.wait_for_delete(server, wait=120)


@pytest.fixture(scope="module")
def lab(loopback_cloud):
    require_root_tools("sshd", "ip", "unshare", "openssl", "qemu-img", "curl")
    with ExitStack() as cleanup:  # whatever setup made is undone, even when setup fails half-way
        hosts = node_hosts(Path(f"/run/osk8s-verify-{uuid.uuid4().hex[:6]}"), LAB, workers=1)
        cleanup.callback(hosts.stop)
        gateway, master = hosts.hosts[0], hosts.hosts[1]
        conn = openstack.connect(cloud="demo")
        public_cidr = next(conn.network.subnets(network_id=next(conn.network.networks(name="public")).id)).cidr
        # floating IPs exist only inside the gateway's netns: anything not served there is unreachable, never routed out
        subprocess.run(["ip", "netns", "exec", gateway.netns, "ip", "route", "add", "unreachable", public_cidr], check=True)
        master_etc = hosts.private(master, "/etc/kubernetes")
        (master_etc / "manifests").mkdir(parents=True, exist_ok=True)
        (master_etc / "manifests" / "kube-apiserver.yaml").write_text(APISERVER)
        state, image = hosts.workdir / "state", hosts.workdir / "node.qcow2"
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(image), "16M"], check=True)
        node_names = [f"{LAB}-master", f"{LAB}-worker-1"]
        cfg = hosts.workdir / "lab.yaml"
        settings = {
            "lab": {"name": LAB, "state_dir": str(state)},
            "devstack": {"ssh_target": "gateway", "ssh_config": str(hosts.ssh_config)},
            "openstack": {"clouds_yaml": str(loopback_cloud), "cloud": "demo", "admin_cloud": "admin",
                          "image": {"name": "node", "file": str(image)}},
            "verify": {"timeout": 90, "keystone_user_cloud": "alt_demo"},
            "cluster": {"ssh_config": str(hosts.ssh_config), "api_server": "http://127.0.0.1:1",
                        "nodes": [{"name": "master", "role": "control-plane"}, {"name": "worker-1", "role": "worker"}]}}
        cfg.write_text(yaml.safe_dump(settings))

        def inv(*args, env=None):
            return run_inv(["-f", str(cfg), *args], env={**SDK_WARNINGS_AS_ERRORS, **(env or {})},
                           timeout=600)

        cleanup.callback(inv, "openstack.teardown")
        prepared = inv("openstack.prepare")  # flavor, image, security group with the NodePort range, app credential
        assert prepared.returncode == 0, prepared.stdout + prepared.stderr
        flavor, img = next(conn.compute.flavors(name=f"{LAB}-k8s")), next(conn.image.images(name=f"{LAB}-node"))
        net = next(conn.network.networks(name="private"))
        servers = {}
        for name in node_names:  # one at a time: nova on sqlite cannot build concurrently
            servers[name] = boot(conn, name, flavor_id=flavor.id, image_id=img.id, networks=[{"uuid": net.id}],
                                 security_groups=[{"name": f"{LAB}-k8s"}])
            cleanup.callback(lambda s=servers[name]: (conn.compute.delete_server(s), conn.compute.wait_for_delete(s, wait=180)))
        addresses = {n: next(iter(s.addresses.values()))[0]["addr"] for n, s in servers.items()}
        controllers = Controllers(conn, LAB, gateway.netns, "http://127.0.0.1:5000/v3")
        controllers.node_addresses = list(addresses.values())
        cleanup.callback(controllers.stop)
        api = FakeCluster(node_names, controllers, master_etc, addresses=addresses,
                          provider_ids={n: f"openstack:///{s.id}" for n, s in servers.items()}).__enter__()
        cleanup.callback(api.__exit__, None, None, None)
        api.objects["/apis/apps/v1/namespaces/kube-system/daemonsets/openstack-cloud-controller-manager"] = {
            "kind": "DaemonSet", "metadata": {"name": "openstack-cloud-controller-manager"}}
        api.objects["/apis/storage.k8s.io/v1/storageclasses/csi-cinder-sc-delete"] = {
            "kind": "StorageClass", "metadata": {"name": "csi-cinder-sc-delete",
                                                 "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
            "provisioner": "cinder.csi.openstack.org", "reclaimPolicy": "Delete"}
        settings["cluster"]["api_server"] = api.url
        cfg.write_text(yaml.safe_dump(settings))
        (state / LAB).mkdir(parents=True, exist_ok=True)
        (state / LAB / "admin.conf").write_text(api.kubeconfig())

        class Lab:
            pass

        lab = Lab()
        lab.inv, lab.api, lab.hosts, lab.conn, lab.controllers = inv, api, hosts, conn, controllers
        lab.state, lab.master_etc, lab.workdir, lab.cloud = state / LAB, master_etc, hosts.workdir, loopback_cloud
        yield lab


@pytest.fixture(autouse=True)
def controllers_healthy(lab):
    yield
    lab.api.settle()  # the next test starts on a quiet cloud: sqlite-backed services take one writer at a time
    errors, lab.api.errors[:] = list(lab.api.errors), []  # reported once, by the test during which they happened
    assert not errors, errors  # a stand-in controller failed: the fixture, not the tool


def verify_lbs(lab):
    return [lb.name for lb in lab.conn.load_balancer.load_balancers() if lb.name.startswith((
        f"kube_service_{LAB}_", f"kube_ingress_{LAB}_"))]


def rows(report):
    return {c.get("name"): c for s in ET.parse(report).getroot() for c in s}


def test_dry_run_lists_the_checks_and_objects_and_creates_nothing(lab):
    r = lab.inv("verify.all", "--dry-run")
    assert r.returncode == 0, r.stdout + r.stderr
    for needle in (f"Deployment {NS}/echo", f"Service {NS}/echo-shared", f"PersistentVolumeClaim {NS}/data",
                   f"Ingress {NS}/echo", "Deployment kube-system/k8s-keystone-auth", "kube-apiserver webhook flags",
                   "lb: HTTP from the devstack VM", "pv: cleanup: volume deleted", "keystone: revoked token rejected"):
        assert needle in r.stdout, needle
    assert lab.api.writes() == 0 and not verify_lbs(lab)
    assert not (lab.master_etc / "keystone-auth").exists()
    assert "--authorization-mode=Node,RBAC" in (lab.master_etc / "manifests" / "kube-apiserver.yaml").read_text()


def test_dry_run_without_a_reachable_cluster_still_lists_the_plan(lab, tmp_path):
    cfg = yaml.safe_load((lab.workdir / "lab.yaml").read_text())
    cfg["cluster"]["api_server"] = "http://127.0.0.1:9"  # discard port: nothing listens
    (tmp_path / "down.yaml").write_text(yaml.safe_dump(cfg))
    r = run_inv(["-f", str(tmp_path / "down.yaml"), "verify.all", "--dry-run", "--checks", "lb,pv,ingress"])
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"Ingress {NS}/echo" in r.stdout and "Secret kube-system/octavia-ingress-controller-config" in r.stdout
    assert "ingress: HTTP /a and /b" in r.stdout and "Traceback" not in r.stdout + r.stderr
    assert "once the cluster is reachable" in r.stdout and " failed " not in r.stdout.replace("0 failed", ""), r.stdout


def test_lb_passes_end_to_end_and_writes_reports(lab, tmp_path):
    junit, report = tmp_path / "lb.xml", tmp_path / "lb.json"
    r = lab.inv("verify.lb", "--junit", str(junit), "--json", str(report))
    assert r.returncode == 0, r.stdout + r.stderr
    cases = rows(junit)
    assert not [n for n, c in cases.items() if c.find("failure") is not None]
    for name in ("octavia: pool members", "octavia: NodePort rule", "octavia: floating IP", "HTTP from the devstack VM",
                 "shared load balancer: second listener", "shared load balancer: HTTP", "lb: cleanup"):
        assert name in cases, name
    doc = json.loads(report.read_text())
    assert doc["passed"] and doc["counts"]["failed"] == 0
    assert oct(report.stat().st_mode & 0o777) == "0o600" and oct(junit.stat().st_mode & 0o777) == "0o600"
    http = next(x for x in doc["results"] if x["check"] == "HTTP from the devstack VM")
    assert "-> 200 from pod echo-" in http["detail"]
    assert not verify_lbs(lab)  # the cloud provider's load balancer went with the Service


def test_lb_failure_names_the_missing_nodeport_rule(lab, tmp_path):
    net = lab.conn.network
    sg = next(net.security_groups(name=f"{LAB}-k8s"))
    for rule in [x for x in net.security_group_rules(security_group_id=sg.id) if x.port_range_min == 30000 and x.protocol == "tcp"]:
        lab.controllers.retry(net.delete_security_group_rule, rule)  # the write-up's failure: the LB cannot reach the NodePort
    lab.controllers.data_plane = False
    try:
        r = lab.inv("verify.lb", "--json", str(tmp_path / "r.json"))
    finally:
        lab.controllers.data_plane = True
    assert r.returncode == 1, r.stdout + r.stderr
    assert "no ingress rule for tcp" in r.stdout and "Traceback" not in r.stdout + r.stderr
    failed = {x["check"]: x["detail"] for x in json.loads((tmp_path / "r.json").read_text())["results"] if x["outcome"] == "failed"}
    assert "no ingress rule for tcp" in failed["octavia: NodePort rule"]
    assert "Diagnosis:" in failed["HTTP from the devstack VM"] and "NodePort rule" in failed["HTTP from the devstack VM"]
    fixed = lab.inv("openstack.prepare")  # the tool's own drift repair puts the rule back
    assert fixed.returncode == 0 and not verify_lbs(lab)


def test_pv_volume_follows_the_pod_and_is_deleted_after(lab, tmp_path):
    r = lab.inv("verify.pv", "--json", str(tmp_path / "pv.json"))
    assert r.returncode == 0, r.stdout + r.stderr
    results = {x["check"]: x for x in json.loads((tmp_path / "pv.json").read_text())["results"]}
    assert "in-use on" in results["cinder: volume in-use on the pod's node"]["detail"]
    assert "osk8s-" in results["file read back by a new pod"]["detail"]
    assert "deleted" in results["pv: cleanup"]["detail"]
    assert not [v for v in lab.conn.block_storage.volumes() if v.name.startswith(f"pvc-{LAB}")]


def test_ingress_routes_two_paths(lab):
    r = lab.inv("verify.ingress")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "HTTP /a" in r.stdout and "from pod echo-a-" in r.stdout and "from pod echo-b-" in r.stdout
    assert not verify_lbs(lab)


def test_ingress_with_the_ovn_provider_asks_octavia_for_amphora(lab):
    """OVN listeners are TCP/UDP/SCTP only: the Ingress gets the cloud's amphora provider."""
    r = lab.inv("verify.ingress", env={"INVOKE_CLUSTER_LB_PROVIDER": "ovn"})
    assert r.returncode == 0, r.stdout + r.stderr
    assert "the Ingress uses the amphora provider" in r.stdout and "from pod echo-a-" in r.stdout
    assert not verify_lbs(lab)


def test_keystone_end_to_end(lab, tmp_path):
    r = lab.inv("verify.keystone", "--json", str(tmp_path / "k.json"), "--log-json", str(tmp_path / "k.log"))
    assert r.returncode == 0, r.stdout + r.stderr
    results = {x["check"]: x for x in json.loads((tmp_path / "k.json").read_text())["results"]}
    for check in ("webhook TokenReview", "forbidden before any binding", "RoleBinding to the project group",
                  "keystone policy: viewer lists, cannot create", "revoked token rejected", "garbage token rejected"):
        assert results[check]["outcome"] == "ok", (check, results[check])
    # only v1beta1 reviews reach it: k8s-keystone-auth v1.36 answers 400 to anything else
    assert set(lab.controllers.webhook.calls) == {"authentication.k8s.io/v1beta1 TokenReview",
                                                  "authorization.k8s.io/v1beta1 SubjectAccessReview"}
    manifest = (lab.master_etc / "manifests" / "kube-apiserver.yaml").read_text()
    assert "--authorization-config=" in manifest and "--authorization-mode" not in manifest
    for f in (lab.master_etc / "keystone-auth" / "webhook.kubeconfig", lab.state / "keystone-auth" / "tls.key",
              lab.state / "keystone-alt_demo.kubeconfig"):
        assert f.stat().st_mode & 0o777 == 0o600, f
    secrets = [yaml.safe_load(lab.cloud.read_text())["clouds"][c]["auth"]["password"] for c in ("alt_demo", "demo")]
    cred = yaml.safe_load((lab.state / "app-credential.yaml").read_text())["secret"]
    texts = [r.stdout + r.stderr, (tmp_path / "k.json").read_text(), (tmp_path / "k.log").read_text()]
    texts += [p.read_text() for p in (lab.state / "logs").glob("*.jsonl")]
    for s in secrets + [cred] + lab.controllers.webhook.tokens:
        assert not any(s in t for t in texts)


def test_all_runs_every_check_reports_parse_and_keystone_setup_is_unchanged(lab, tmp_path):
    junit, report = tmp_path / "all.xml", tmp_path / "all.json"
    r = lab.inv("verify.all", "--junit", str(junit), "--json", str(report))
    assert r.returncode == 0, r.stdout + r.stderr
    suites = ET.parse(junit).getroot()
    assert [s.get("name") for s in suites] == ["verify.lb", "verify.pv", "verify.ingress", "verify.keystone"]
    assert all(s.get("failures") == "0" for s in suites)
    assert subprocess.run([sys.executable, "-m", "json.tool", str(report)], capture_output=True).returncode == 0
    doc = json.loads(report.read_text())
    assert doc["passed"] and {x["task"] for x in doc["results"]} == {f"verify.{c}" for c in ("lb", "pv", "ingress", "keystone")}
    setup = [x for x in doc["results"] if x["task"] == "verify.keystone" and x["node"] == "local"
             and not x["check"].startswith(("Role ", "RoleBinding ", "Namespace "))]
    assert len(setup) == 8 and all(x["outcome"] == "ok" for x in setup), setup  # second keystone run: nothing to set up
    assert "verify.all: 0 of" in r.stdout and not verify_lbs(lab)
    secrets = [yaml.safe_load(lab.cloud.read_text())["clouds"][c]["auth"]["password"] for c in ("alt_demo", "demo")]
    secrets += [yaml.safe_load((lab.state / "app-credential.yaml").read_text())["secret"]] + lab.controllers.webhook.tokens
    for text in (r.stdout + r.stderr, junit.read_text(), report.read_text()):
        assert not any(s in text for s in secrets)


def test_keep_then_status_then_destroy_twice(lab):
    r = lab.inv("verify.lb", "--keep")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "kept (--keep)" in r.stdout and verify_lbs(lab)
    st = lab.inv("verify.status")
    assert st.returncode == 0 and f"Service {NS}/echo" in st.stdout and "kube_service_" in st.stdout
    first = lab.inv("verify.destroy")
    assert first.returncode == 0, first.stdout + first.stderr
    assert not verify_lbs(lab) and not [p for p in lab.api.objects if f"/namespaces/{NS}/" in p]
    second = lab.inv("verify.destroy")
    assert second.returncode == 0 and re.search(r"verify.destroy: 3 ok, 0 failed", second.stdout), second.stdout
    assert "no namespace osk8s-verify" in second.stdout


@pytest.mark.skipif(os.geteuid() != 0, reason="root only")
def test_bad_check_name_is_refused_before_anything(lab):
    r = lab.inv("verify.all", "--checks", "lb,dns")
    assert r.returncode == 2 and "--checks dns: not a check" in r.stderr + r.stdout and "Traceback" not in r.stderr
