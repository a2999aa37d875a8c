"""Every task has a docstring and help for every argument (`inv --help TASK` is the manual)."""

import inspect

from osk8s_tasks import ns


def _tasks(collection, prefix=""):
    for name, t in collection.tasks.items():
        yield f"{prefix}{name}", t
    for cname, sub in collection.collections.items():
        yield from _tasks(sub, f"{prefix}{cname}.")


def test_every_task_documents_every_argument():
    missing = []
    for name, t in _tasks(ns):
        params = [p for p in inspect.signature(t.body).parameters if p != "c"]
        assert (t.body.__doc__ or "").strip(), f"{name} has no docstring"
        missing += [f"{name} --{p.replace('_', '-')}" for p in params if p not in t.help]
    assert not missing, f"arguments without help: {missing}"


def test_converging_tasks_take_dry_run():
    read_only = {"check", "ssh", "status", "snapshots", "logs", "collect", "lint-cloud-config"}  # logs, collect: bundles
    for name, t in _tasks(ns):
        if name.split(".")[-1] not in read_only:
            assert "dry_run" in inspect.signature(t.body).parameters, f"{name} has no --dry-run"
