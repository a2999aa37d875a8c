"""The verify namespace through the real CLI, against the real stack the tool itself brought up.

Topology: a gateway (the devstack VM's role: verify's curl runs there) and two sshd nodes behind it
(osk8s_tasks/embedded/nodes.py), each reaching the loopback OpenStack at 127.0.0.1 (osk8s_tasks/embedded/netfwd.py);
each node also holds its Nova server's fixed IP (the InternalIP OCCM gives the Node), routed by the
gateway, so the API server reaches the kubelet there. The fixture runs openstack.deploy and
cluster.deploy: real kubeadm, the real control plane, the tool's add-ons on the real API server.

Real: the loopback OpenStack (Keystone, Nova, Neutron, Cinder, Octavia) every OpenStack-side assertion
reads; the API server, its authentication and authorization webhooks and RBAC; openstack-cloud-controller-
manager (load balancers, floating IPs, the shared-LB annotation), octavia-ingress-controller (L7 policies),
cinder-csi's controller with csi-provisioner, csi-attacher and csi-resizer (volume created, attached to
the node's server, detached, deleted), k8s-keystone-auth (the tool's certificate, policy and arguments,
asking the real Keystone), client-keystone-auth and kubectl with the tool's user kubeconfig; busybox
(Debian's) as the pv check's pods; SSH to the gateway and to the control plane.
Stand-ins (nothing here can run them): the kubelet and container runtime (tests/peers/k8s/kubelet/,
pods/, kwok for the echo pods; kubeletserver.py serves their logs), the CSI node plugin and the volume's
data (tests/peers/k8s/csinode.py), kube-proxy (proxy.py), livenessprobe, and the data plane behind the
floating IPs (tests/peers/dataplane.py: answers only where the real objects would carry the request).
The lab runs OCCM with manage-security-groups off, the write-up's setting: then the tool's NodePort
rule is what lets the load balancer reach the nodes."""

import json
import os
import re
import subprocess
import sys
import time
import uuid
import xml.etree.ElementTree as ET
from contextlib import ExitStack
from types import SimpleNamespace

import openstack
import pytest
import yaml

from osk8s_tasks.core import config, kube
from osk8s_tasks.core import ssh as remote
from osk8s_tasks.core.engine import StepFailed
from osk8s_tasks.core.render import render
from osk8s_tasks.embedded import build
from osk8s_tasks.embedded.nodes import on_loopback_cloud
from osk8s_tasks.verify.keystone import deploy as keystone_deploy
from osk8s_tasks.verify.keystone import model as keystone_auth
from tests.conftest import SDK_WARNINGS_AS_ERRORS, require_root_tools, run_inv
from tests.peers.dataplane import DataPlane, backend, pick_pool, rule_matches

pytestmark = pytest.mark.sshd
LAB = f"q{uuid.uuid4().hex[:4]}"
NS = "osk8s-verify"
USER = "alt_demo"


class QuietLog:
    def bind(self, **_):
        return self

    def debug(self, *a, **k):
        pass

    info = warning = debug


