"""`osk8s`: the same tasks as `inv` (this package's collection, the same config chain), with one
difference a new user meets first: a configuration file that is not valid YAML is one line
naming the file, line and column, and exit code 2, instead of Invoke's traceback.

    osk8s -f lab.yaml host.up        # as: inv -f lab.yaml host.up
"""

from __future__ import annotations

from importlib.metadata import version

import invoke
import yaml
from invoke.exceptions import Exit

from osk8s_tasks import ns
from osk8s_tasks.core.config import PROJECT_DIR

try:  # Invoke parses config files with its vendored PyYAML
    from invoke.vendor import yaml as _invoke_yaml

    YAML_ERRORS: tuple[type[Exception], ...] = (yaml.YAMLError, _invoke_yaml.YAMLError)
except ImportError:
    YAML_ERRORS = (yaml.YAMLError,)


def yaml_error_line(exc: Exception) -> str:
    """`FILE:LINE:COLUMN: what is wrong` (1-based, as editors count) for a YAML parse error."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = " ".join(x for x in (getattr(exc, "context", None), getattr(exc, "problem", None)) if x) or str(exc)
    where = f"{mark.name}:{mark.line + 1}:{mark.column + 1}" if mark else "config"
    return f"{where}: not valid YAML: {problem}. Fix: correct the file at that line (mind indentation and ':')"


class Program(invoke.Program):
    def create_config(self) -> None:
        super().create_config()
        self.config.set_project_location(str(PROJECT_DIR))  # the project invoke.yaml, as inv reads it
        self.config.load_project()

    def update_config(self, merge: bool = True) -> None:
        try:
            super().update_config(merge)
        except YAML_ERRORS as exc:  # the -f file (Invoke loads it here)
            raise Exit(yaml_error_line(exc), code=2) from None


def main() -> None:
    Program(namespace=ns, name="osk8s", binary="osk8s", version=version("osk8s")).run()
