"""What openstack-cloud-controller-manager, cinder-csi and octavia-ingress-controller do in
OpenStack when the fake API (fake_kube_cluster.py) tells them a Service, PVC, Pod or Ingress
changed: done here against the real loopback OpenStack, with the names and tags the real
controllers use, because the controllers themselves need a real Kubernetes API. The data plane
(amphora + echo pods) is tests/peers/http_responder.py inside the gateway's network namespace,
on the floating IP, so curl on the devstack host gets the echo pod's name back."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from tests.peers.keystone_webhook import KeystoneWebhook

RESPONDER = Path(__file__).resolve().parent / "http_responder.py"


class Controllers:
    def __init__(self, conn, lab: str, gateway_netns: str, keystone_url: str):
        self.conn, self.lab, self.netns, self.keystone_url = conn, lab, gateway_netns, keystone_url
        self.data_plane = True  # False: the load balancer is built but traffic goes nowhere
        self.responders: dict[tuple[str, int], subprocess.Popen] = {}
        self.webhook: KeystoneWebhook | None = None
        self.keystone_ip = None
        self.fips: dict[str, object] = {}  # load balancer name -> floating IP
        self.lb = conn.load_balancer
        self.net = conn.network
        self.subnet = next(conn.network.subnets(name="private-subnet"))
        self.public = next(conn.network.networks(name="public"))

    # --- OCCM ----------------------------------------------------------------------------------

    def _wait(self, lb):
        self.lb.wait_for_load_balancer(lb.id, wait=120)

    def retry(self, fn, *args, **kw):
        """Octavia answers 409 while the load balancer is PENDING_*, and the sqlite-backed loopback
        services now and then 500 ("database is locked"): OCCM retries too."""
        from openstack import exceptions

        for _ in range(60):
            try:
                return fn(*args, **kw)
            except exceptions.HttpException as exc:
                if exc.status_code not in (409, 500):
                    raise
                time.sleep(1)
        return fn(*args, **kw)

    def _new_lb(self, name: str, provider: str | None = None):
        vip = self.net.create_port(network_id=self.subnet.network_id, name=f"octavia-lb-{name}")
        address = vip.fixed_ips[0]["ip_address"]  # the noop network driver cannot read the port itself
        try:
            lb = self.lb.create_load_balancer(name=name, vip_subnet_id=self.subnet.id, vip_address=address, tags=[name],
                                              **({"provider": provider} if provider else {}))
        except Exception:
            self.net.delete_port(vip)
            raise
        self._wait(lb)
        fip = self.net.create_ip(floating_network_id=self.public.id, port_id=vip.id)
        self.fips[name] = (fip, vip)
        return self.lb.get_load_balancer(lb.id), fip.floating_ip_address

    def _listener(self, lb, port: int, node_port: int, protocol: str = "TCP"):
        listener = self.lb.create_listener(name=f"listener_{port}_{lb.name}", protocol=protocol, protocol_port=port,
                                           load_balancer_id=lb.id)
        self._wait(lb)
        if node_port:
            pool = self.lb.create_pool(name=f"pool_{port}_{lb.name}", protocol=protocol, lb_algorithm="ROUND_ROBIN",
                                       listener_id=listener.id)
            self._wait(lb)
            self._members(lb, pool, node_port)
        return listener

    def _members(self, lb, pool, node_port: int):
        for address in self.node_addresses:
            self.lb.create_member(pool, address=address, protocol_port=node_port, subnet_id=self.subnet.id)
            self._wait(lb)

    def _name(self, kind: str, meta: dict) -> str:
        """The name OCCM (kind service) or octavia-ingress-controller (kind ingress) gives the LB."""
        return f"kube_{kind}_{self.lab}_{meta['namespace']}_{meta['name']}"

    @staticmethod
    def _pod_of(api, app: str) -> str:
        return next(o["metadata"]["name"] for o in api.objects.values()
                    if o.get("kind") == "Pod" and o["metadata"].get("labels", {}).get("app") == app)

    def service_lb(self, api, path: str):
        svc = api.objects[path]
        meta, port = svc["metadata"], svc["spec"]["ports"][0]
        name = self._name("service", meta)
        shared = meta.get("annotations", {}).get("loadbalancer.openstack.org/load-balancer-id")
        if shared:
            lb = self.lb.get_load_balancer(shared)
            self.retry(self.lb.update_load_balancer, lb, tags=[*lb.tags, name])
            self._wait(lb)
            ip = self.fips[lb.name][0].floating_ip_address
        else:
            lb, ip = self._new_lb(name)
        self._listener(lb, port["port"], port["nodePort"])
        self.serve(ip, port["port"], {"/": self._pod_of(api, svc["spec"]["selector"]["app"])})
        return ip

    def service_deleted(self, svc):
        meta = svc["metadata"]
        name = self._name("service", meta)
        shared = meta.get("annotations", {}).get("loadbalancer.openstack.org/load-balancer-id")
        port = svc["spec"]["ports"][0]["port"]
        if shared:  # OCCM removes only this Service's listener and tag
            lb = self.lb.find_load_balancer(shared)
            if lb is None:  # the owner's deletion took the load balancer with it
                return
            listener = next(x for x in self.lb.listeners(load_balancer_id=lb.id) if x.protocol_port == port)
            if listener.default_pool_id:
                self.retry(self.lb.delete_pool, listener.default_pool_id)
                self._wait(lb)
            self.retry(self.lb.delete_listener, listener)
            self._wait(lb)
            self.retry(self.lb.update_load_balancer, lb, tags=[t for t in lb.tags if t != name])
            self._wait(lb)
            self._stop(self.fips[lb.name][0].floating_ip_address, port)
            return
        self._delete_lb(name)

    def _delete_lb(self, name: str):
        lb = next(iter(self.lb.load_balancers(name=name)), None)
        if lb is not None:
            self.retry(self.lb.delete_load_balancer, lb, cascade=True)
            self.lb.wait_for_delete(lb, wait=120)
        fip, vip = self.fips.pop(name, (None, None))
        if fip is not None:
            for key in [k for k in self.responders if k[0] == fip.floating_ip_address]:
                self._stop(*key)
            self.retry(self.net.delete_ip, fip)
            self.retry(self.net.delete_port, vip)

    # --- octavia-ingress-controller ------------------------------------------------------------

    def ingress(self, api, path: str):
        """octavia-ingress-controller asks Octavia for the provider named in its config Secret
        (cloud-provider-openstack pkg/ingress/config/config.go: octavia.provider)."""
        ing = api.objects[path]
        meta = ing["metadata"]
        secret = api.objects["/api/v1/namespaces/kube-system/secrets/octavia-ingress-controller-config"]
        provider = yaml.safe_load(base64.b64decode(secret["data"]["config"]))["octavia"].get("provider")
        lb, ip = self._new_lb(self._name("ingress", meta), provider)
        listener = self._listener(lb, 80, 0, protocol="HTTP")
        routes = {}
        for p in ing["spec"]["rules"][0]["http"]["paths"]:
            svc = api.objects[f"/api/v1/namespaces/{meta['namespace']}/services/{p['backend']['service']['name']}"]
            pool = self.lb.create_pool(name=f"pool_{p['path'].strip('/')}", protocol="HTTP", lb_algorithm="ROUND_ROBIN",
                                       loadbalancer_id=lb.id)
            self._wait(lb)
            self._members(lb, pool, svc["spec"]["ports"][0]["nodePort"])
            policy = self.lb.create_l7_policy(listener_id=listener.id, action="REDIRECT_TO_POOL", redirect_pool_id=pool.id)
            self._wait(lb)
            self.lb.create_l7_rule(policy, type="PATH", compare_type="STARTS_WITH", rule_value=p["path"])
            self._wait(lb)
            routes[p["path"]] = self._pod_of(api, svc["spec"]["selector"]["app"])
        self.serve(ip, 80, routes)
        return ip

    def ingress_deleted(self, ing):
        self._delete_lb(self._name("ingress", ing["metadata"]))

    # --- cinder-csi ----------------------------------------------------------------------------

    def provision(self, api, path: str) -> str:
        pvc = api.objects[path]
        name = f"pvc-{self.lab}-{pvc['metadata']['uid']}"  # the PV name, which cinder-csi gives the volume
        bs = self.conn.block_storage
        vol = bs.create_volume(size=1, name=name, metadata={"cinder.csi.openstack.org/cluster": self.lab})
        bs.wait_for_status(vol, "available", wait=120)
        return name

    def _volume(self, name: str):
        return next(v for v in self.conn.block_storage.volumes() if v.name == name)

    def attach(self, volume: str, server_id: str):
        vol = self._volume(volume)
        self.conn.compute.create_volume_attachment(server_id, volume_id=vol.id)
        self.conn.block_storage.wait_for_status(vol, "in-use", wait=120)

    def detach(self, volume: str, server_id: str):
        vol = self._volume(volume)
        self.conn.compute.delete_volume_attachment(server_id, vol.id)
        self.conn.block_storage.wait_for_status(vol, "available", wait=120)

    def delete_volume(self, volume: str):
        vol = self._volume(volume)
        self.conn.block_storage.wait_for_status(vol, "available", wait=120)
        self.conn.block_storage.delete_volume(vol)

    # --- k8s-keystone-auth ---------------------------------------------------------------------

    def keystone_service(self, cluster_ip: str):
        self.keystone_ip = cluster_ip

    def keystone_auth(self, cert: bytes, key: bytes, policy_json: str, rbac_allows=None):
        if self.webhook is not None:
            self.webhook.stop()
        self.webhook = KeystoneWebhook(self.keystone_url, self.keystone_ip, cert, key, policy_json, rbac_allows=rbac_allows)
        return self.webhook

    # --- data plane ----------------------------------------------------------------------------

    def serve(self, ip: str, port: int, routes: dict):
        if not self.data_plane:
            return
        subprocess.run(["ip", "netns", "exec", self.netns, "ip", "addr", "replace", f"{ip}/32", "dev", "lo"], check=True)
        log = open(self._log(ip, port), "w")
        proc = subprocess.Popen(["ip", "netns", "exec", self.netns, sys.executable, str(RESPONDER), ip, str(port),
                                 json.dumps(routes)], stdout=log, stderr=subprocess.STDOUT)
        self.responders[(ip, port)] = proc
        for _ in range(50):  # serving before the controller reports the address
            probe = subprocess.run(["ip", "netns", "exec", self.netns, "curl", "-s", "-o", "/dev/null", "-m", "1",
                                    f"http://{ip}:{port}/"], capture_output=True)
            if probe.returncode == 0:
                return
            if proc.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError(f"responder on {ip}:{port} did not start: {Path(log.name).read_text()[-500:]}")

    @staticmethod
    def _log(ip: str, port: int) -> Path:
        return Path(tempfile.gettempdir()) / f"osk8s-responder-{ip}-{port}.log"

    def _stop(self, ip: str, port: int):
        proc = self.responders.pop((ip, port), None)
        if proc is not None:
            proc.terminate()
            proc.wait(10)
            self._log(ip, port).unlink(missing_ok=True)

    def stop(self):
        for key in list(self.responders):
            self._stop(*key)
        if self.webhook is not None:
            self.webhook.stop()
