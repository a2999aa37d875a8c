"""Templates: Jinja2 with StrictUndefined (a missing value is an error, never an empty string),
rendered from the project's template folders (devstack/, kubeadm/, manifests/), and a content
hash so that callers upload a file only when it differs."""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import jinja2

from osk8s_tasks.core.engine import StepFailed

PROJECT_DIR = Path(__file__).resolve().parents[2]


@functools.cache
def environment(root: str = str(PROJECT_DIR)):
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(root),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render(template: str, **values) -> str:
    """Render a template by its path relative to the project (e.g. 'devstack/local.conf.j2')."""
    try:
        return environment().get_template(template).render(**values)
    except jinja2.UndefinedError as exc:
        raise StepFailed(f"{template}: {exc.message}: the template needs a value the tool did not give") from None


def digest(text: str | bytes) -> str:
    data = text.encode() if isinstance(text, str) else text
    return hashlib.sha256(data).hexdigest()