@pytest.fixture(scope="module")
def lab(loopback_cloud):
    require_root_tools("sshd", "ip", "unshare", "openssl", "qemu-img", "curl", "gpg", "busybox")
    with ExitStack() as cleanup:  # whatever setup made is undone, even when setup fails half-way
        nodes, ep = on_loopback_cloud(
            cleanup,
            "verify",
            LAB,
            "o8v",
            loopback_cloud,
            workers=1,
            verify={"timeout": 90, "keystone_user_cloud": USER},
            cluster={"manage_security_groups": False},
        )
        gateway = ep.netns[ep.gateway]
        conn = openstack.connect(cloud="demo")
        public_cidr = next(conn.network.subnets(network_id=next(conn.network.networks(name="public")).id)).cidr
        # floating IPs exist only inside the gateway's netns: anything the data plane does not serve is
        # unreachable, never routed out
        subprocess.run(["ip", "netns", "exec", gateway, "ip", "route", "add", "unreachable", public_cidr], check=True)

        def inv(*args, env=None, config_file=None):
            return run_inv(
                ["-f", str(config_file or ep.invoke_config), *args],
                env={**SDK_WARNINGS_AS_ERRORS, **(env or {})},
                timeout=900,
            )

        cleanup.callback(inv, "openstack.teardown")
        deployed = inv("openstack.deploy")
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
        for server in conn.compute.servers():
            if server.name in ep.nodes:  # the node holds its server's fixed IP, as the server's NIC would
                nodes.add_address(server.name, next(iter(server.addresses.values()))[0]["addr"])
        cluster = inv("cluster.deploy")
        assert cluster.returncode == 0, cluster.stdout + cluster.stderr
        plane = DataPlane(
            gateway, ep.state_dir / "admin.conf", loopback_cloud, nodes.config.workdir / "dataplane.log"
        ).start()
        cleanup.callback(plane.stop)

        class Lab:
            def kubectl(self, *args, check=True, env=None, kubeconfig=None) -> subprocess.CompletedProcess:
                """The real kubectl in the control plane's namespace (the admin kubeconfig by default)."""
                out = subprocess.run(
                    [
                        "ip",
                        "netns",
                        "exec",
                        ep.netns[ep.control_plane],
                        str(build.binary("kubectl")),
                        "--kubeconfig",
                        str(kubeconfig or ep.state_dir / "admin.conf"),
                        *args,
                    ],
                    capture_output=True,
                    text=True,
                    timeout=120,
                    env={**os.environ, **(env or {})},
                )
                assert out.returncode == 0 or not check, out.stderr
                return out

            def get(self, *args) -> dict:
                return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

            def settings(self, **verify):
                doc = yaml.safe_load(ep.invoke_config.read_text())
                doc["verify"].update(verify)
                return config.validate(doc)

        lab = Lab()
        lab.inv, lab.nodes, lab.ep, lab.conn, lab.plane = inv, nodes, ep, conn, plane
        lab.state, lab.workdir, lab.cloud = ep.state_dir, nodes.config.workdir, loopback_cloud
        lab.master_etc = nodes.private(ep.control_plane, "/etc/kubernetes")
        yield lab


@pytest.fixture(autouse=True)
def data_plane_alive(lab, request):
    yield
    call = getattr(request.node, "rep_call", None)
    if call is not None and call.failed:  # what the peers said: their logs go with the lab
        print(failure_logs(lab))
    assert lab.plane.status()["running"], lab.plane.log_text()[-2000:]


def failure_logs(lab, lines: int = 25) -> str:
    """The last lines of the controllers' container logs (CRI files under each node's /var/log/pods),
    the kubelets' and the data plane's."""
    out = []
    for node in lab.ep.nodes:
        logs = lab.nodes.private(node, "/var/log/pods")
        for f in sorted(logs.glob("kube-system_*/*/*.log")):
            if any(k in f.parts[-3] for k in ("cloud-controller", "octavia-ingress", "csi-cinder-controller", "keystone")):
                out.append(
                    f"== {node}: {f.relative_to(logs)}\n" + "\n".join(f.read_text(errors="replace").splitlines()[-lines:])
                )
        kubelet = lab.nodes.private(node, "/var/lib/osk8s-standin") / "kubelet" / "kubelet.log"
        if kubelet.exists():
            out.append(f"== {node}: kubelet.log\n" + "\n".join(kubelet.read_text(errors="replace").splitlines()[-lines:]))
    out.append("== dataplane.log\n" + "\n".join(lab.plane.log_text().splitlines()[-lines:]))
    return "\n".join(out)


def verify_lbs(lab):
    return [
        lb.name
        for lb in lab.conn.load_balancer.load_balancers()
        if lb.name.startswith((f"kube_service_{LAB}_", f"kube_ingress_{LAB}_"))
    ]


def verify_volumes(lab):
    return [
        v.name
        for v in lab.conn.block_storage.volumes(details=True)
        if (v.metadata or {}).get("cinder.csi.openstack.org/cluster") == LAB
    ]


def rows(report):
    return {c.get("name"): c for s in ET.parse(report).getroot() for c in s}


def secrets_of(lab) -> list[str]:
    clouds = yaml.safe_load(lab.cloud.read_text())["clouds"]
    return [clouds[c]["auth"]["password"] for c in (USER, "demo")] + [
        yaml.safe_load((lab.state / "app-credential.yaml").read_text())["secret"]
    ]


