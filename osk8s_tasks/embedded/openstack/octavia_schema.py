"""Octavia's schema on sqlite. `octavia-db-manage upgrade head` cannot run there (its migrations
ALTER constraints, which sqlite lacks), so the tables come from Octavia's own models, and the
lookup tables get the rows its migrations would insert; `stamp head` follows."""

import sys

from octavia.common import constants as C
from octavia.db import base_models
from octavia.db import models as M
from oslo_db.sqlalchemy import enginefacade

LOOKUPS = [
    (M.ProvisioningStatus, C.SUPPORTED_PROVISIONING_STATUSES),
    (M.OperatingStatus, C.SUPPORTED_OPERATING_STATUSES),
    (M.Protocol, C.SUPPORTED_PROTOCOLS),
    (M.Algorithm, C.SUPPORTED_LB_ALGORITHMS),
    (M.HealthMonitorType, C.SUPPORTED_HEALTH_MONITOR_TYPES),
    (M.SessionPersistenceType, C.SUPPORTED_SP_TYPES),
    (M.AmphoraRoles, C.SUPPORTED_AMPHORA_ROLES),
    (M.LBTopology, C.SUPPORTED_LB_TOPOLOGIES),
    (M.VRRPAuthMethod, C.SUPPORTED_VRRP_AUTH),
    (M.L7RuleType, C.SUPPORTED_L7RULE_TYPES),
    (M.L7RuleCompareType, C.SUPPORTED_L7RULE_COMPARE_TYPES),
    (M.L7PolicyAction, C.SUPPORTED_L7POLICY_ACTIONS),
    (M.ClientAuthenticationMode, C.SUPPORTED_CLIENT_AUTH_MODES),
]

ctx = enginefacade.transaction_context()
ctx.configure(connection=sys.argv[1], sqlite_fk=True)
base_models.BASE.metadata.create_all(ctx.writer.get_engine())
session = ctx.writer.get_sessionmaker()()
with session.begin():
    for model, names in LOOKUPS:
        session.add_all(model(name=n) for n in names)
    # the DELETED placeholders that flavor/AZ foreign keys of deleted objects point at
    session.add(M.FlavorProfile(id=C.NIL_UUID, name="DELETED-PLACEHOLDER", provider_name=C.DELETED, flavor_data="{}"))
    session.flush()
    session.add(
        M.Flavor(
            id=C.NIL_UUID, flavor_profile_id=C.NIL_UUID, name="DELETED-PLACEHOLDER", enabled=False, description="placeholder"
        )
    )
    session.add(
        M.AvailabilityZoneProfile(
            id=C.NIL_UUID, name="DELETED-PLACEHOLDER", provider_name=C.DELETED, availability_zone_data="{}"
        )
    )
    session.flush()
    session.add(
        M.AvailabilityZone(
            availability_zone_profile_id=C.NIL_UUID, name=C.NIL_UUID, enabled=False, description="placeholder"
        )
    )
