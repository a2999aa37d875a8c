"""Project tasks: the osk8s namespaces. Project-specific overrides go here, nothing else."""

from osk8s_tasks import ns  # noqa: F401  (Invoke looks for `ns`)