def test_dry_run_lists_the_checks_and_objects_and_creates_nothing(lab):
    before = lab.kubectl("get", "all,ingress,pvc,role,rolebinding", "-A", "-o", "name").stdout
    r = lab.inv("verify.all", "--dry-run")
    assert r.returncode == 0, r.stdout + r.stderr
    for needle in (
        f"Deployment {NS}/echo",
        f"Service {NS}/echo-shared",
        f"PersistentVolumeClaim {NS}/data",
        f"Ingress {NS}/echo",
        "Deployment kube-system/k8s-keystone-auth",
        "kube-apiserver webhook flags",
        "lb: HTTP from the devstack VM",
        "pv: cleanup: volume deleted",
        "keystone: revoked token rejected",
    ):
        assert needle in r.stdout, needle
    assert lab.kubectl("get", "all,ingress,pvc,role,rolebinding", "-A", "-o", "name").stdout == before
    assert lab.kubectl("get", "namespace", NS, check=False).returncode != 0 and not verify_lbs(lab)
    assert not (lab.master_etc / "keystone-auth").exists()
    assert "--authorization-mode=Node,RBAC" in (lab.master_etc / "manifests" / "kube-apiserver.yaml").read_text()


def test_dry_run_without_a_reachable_cluster_still_lists_the_plan(lab, tmp_path):
    cfg = yaml.safe_load(lab.ep.invoke_config.read_text())
    cfg["cluster"]["api_server"] = "https://127.0.0.1:9"  # discard port: nothing listens
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
    for name in (
        "octavia: pool members",
        "octavia: NodePort rule",
        "octavia: floating IP",
        "HTTP from the devstack VM",
        "shared load balancer: second listener",
        "shared load balancer: HTTP",
        "lb: cleanup",
    ):
        assert name in cases, name
    doc = json.loads(report.read_text())
    assert doc["passed"] and doc["counts"]["failed"] == 0
    assert oct(report.stat().st_mode & 0o777) == "0o600" and oct(junit.stat().st_mode & 0o777) == "0o600"
    http = next(x for x in doc["results"] if x["check"] == "HTTP from the devstack VM")
    assert "-> 200 from pod echo-" in http["detail"]
    assert not verify_lbs(lab)  # OCCM deleted the load balancer through the Service's finalizer
    served = lab.plane.log_text()
    assert re.search(r":80 GET / -> HTTP/1.1 200 OK \(10\.0\.0\.\d+:\d+ -> osk8s-verify/echo\)", served), served[-1500:]
    assert re.search(r":8080 GET / -> HTTP/1.1 200 OK \(10\.0\.0\.\d+:\d+ -> osk8s-verify/echo-shared\)", served), served[
        -1500:
    ]


def test_lb_failure_names_the_missing_nodeport_rule(lab, tmp_path):
    """The write-up's failure, made in the real cloud: the nodes' group has no NodePort rule, so the
    load balancer cannot reach them and the HTTP request gets no answer; verify names the rule."""
    net = lab.conn.network
    sg = next(net.security_groups(name=f"{LAB}-k8s"))
    for rule in [
        x for x in net.security_group_rules(security_group_id=sg.id) if x.port_range_min == 30000 and x.protocol == "tcp"
    ]:
        net.delete_security_group_rule(rule)
    r = lab.inv("verify.lb", "--json", str(tmp_path / "r.json"))
    assert r.returncode == 1, r.stdout + r.stderr
    assert "no ingress rule for tcp" in r.stdout and "Traceback" not in r.stdout + r.stderr
    failed = {
        x["check"]: x["detail"] for x in json.loads((tmp_path / "r.json").read_text())["results"] if x["outcome"] == "failed"
    }
    assert "no ingress rule for tcp" in failed["octavia: NodePort rule"]
    assert "Diagnosis:" in failed["HTTP from the devstack VM"] and "NodePort rule" in failed["HTTP from the devstack VM"]
    assert "no answer" in failed["HTTP from the devstack VM"]  # the request really went nowhere
    assert "drop tcp" in lab.plane.log_text()
    fixed = lab.inv("openstack.prepare")  # the tool's own drift repair puts the rule back
    assert fixed.returncode == 0 and not verify_lbs(lab)


def test_pv_volume_follows_the_pod_and_is_deleted_after(lab, tmp_path):
    r = lab.inv("verify.pv", "--json", str(tmp_path / "pv.json"))
    assert r.returncode == 0, r.stdout + r.stderr
    results = {x["check"]: x for x in json.loads((tmp_path / "pv.json").read_text())["results"]}
    assert "in-use on" in results["cinder: volume in-use on the pod's node"]["detail"]
    assert "osk8s-" in results["file read back by a new pod"]["detail"]
    assert "deleted" in results["pv: cleanup"]["detail"]
    assert not verify_volumes(lab)  # csi-provisioner deleted it when the PV went (reclaimPolicy Delete)


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


