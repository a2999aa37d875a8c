"""An ML2 mechanism driver for the tests' loopback Neutron, which has no agents: it binds every
port on every host as an OVS port, ACTIVE, so that nova's fake compute driver can boot servers
on real networks. A fake below the API, like nova's FakeDriver; nothing else changes."""

from neutron_lib import constants
from neutron_lib.api.definitions import portbindings
from neutron_lib.plugins.ml2 import api


class BindAllMechanismDriver(api.MechanismDriver):
    def initialize(self):
        pass

    @property
    def connectivity(self):
        return portbindings.CONNECTIVITY_L2

    def bind_port(self, context):
        for segment in context.segments_to_bind:
            context.set_binding(segment[api.ID], portbindings.VIF_TYPE_OVS,
                                {portbindings.CAP_PORT_FILTER: True}, status=constants.PORT_STATUS_ACTIVE)
            return
