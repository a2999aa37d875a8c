"""osk8s: OpenStack + Kubernetes integration lab as Invoke tasks.

One package per namespace (host, devstack, embedded, openstack, cluster, verify, lab), each with its CLI
surface in tasks.py; what they share is in core/. Only invoke and the tasks modules load here:
each task imports what it needs in its body, so `inv --list` stays fast.
"""

from invoke import Collection

from osk8s_tasks.cluster import tasks as cluster
from osk8s_tasks.core.defaults import namespace_defaults
from osk8s_tasks.devstack import tasks as devstack
from osk8s_tasks.embedded import tasks as embedded
from osk8s_tasks.host import tasks as host
from osk8s_tasks.lab import tasks as lab
from osk8s_tasks.openstack import tasks as openstack
from osk8s_tasks.verify import tasks as verify

ns = Collection(host.ns, devstack.ns, embedded.ns, openstack.ns, cluster.ns, verify.ns, lab.ns)
ns.configure(namespace_defaults())