def test_a_broken_authorization_config_is_named_from_the_apiservers_log(lab):
    """kube-apiserver does not start with a broken AuthorizationConfiguration; the tool's apiserver step
    (as verify.keystone runs it) waits for a NEW apiserver, then names the cause from its own log."""
    s = lab.settings(timeout=45)
    path = "/etc/kubernetes/manifests/kube-apiserver.yaml"
    original = (lab.master_etc / "manifests" / "kube-apiserver.yaml").read_text()
    with remote.through_jump_host(
        lab.ep.ssh_config, lab.ep.gateway, lab.ep.ssh_config, [lab.ep.control_plane], QuietLog()
    ) as r:
        m = r[lab.ep.control_plane]
        m.install(
            keystone_deploy.AUTHZ_CONFIG,
            "apiVersion: apiserver.config.k8s.io/v1\nkind: AuthorizationConfiguration\n"
            "authorizers:\n- type: Webhook\n  name: keystone\n",
            mode=0o600,
        )  # a webhook without its settings
        m.install(keystone_deploy.WEBHOOK_KUBECONFIG, "apiVersion: v1\nkind: Config\n", mode=0o600)
        with kube.connect(s, m) as api:
            ctx = SimpleNamespace(settings=s, api=api)
            step = keystone_deploy.Setup(ctx, m, {}).apiserver_step()
            assert not step.check().ok
            with pytest.raises(StepFailed) as failed:
                step.apply()
        why = str(failed.value)
        assert "its log on the control plane says: E" in why, why
        assert "authorizers[0].webhook: Required value" in why, why  # the apiserver's own words
        # back to kubeadm's manifest (a new pod UID: no crash-loop back-off), the files removed
        m.install(path, original + "\n", mode=0o600)
        m.run(f"rm -f {keystone_deploy.AUTHZ_CONFIG} {keystone_deploy.WEBHOOK_KUBECONFIG}", sudo=True)
        with kube.connect(s, m) as api:
            deadline = time.monotonic() + 120
            while True:
                try:
                    if api.call("GET", "/readyz") == (200, b"ok"):
                        break
                except StepFailed:
                    pass
                assert time.monotonic() < deadline, "kube-apiserver did not come back"
                time.sleep(2)


def test_keystone_end_to_end(lab, tmp_path):
    r = lab.inv("verify.keystone", "--json", str(tmp_path / "k.json"), "--log-json", str(tmp_path / "k.log"))
    assert r.returncode == 0, r.stdout + r.stderr
    results = {x["check"]: x for x in json.loads((tmp_path / "k.json").read_text())["results"]}
    for check in (
        "webhook TokenReview",
        "forbidden before any binding",
        "RoleBinding to the project group",
        "keystone policy: viewer lists, cannot create",
        "revoked token rejected",
        "garbage token rejected",
    ):
        assert results[check]["outcome"] == "ok", (check, results[check])
    manifest = (lab.master_etc / "manifests" / "kube-apiserver.yaml").read_text()
    assert "--authorization-config=" in manifest and "--authorization-mode" not in manifest
    for f in (
        lab.master_etc / "keystone-auth" / "webhook.kubeconfig",
        lab.state / "keystone-auth" / "tls.key",
        lab.state / f"keystone-{USER}.kubeconfig",
    ):
        assert f.stat().st_mode & 0o777 == 0o600, f
    # the real k8s-keystone-auth runs the tool's Deployment: its serving certificate, policy and Keystone URL
    pod = lab.get("pods", "-n", "kube-system", "-l", "app=k8s-keystone-auth")["items"][0]
    assert pod["status"]["phase"] == "Running" and pod["status"]["containerStatuses"][0]["ready"]
    texts = [r.stdout + r.stderr, (tmp_path / "k.json").read_text(), (tmp_path / "k.log").read_text()]
    texts += [p.read_text() for p in (lab.state / "logs").glob("*.jsonl")]
    for s in secrets_of(lab):
        assert not any(s in t for t in texts)


