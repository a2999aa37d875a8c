"""Imported at start-up by any Python whose PYTHONPATH holds this directory (the tests run `inv`
so): every deprecation raised inside openstacksdk becomes an error, so a deprecated call of the
tool's own fails its test with a traceback. Only the two the SDK raises for every caller, whatever
the caller does, stay ignored, and a third it raises for every connection (openstacksdk 4.x
config/cloud_region.py warns when influxdb_config is truthy, and config/loader.py always passes a
dict of None values). (PYTHONWARNINGS cannot do this: it matches module names literally
and cannot import the SDK's warning classes at interpreter start.)"""

import warnings

for category in (DeprecationWarning, PendingDeprecationWarning):  # the SDK's classes derive from these
    warnings.filterwarnings("error", category=category, module=r"openstack(\..*)?$")
warnings.filterwarnings("ignore", message="The _compute_attributes method is deprecated", module=r"openstack\.")
warnings.filterwarnings("ignore", message="The 'service_type' parameter is unnecesary", module=r"openstack\.")
warnings.filterwarnings("ignore", message="Support for InfluxDB requires", module=r"openstack\.config\.cloud_region")
