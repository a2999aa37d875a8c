"""An Octavia network driver for the tests' loopback cloud: the noop driver (no amphora is plugged
anywhere: there are no amphora VMs), except that the VIP is a REAL Neutron port, made and removed
the way Octavia's allowed_address_pairs driver does it (octavia 19.0.0
octavia/network/drivers/neutron/allowed_address_pairs.py: allocate_vip / _create_vip_port /
deallocate_vip; base.py: get_subnet / get_network / get_port, _port_to_vip).

Why: openstack-cloud-controller-manager and octavia-ingress-controller bind their floating IP to
the load balancer's VIP port (cloud-provider-openstack pkg/openstack/loadbalancer.go ensureFloatingIP:
GetFloatingIPByPortID, then floatingips.Create with PortID = lb.VipPortID). The noop driver answers
with a random port ID that Neutron does not know, so no floating IP can be bound. A fake below the
API, like nova's FakeDriver and osk8s_bindall: Octavia's API and database are untouched.

What it does as allowed_address_pairs does: the VIP port is named octavia-lb-<lb id>, device_owner
Octavia, device_id lb-<lb id>, admin_state_up false, in the load balancer's project, on the VIP
network with a fixed IP on the VIP subnet (the requested vip_address when one was given); a port the
caller passed (vip_port_id) is used as it is; on deletion only an Octavia-owned port is deleted.
What it does not: the VIP security group lb-<id> (sec_grp_enabled) and the amphora side (plug_vip,
vrrp ports): no amphora exists.
"""

from octavia.common import clients, constants, data_models
from octavia.network import base
from octavia.network.drivers.neutron import utils
from octavia.network.drivers.noop_driver.driver import NoopNetworkDriver
from openstack import exceptions as os_exceptions
from oslo_log import log as logging

LOG = logging.getLogger(__name__)


class VipPortNoopDriver(NoopNetworkDriver):
    def __init__(self):
        super().__init__()
        self._proxy = None

    @property
    def network_proxy(self):
        if self._proxy is None:
            self._proxy = clients.NeutronAuth.get_neutron_client()
        return self._proxy

    def _get(self, kind, resource_id, missing):
        try:
            return getattr(utils, f"convert_{kind}_to_model")(getattr(self.network_proxy, f"get_{kind}")(resource_id))
        except os_exceptions.ResourceNotFound as e:
            raise missing(f"{kind} not found ({kind} id: {resource_id}).") from e

    def get_network(self, network_id, context=None):
        return self._get("network", network_id, base.NetworkNotFound)

    def get_subnet(self, subnet_id, context=None):
        return self._get("subnet", subnet_id, base.SubnetNotFound)

    def get_port(self, port_id, context=None):
        return self._get("port", port_id, base.PortNotFound)

    @staticmethod
    def _port_to_vip(port, load_balancer, octavia_owned=False):
        fixed = next((f for f in port.fixed_ips if f.subnet_id == load_balancer.vip.subnet_id), None)
        return data_models.Vip(network_id=port.network_id, port_id=port.id, load_balancer=load_balancer,
                               load_balancer_id=load_balancer.id, octavia_owned=octavia_owned,
                               sg_ids=load_balancer.vip.sg_ids, ip_address=fixed.ip_address if fixed else None,
                               subnet_id=fixed.subnet_id if fixed else None)

    def allocate_vip(self, load_balancer):
        vip = load_balancer.vip
        if vip.port_id:
            try:
                return self._port_to_vip(self.get_port(vip.port_id), load_balancer), []
            except base.PortNotFound:
                LOG.warning("VIP port %s is missing from neutron. Rebuilding.", vip.port_id)
        fixed_ip = {}
        if vip.subnet_id:
            fixed_ip[constants.SUBNET_ID] = vip.subnet_id
        if vip.ip_address:
            fixed_ip[constants.IP_ADDRESS] = vip.ip_address
        network_id = vip.network_id or self.get_subnet(vip.subnet_id).network_id
        port = {constants.NAME: "octavia-lb-" + load_balancer.id, constants.NETWORK_ID: network_id,
                constants.ADMIN_STATE_UP: False, "device_id": f"lb-{load_balancer.id}",
                constants.DEVICE_OWNER: constants.OCTAVIA_OWNER, "project_id": load_balancer.project_id}
        if vip.sg_ids:
            port[constants.SECURITY_GROUP_IDS] = vip.sg_ids
        if fixed_ip:
            port[constants.FIXED_IPS] = [fixed_ip]
        try:
            new_port = self.network_proxy.create_port(**port)
        except os_exceptions.ConflictException as e:
            raise base.VIPInUseException(f"Error creating neutron port on network {network_id} due to {e!r}.",
                                         orig_msg=getattr(e, "details", None),
                                         orig_code=getattr(e, "status_code", None)) from e
        except Exception as e:
            raise base.AllocateVIPException(f"Error creating neutron port on network {network_id} due to {e!r}.",
                                            orig_msg=getattr(e, "message", None),
                                            orig_code=getattr(e, "status_code", None)) from e
        return self._port_to_vip(utils.convert_port_to_model(new_port), load_balancer, octavia_owned=True), []

    def deallocate_vip(self, vip):
        try:
            port = self.get_port(vip.port_id)
        except base.PortNotFound:
            LOG.warning("Can't deallocate VIP because the vip port %s cannot be found in neutron. "
                        "Continuing cleanup.", vip.port_id)
            return
        if port.device_owner == constants.OCTAVIA_OWNER:
            try:
                self.network_proxy.delete_port(vip.port_id)
            except os_exceptions.ResourceNotFound:
                LOG.debug("VIP port %s already deleted. Skipping.", vip.port_id)
        else:
            LOG.info("Port %s will not be deleted by Octavia as it was not created by Octavia.", vip.port_id)