def test_keystone_user_through_kubectl_and_client_keystone_auth(lab):
    """The tool's user kubeconfig, used as a user would: the real kubectl runs the real client-keystone-auth
    (its exec plugin), the API server asks k8s-keystone-auth. The five assertions, through the API server."""
    kubeconfig = lab.state / f"keystone-{USER}.kubeconfig"
    password = yaml.safe_load(lab.cloud.read_text())["clouds"][USER]["auth"]["password"]
    plugin_dir = build.binary("client-keystone-auth").parent
    env = {"OS_PASSWORD": password, "PATH": f"{plugin_dir}:{os.environ['PATH']}"}

    def as_user(*args, token=None):
        return lab.kubectl(*(["--token", token] if token else []), *args, check=False, env=env, kubeconfig=kubeconfig)

    admin = openstack.connect(cloud="admin").identity
    user_cloud = openstack.connect(cloud=USER)
    project_id = user_cloud.current_project_id
    # (1) authenticated through the webhook's TokenReview: who am I, with the project among the groups
    who = as_user("auth", "whoami", "-o", "json")
    assert who.returncode == 0, who.stderr
    info = json.loads(who.stdout)["status"]["userInfo"]
    assert info["username"] == USER and project_id in info["groups"], info
    # (2) Forbidden before any binding
    denied = as_user("get", "pods", "-n", NS)
    assert denied.returncode != 0 and "forbidden" in denied.stderr.lower(), denied.stderr
    # (3) allowed after a RoleBinding to the project's group
    rbac = render(
        "manifests/verify/keystone-rbac.yaml.j2", lab=LAB, namespace=NS, project_id=project_id, project_name="alt-demo"
    )
    applied = subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            lab.ep.netns[lab.ep.control_plane],
            str(build.binary("kubectl")),
            "--kubeconfig",
            str(lab.state / "admin.conf"),
            "apply",
            "-f",
            "-",
        ],
        input=rbac,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert applied.returncode == 0, applied.stderr
    try:
        listed = as_user("get", "pods", "-n", NS)
        assert listed.returncode == 0, listed.stderr
    finally:
        lab.kubectl("delete", "rolebinding,role", "-n", NS, "-l", "osk8s.io/verify=keystone")
    # (4) with the Keystone role the policy lets them list but not create
    role = admin.find_role("k8s-viewer")
    admin.assign_project_role_to_user(project_id, user_cloud.current_user_id, role)
    try:
        deadline = time.monotonic() + 30
        while (listed := as_user("get", "pods", "-n", NS)).returncode != 0 and time.monotonic() < deadline:
            time.sleep(2)  # the webhook authorizer's 5 s cache of the earlier denial
        assert listed.returncode == 0, listed.stderr
        created = as_user(
            "run", "probe", "-n", NS, "--image=registry.k8s.io/e2e-test-images/busybox:1.36.1-1", "--dry-run=server"
        )
        assert created.returncode != 0 and "forbidden" in created.stderr.lower(), created.stderr
    finally:
        admin.unassign_project_role_from_user(project_id, user_cloud.current_user_id, role)
    # (5) a revoked and a garbage token are rejected (a token the API server never saw: no cache hides it)
    plugin = subprocess.run(
        [str(build.binary("client-keystone-auth"))],
        capture_output=True,
        text=True,
        timeout=30,
        env={
            **os.environ,
            "OS_PASSWORD": password,
            **{e["name"]: e["value"] for e in yaml.safe_load(kubeconfig.read_text())["users"][0]["user"]["exec"]["env"]},
        },
        cwd="/tmp",
    )
    assert plugin.returncode == 0, plugin.stderr
    cred = json.loads(plugin.stdout)
    assert cred["apiVersion"] == "client.authentication.k8s.io/v1beta1"
    token = cred["status"]["token"]
    keystone_auth.revoke("http://127.0.0.1:5000/v3", token)
    for bad in (token, "gAAAAA" + "x" * 180):
        rejected = as_user("get", "pods", "-n", NS, token=bad)
        assert rejected.returncode != 0 and "unauthorized" in rejected.stderr.lower(), rejected.stderr


def test_all_runs_every_check_reports_parse_and_keystone_setup_is_unchanged(lab, tmp_path):
    junit, report = tmp_path / "all.xml", tmp_path / "all.json"
    t0 = time.monotonic()
    r = lab.inv("verify.all", "--junit", str(junit), "--json", str(report))
    print(f"\nmeasured: verify.all {time.monotonic() - t0:.1f} s wall")
    assert r.returncode == 0, r.stdout + r.stderr
    suites = ET.parse(junit).getroot()
    assert [s.get("name") for s in suites] == ["verify.lb", "verify.pv", "verify.ingress", "verify.keystone"]
    assert all(s.get("failures") == "0" for s in suites)
    assert subprocess.run([sys.executable, "-m", "json.tool", str(report)], capture_output=True).returncode == 0
    doc = json.loads(report.read_text())
    assert doc["passed"] and {x["task"] for x in doc["results"]} == {
        f"verify.{c}" for c in ("lb", "pv", "ingress", "keystone")
    }
    setup = [
        x
        for x in doc["results"]
        if x["task"] == "verify.keystone"
        and x["node"] == "local"
        and not x["check"].startswith(("Role ", "RoleBinding ", "Namespace "))
    ]
    assert len(setup) == 8 and all(x["outcome"] == "ok" for x in setup), setup  # second keystone run: nothing to set up
    assert "verify.all: 0 of" in r.stdout and not verify_lbs(lab) and not verify_volumes(lab)
    for text in (r.stdout + r.stderr, junit.read_text(), report.read_text()):
        assert not any(s in text for s in secrets_of(lab))


