"""osk8s: OpenStack + Kubernetes integration lab as Invoke tasks.

Only invoke is imported here: fabric, openstacksdk, kubernetes, libvirt and pydantic load when a
task runs, so `inv --list` stays fast.
"""

from invoke import Collection

from . import cluster, devstack, host, lab, openstack, verify
from .defaults import namespace_defaults

ns = Collection(host.ns, devstack.ns, openstack.ns, cluster.ns, verify.ns, lab.ns)
ns.configure(namespace_defaults())
