"""Loaded by a .pth file in the loopback venv: sqlite transactions that wait for the lock instead of
failing with "database is locked".

pysqlite begins transactions lazily (a read first, the write lock later). In WAL mode, a read
transaction that wants to write after another connection committed gets SQLITE_BUSY at once: the
busy timeout does not apply. Three parallel volume creates against cinder-api were enough for a
500. Real deployments use MySQL and never see this; the loopback's services do. oslo.db already
switches pysqlite's own BEGIN off and emits an explicit "BEGIN"; here that becomes BEGIN IMMEDIATE
(the write lock up front, waited for up to 20 s). Active only where services.spawn() sets
OSK8S_SQLITE_IMMEDIATE, so db syncs keep the default. Not for Octavia: its API reads through one
session while a second one writes, in the same request; holding the write lock from the first
BEGIN, it waited 20 s for itself and answered 500 (a CI rehearsal showed it on every listener).
Octavia's rare lost race stays; the cloud controllers retry it as OCCM does.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import sys


def _patch() -> None:
    import sqlite3

    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    @event.listens_for(Engine, "connect")
    def _connect(dbapi_conn, _record) -> None:
        if isinstance(dbapi_conn, sqlite3.Connection):
            dbapi_conn.execute("PRAGMA busy_timeout = 20000")

    @event.listens_for(Engine, "before_cursor_execute", retval=True)
    def _immediate(conn, cursor, statement, parameters, context, executemany):
        if conn.dialect.name == "sqlite" and statement.strip().upper() == "BEGIN":
            return "BEGIN IMMEDIATE", parameters  # oslo.db's explicit BEGIN, taking the write lock
        return statement, parameters


class _AfterSqlalchemy(importlib.abc.MetaPathFinder):
    """Runs _patch() right after `import sqlalchemy`, so processes that never use it pay nothing."""

    def find_spec(self, name, path, target=None):
        if name != "sqlalchemy":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_then_patch(module):
            exec_module(module)
            _patch()

        spec.loader.exec_module = exec_then_patch
        return spec


if os.environ.get("OSK8S_SQLITE_IMMEDIATE") and "sqlalchemy" not in sys.modules:
    sys.meta_path.insert(0, _AfterSqlalchemy())