def test_keep_then_status_then_destroy_twice(lab):
    r = lab.inv("verify.all", "--checks", "lb,pv", "--keep")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "kept (--keep)" in r.stdout and verify_lbs(lab) and verify_volumes(lab)
    st = lab.inv("verify.status")
    assert st.returncode == 0 and f"Service {NS}/echo" in st.stdout and "kube_service_" in st.stdout, st.stdout
    assert f"PersistentVolumeClaim {NS}/data" in st.stdout and "volume pvc-" in st.stdout, st.stdout
    first = lab.inv("verify.destroy")
    assert first.returncode == 0, first.stdout + first.stderr
    # the real controllers' own cleanup: OCCM's finalizer deleted the LB, the PV's deletion the volume
    assert not verify_lbs(lab) and not verify_volumes(lab)
    assert lab.kubectl("get", "namespace", NS, check=False).returncode != 0
    second = lab.inv("verify.destroy")
    assert second.returncode == 0 and re.search(r"verify.destroy: 3 ok, 0 failed", second.stdout), second.stdout
    assert f"no namespace {NS}" in second.stdout


@pytest.mark.skipif(os.geteuid() != 0, reason="root only")
def test_bad_check_name_is_refused_before_anything(lab):
    r = lab.inv("verify.all", "--checks", "lb,dns")
    assert r.returncode == 2 and "--checks dns: not a check" in r.stderr + r.stdout and "Traceback" not in r.stderr


# ---- the data plane stand-in's decisions (pure) ------------------------------------------------------


def test_l7_policy_by_position_then_the_default_pool():
    rule = {"type": "PATH", "compare_type": "STARTS_WITH", "value": "/a"}
    policies = [
        {
            "position": 2,
            "action": "REDIRECT_TO_POOL",
            "redirect_pool_id": "pb",
            "rules": [{"type": "PATH", "compare_type": "STARTS_WITH", "value": "/"}],
        },
        {"position": 1, "action": "REDIRECT_TO_POOL", "redirect_pool_id": "pa", "rules": [rule]},
    ]
    assert pick_pool({"default_pool_id": "d"}, policies, "/a/x", "") == "pa"
    assert pick_pool({"default_pool_id": "d"}, policies, "/b", "") == "pb"
    assert pick_pool({"default_pool_id": "d"}, policies[1:], "/b", "") == "d"
    assert pick_pool({"default_pool_id": None}, [], "/", "") is None
    assert rule_matches({**rule, "invert": True}, "/b", "") and not rule_matches({**rule, "invert": True}, "/a", "")
    assert rule_matches({"type": "HOST_NAME", "compare_type": "REGEX", "value": r"^x\.example(:80)?$"}, "/", "x.example:80")


def test_a_member_is_usable_only_on_a_nodes_address_its_nodeport_and_an_open_rule():
    nodes, ports = {"10.0.0.5": "w1"}, {31000: "ns/echo"}
    allow = lambda rule, port, source: rule == port  # noqa: E731 (a rule here is the port it opens)
    ok = backend({"address": "10.0.0.5", "protocol_port": 31000}, "10.0.0.9", nodes, ports, lambda a: [31000], allow)
    assert ok.usable and ok.service == "ns/echo"
    for member, rules, why in [
        ({"address": "10.0.0.6", "protocol_port": 31000}, [31000], "no node"),
        ({"address": "10.0.0.5", "protocol_port": 80}, [80], "no Service has NodePort 80"),
        ({"address": "10.0.0.5", "protocol_port": 31000}, [], "drop tcp 31000"),
        ({"address": "10.0.0.5", "protocol_port": 31000, "admin_state_up": False}, [31000], "disabled"),
    ]:
        b = backend(member, "10.0.0.9", nodes, ports, lambda a, rules=rules: rules, allow)
        assert not b.usable and why in b.why, (member, b.why)
