"""The step engine: check -> dry-run report / apply -> re-check, summary, composition."""

import json
import re
import secrets
import threading
import time

import invoke
import pytest
from invoke.exceptions import Exit
from keystoneauth1.exceptions import ConnectFailure

from osk8s_tasks.core import engine as steps
from osk8s_tasks.core import faults, log
from osk8s_tasks.core.defaults import namespace_defaults
from osk8s_tasks.core.engine import Status, Step, StepFailed


class Box:
    """A piece of state with a check and an apply, counting applies."""

    def __init__(self, value, want, sticky=False):
        self.value, self.want, self.sticky, self.applied = value, want, sticky, 0

    def step(self, name="box"):
        def check():
            ok = self.value == self.want
            return Status(ok, f"value is {self.value}", "" if ok else f"{self.value} -> {self.want}")

        def apply():
            self.applied += 1
            if not self.sticky:
                self.value = self.want

        return Step(name, check, apply)


@pytest.fixture(autouse=True)
def logging_to_this_tests_stderr():
    """structlog writes to the stream it was set up with: a test that converges without session()
    would otherwise log to an earlier test's captured stderr, closed when that test ended."""
    log.setup(None)


@pytest.fixture
def ctx(tmp_path):
    cfg = invoke.Config(defaults={**invoke.Config.global_defaults(), **namespace_defaults()})
    cfg.lab.state_dir = str(tmp_path / "state")
    return invoke.Context(config=cfg)


def test_apply_then_second_run_is_all_ok(ctx, capsys):
    a, b = Box(1, 2), Box(3, 3)
    with steps.session(ctx, "t.up") as s:
        s.converge([a.step("a"), b.step("b")])
    assert [r.outcome for r in s.results] == ["changed", "ok"]
    with steps.session(ctx, "t.up") as s2:
        s2.converge([a.step("a"), b.step("b")])
    assert [r.outcome for r in s2.results] == ["ok", "ok"] and a.applied == 1
    out = capsys.readouterr().out
    assert "t.up: 2 ok, 0 failed" in out and "1 changed" in out


def test_dry_run_checks_but_never_applies(ctx, capsys):
    a = Box(1, 2)
    with steps.session(ctx, "t.up", dry_run=True) as s:
        s.converge([a.step("a")])
    assert a.applied == 0 and s.results[0].outcome == "would-change"
    assert "1 -> 2" in capsys.readouterr().out


def test_still_wrong_after_apply_fails_loudly(ctx, capsys):
    a = Box(1, 2, sticky=True)
    with pytest.raises(Exit) as exc:
        with steps.session(ctx, "t.up") as s:
            s.converge([a.step("a"), Box(0, 1).step("never")])
    assert exc.value.code == 1
    assert [r.outcome for r in s.results] == ["failed"]  # stops at the first failure
    assert "still not converged" in s.results[0].detail
    assert "failed" in capsys.readouterr().out


def test_prerequisite_without_apply_fails_with_its_reason(ctx):
    step = Step("pre", lambda: Status(False, "plugin missing. Fix: install it"))
    with pytest.raises(Exit):
        with steps.session(ctx, "t.up") as s:
            s.converge([step])
    assert s.results[0].detail == "plugin missing. Fix: install it"


def test_one_shot_uses_verify(ctx):
    done = []
    step = Step("restore", lambda: Status(False, "always acts"), lambda: done.append(1), lambda: Status(True, "reverted"))
    with steps.session(ctx, "t.restore") as s:
        s.converge([step])
    assert done == [1] and s.results[0].outcome == "changed"


def test_nested_tasks_join_the_outer_session(ctx, capsys):
    def inner(c):
        with steps.session(c, "t.inner") as s:
            s.converge([Box(1, 1).step("x")])

    with steps.session(ctx, "t.outer", dry_run=True) as s:
        inner(ctx)
        s.converge([Box(0, 1).step("y")])
    out = capsys.readouterr().out
    assert out.count("t.outer:") == 1 and "t.inner x" in out  # one summary for both
    assert [r.outcome for r in s.results] == ["ok", "would-change"]


def test_bug_becomes_a_failed_row_with_the_traceback_in_the_log(ctx, capsys):
    def boom():
        raise RuntimeError("kaboom")

    with pytest.raises(Exit) as exc:
        with steps.session(ctx, "t.bug") as s:
            s.converge([Step("b", boom)])
    assert "internal error" in str(exc.value)
    lines = [json.loads(x) for x in s.log_path.read_text().splitlines()]
    assert any("kaboom" in (x.get("traceback") or "") for x in lines)


def test_logs_are_0600_and_redact_secrets(ctx, tmp_path):
    log.secret("s3cr3t-value")
    json_file = tmp_path / "events.jsonl"
    with steps.session(ctx, "t.log", log_json=str(json_file)) as s:
        s.log.info("cmd", command="login --password s3cr3t-value", password="other", token="abcd1234")
    for path in (json_file, s.log_path):
        text = path.read_text()
        assert "s3cr3t-value" not in text and "abcd1234" not in text and '"other"' not in text
        assert "***" in text
        assert path.stat().st_mode & 0o777 == 0o600


def test_failed_check_in_dry_run_after_a_change_is_would_change(ctx):
    def needs_vm():
        raise StepFailed("the lab VM is not created")

    with steps.session(ctx, "t.up", dry_run=True) as s:
        s.converge([Box(0, 1).step("vm"), Step("ssh", needs_vm)])
    assert [r.outcome for r in s.results] == ["would-change", "would-change"]


def test_a_cloud_api_that_does_not_answer_is_named_with_the_fix_not_an_internal_error():
    """keystoneauth's ConnectFailure (nova-api killed mid-run) and an SDK 503: a failed row naming
    the service and its endpoint, and the fix; any other exception stays an internal error."""
    import keystoneauth1.exceptions as ksa
    from openstack import exceptions as sdk

    from osk8s_tasks.core import faults

    down = ksa.ConnectFailure(
        "Unable to establish connection to http://127.0.0.1:8774/v2.1/servers/detail: Connection refused"
    )
    msg = faults.describe(down)
    assert msg.startswith("nova (compute) at http://127.0.0.1:8774/v2.1 does not answer") and "devstack.status" in msg
    busy = sdk.HttpException("boom")
    busy.status_code, busy.url = 503, "http://192.168.121.10/load-balancer/v2/lbaas/loadbalancers"
    assert faults.describe(busy).startswith("octavia (load balancer) at http://192.168.121.10/load-balancer answered 503")
    missing = sdk.HttpException("nope")
    missing.status_code = 404
    assert faults.describe(missing) is None
    assert faults.describe(KeyError("x")) is None

    s = steps.Session("t", False, None)
    with pytest.raises(StepFailed):
        steps.converge_steps(s, [Step("servers", lambda: (_ for _ in ()).throw(down))])
    row = s.results[-1]
    assert row.outcome == "failed" and row.detail.startswith("nova (compute)") and "internal error" not in row.detail
    with pytest.raises(KeyError):  # a bug of the tool stays one
        steps.converge_steps(s, [Step("bug", lambda: {}["x"])])
    assert s.results[-1].detail.startswith("internal error in check")


def test_failed_check_in_dry_run_with_no_change_pending_is_failed(ctx):
    """A dry run turns a failing check into would-change only after a pending change it depends
    on; on its own it is failed, and the run exits non-zero."""

    def bad_cloud():
        raise StepFailed("cloud 'nosuchcloud' is not in clouds.yaml")

    with pytest.raises(Exit) as exit_:
        with steps.session(ctx, "t.deploy", dry_run=True) as s:
            s.converge([Box(1, 1).step("flavor"), Step("cloud", bad_cloud), Box(0, 1).step("later")])
    assert exit_.value.code == 1
    assert [r.outcome for r in s.results] == ["ok", "failed"]


@pytest.mark.parametrize(
    "key",
    [
        "OS_PASSWORD",
        "Password",
        "password",
        "APPLICATION_CREDENTIAL_SECRET",
        "application_credential_secret",
        "Token",
        "X-Auth-Token",
        "private_key",
    ],
)
def test_secret_keys_are_redacted_whatever_their_case(key):
    assert log.redact({key: "v4lue", "user": "demo"}) == {key: "***", "user": "demo"}


def _row(task, step, node, outcome, detail, seconds=0.5):
    return steps.Result(task, step, node, outcome, seconds, detail)


def test_summary_is_a_table_then_the_plan_then_the_counts():
    log.secret("pl4inly-secret")
    s = steps.Session("host.up", True, None, log_path="/lab/logs/run.jsonl", started=time.monotonic() - 12.0)
    s.results += [
        _row("host.up", "box", "local", "ok", "box cloud-image/ubuntu-24.04 (libvirt)", 0.25),
        _row("host.up", "vm", "osk8s-lab", "would-change", "define the VM\nthen boot it", 1.5),
        _row("host.up", "ssh", "osk8s-lab", "would-change", "after the changes above (no VM)", 10.0),
        _row("devstack.deploy", "stack", "osk8s-lab", "ok", "", 0.0),
        _row("devstack.deploy", "secret", "n", "ok", "password pl4inly-secret"),
        _row("devstack.deploy", "long", "n", "ok", "x" * 90),
        _row("devstack.deploy", "longer", "n", "ok", "y" * 91),
    ]
    lines = steps.summary(s).splitlines()
    assert lines[:8] == [
        "STEP                    NODE       RESULT        SECONDS  DETAIL",
        "host.up box             local      ok               0.25  box cloud-image/ubuntu-24.04 (libvirt)",
        "host.up vm              osk8s-lab  would-change     1.50  define the VM",
        "then boot it",
        "host.up ssh             osk8s-lab  would-change    10.00  after the changes above (no VM)",
        "devstack.deploy stack   osk8s-lab  ok               0.00",  # no trailing blanks
        "devstack.deploy secret  n          ok               0.50  password ***",
        "devstack.deploy long    n          ok               0.50  " + "x" * 90,
    ]
    assert lines[8:] == [
        "devstack.deploy longer  n          ok               0.50  " + "y" * 87 + "...",
        "would change:",
        "  - host.up vm [osk8s-lab]: define the VM",
        "      then boot it",
        "  - host.up ssh [osk8s-lab]: after the changes above (no VM)",
        lines[-2],
        "log: /lab/logs/run.jsonl",
    ]
    assert re.fullmatch(
        r"host\.up: 5 ok, 2 would-change, 0 failed in 1[23]\.\d s \(dry run: nothing was changed\)", lines[-2]
    )


def test_summary_of_a_real_run_counts_changes_and_failures():
    s = steps.Session("t.up", False, None, started=time.monotonic())
    s.results += [_row("t.up", "a", "local", "changed", "0 -> 1"), _row("t.up", "b", "local", "failed", "no")]
    text = steps.summary(s)
    assert re.fullmatch(r"t\.up: 0 ok, 1 changed, 1 failed in 0\.\d s", text.splitlines()[-1])
    assert "would change" not in text and "log:" not in text
    assert steps.summary(steps.Session("t.none", False, None)).splitlines()[0] == "(no steps ran)"


def test_a_decision_step_checks_and_applies_the_same_decision_on_fresh_facts():
    world, acted, dropped = {"flavor": None}, [], []

    def decide(have):
        if have is None:
            return steps.Decision("create", "no flavor f", "create flavor f")
        return steps.Decision("none", f"flavor f: {have}")

    def act(d):
        acted.append((d.action, d.diff))
        world["flavor"] = "4 GB"

    step = steps.decision_step(
        "flavor f", lambda: world["flavor"], decide, act, node="cloud", after_act=lambda: dropped.append(1)
    )
    assert (step.name, step.node, step.verify) == ("flavor f", "cloud", None)
    assert step.check() == Status(False, "no flavor f", "create flavor f")
    step.apply()
    assert acted == [("create", "create flavor f")] and dropped == [1]
    assert step.check() == Status(True, "flavor f: 4 GB", "")
    world["flavor"] = "2 GB"  # the world moved after the check: apply decides again, on what is there now
    plain = steps.decision_step(
        "flavor f",
        lambda: world["flavor"],
        lambda have: steps.Decision("replace", f"flavor f: {have}", f"{have} -> 4 GB"),
        act,
    )
    plain.apply()
    assert acted[-1] == ("replace", "2 GB -> 4 GB") and plain.node == "local" and dropped == [1]


def test_a_child_session_is_the_same_run_under_another_task_name():
    parent = steps.Session("verify.all", True, "settings", log_path="/lab/logs/run.jsonl", started=5.0)
    child = parent.child("verify.lb", "other settings")
    assert (child.task, child.dry_run, child.settings, child.log_path, child.started) == (
        "verify.lb",
        True,
        "other settings",
        "/lab/logs/run.jsonl",
        5.0,
    )
    assert child.results is parent.results


class Node:
    """One node's step: counts the applies running at once across all nodes."""

    def __init__(self, fleet, name, fails=None):
        self.fleet, self.name, self.fails, self.done = fleet, name, fails, False

    def steps(self):
        def check():
            if self.fails:
                raise StepFailed(self.fails)
            return Status(self.done, "converged" if self.done else "to do")

        def apply():
            f = self.fleet
            with f["cond"]:
                f["active"] += 1
                f["peak"] = max(f["peak"], f["active"])
                f["cond"].notify_all()
                # all the applies the limit lets in run together (or those left), and a while longer: long
                # enough for one more to get in if the limit let it
                f["cond"].wait_for(lambda: f["active"] >= min(f["expect"], f["left"]), timeout=10)
            time.sleep(0.1)
            with f["cond"]:
                f["active"] -= 1
                f["left"] -= 1
                f["cond"].notify_all()
            self.done = True

        return [Step("pkg", check, apply, node=self.name), Step("after", lambda: Status(True, "ok"), node=self.name)]


def fleet(n, expect, fails=()):
    f = {"cond": threading.Condition(), "active": 0, "peak": 0, "expect": expect, "left": n - len(fails)}
    return f, {f"n{i}": Node(f, f"n{i}", "VM gone" if f"n{i}" in fails else None).steps() for i in range(n)}


@pytest.mark.parametrize(
    "kwargs, peak", [({}, 8), ({"apply_concurrency": 3}, 3), ({"apply_concurrency": 1}, 1), ({"apply_concurrency": 0}, 1)]
)
def test_converge_nodes_limits_the_applies_running_at_once(kwargs, peak):
    f, groups = fleet(10, peak)
    s = steps.Session("cluster.prepare-nodes", False, None)
    s.converge_nodes(groups, **kwargs)
    assert f["peak"] == peak and s.apply_slots is None
    assert sorted((r.node, r.step, r.outcome) for r in s.results) == sorted(
        (f"n{i}", st, o) for i in range(10) for st, o in (("pkg", "changed"), ("after", "ok"))
    )


def test_a_failed_node_stops_only_its_own_steps_and_the_run_fails_after_all_nodes():
    f, groups = fleet(4, 3, fails=("n1", "n3"))
    s = steps.Session("cluster.prepare-nodes", False, None)
    with pytest.raises(StepFailed) as err:
        s.converge_nodes(groups)
    assert str(err.value) == "n1: VM gone; n3: VM gone"
    assert sorted((r.node, r.step, r.outcome) for r in s.results) == [
        ("n0", "after", "ok"),
        ("n0", "pkg", "changed"),
        ("n1", "pkg", "failed"),
        ("n2", "after", "ok"),
        ("n2", "pkg", "changed"),
        ("n3", "pkg", "failed"),
    ]
    assert s.apply_slots is None
    s.converge_nodes({})  # no nodes: nothing to do


class Sticky(Box):
    def __init__(self, value, want, fails=None):
        super().__init__(value, want, sticky=True)
        self.fails = fails

    def step(self, name="box"):
        st = super().step(name)
        if self.fails is not None:

            def apply():
                raise self.fails

            st.apply = apply
        return st


def converge_logged(tmp_path, dry_run, plan, earlier=()):
    """Converge `plan` in a bare session whose events go to a JSON file: (rows, events, error)."""
    path = tmp_path / "events.jsonl"
    log.setup(path)
    s = steps.Session("t.up", dry_run, None)
    s.results += earlier
    error = None
    try:
        rows = s.converge(plan)
        assert rows == s.results[len(earlier) :]  # converge returns the rows of this call
    except Exception as exc:  # the error is part of what the tests compare
        error = exc
    finally:
        log.close()
    events = [json.loads(line) for line in path.read_text().splitlines()]
    assert all(e["task"] == "t.up" for e in events) and all(r.seconds < 5 for r in s.results)
    return (
        [(r.step, r.outcome, r.detail) for r in s.results[len(earlier) :]],
        [(e["event"], e["step"], e["node"], e["reason"], e.get("diff")) for e in events],
        error,
    )


def fails_check(message):
    def check():
        raise StepFailed(message)

    return check


DOWN = ConnectFailure("Unable to establish connection to http://127.0.0.1:8774/v2.1/flavors: Connection refused")
NOVA_DOWN = "nova (compute) at http://127.0.0.1:8774/v2.1 does not answer"


@pytest.mark.parametrize(
    "dry_run, plan, earlier, rows, events",
    [
        (
            False,
            lambda: [Box(1, 1).step("a")],
            (),
            [("a", "ok", "value is 1")],
            [("step.ok", "a", "local", "value is 1", None)],
        ),
        (
            True,
            lambda: [Box(1, 2).step("a"), Box(3, 3).step("b")],
            (),
            [("a", "would-change", "1 -> 2"), ("b", "ok", "value is 3")],
            [("step.would_change", "a", "local", "value is 1", "1 -> 2"), ("step.ok", "b", "local", "value is 3", None)],
        ),
        (
            True,
            lambda: [Step("a", lambda: Status(False, "missing"))],
            (),
            [("a", "would-change", "missing")],
            [("step.would_change", "a", "local", "missing", None)],
        ),
        (
            False,
            lambda: [Box(1, 2).step("a")],
            (),
            [("a", "changed", "1 -> 2")],
            [("step.apply", "a", "local", "value is 1", "1 -> 2"), ("step.applied", "a", "local", "value is 2", None)],
        ),
        (
            False,
            lambda: [Step("a", lambda: Status(False, "to do"), lambda: None, lambda: Status(True, "done"), node="n1")],
            (),
            [("a", "changed", "to do")],
            [("step.apply", "a", "n1", "to do", None), ("step.applied", "a", "n1", "done", None)],
        ),
        (
            True,
            lambda: [Box(0, 1).step("vm"), Step("ssh", fails_check("no VM")), Box(3, 4).step("later")],
            (),
            [
                ("vm", "would-change", "0 -> 1"),
                ("ssh", "would-change", "after the changes above (no VM)"),
                ("later", "would-change", "3 -> 4"),
            ],
            [
                ("step.would_change", "vm", "local", "value is 0", "0 -> 1"),
                ("step.would_change", "ssh", "local", "after the changes above: no VM", None),
                ("step.would_change", "later", "local", "value is 3", "3 -> 4"),
            ],
        ),
        (
            True,
            lambda: [Step("ssh", fails_check("no VM"))],
            (_row("host.up", "vm", "local", "would-change", "0 -> 1"),),
            [("ssh", "would-change", "after the changes above (no VM)")],
            [("step.would_change", "ssh", "local", "after the changes above: no VM", None)],
        ),  # a plan of an earlier task
    ],
    ids=[
        "ok",
        "dry run",
        "dry run without a diff",
        "applied",
        "one-shot with verify",
        "after a planned change",
        "after an earlier task's plan",
    ],
)
def test_each_outcome_is_a_row_and_an_event_named_by_the_contract(tmp_path, dry_run, plan, earlier, rows, events):
    got_rows, got_events, error = converge_logged(tmp_path, dry_run, plan(), earlier)
    assert (error, got_rows, got_events) == (None, rows, events)


def boom():
    raise RuntimeError("bug")


STILL = "still not converged after apply: value is 1"


@pytest.mark.parametrize(
    "dry_run, plan, rows, events, error",
    [
        (
            False,
            lambda: [Sticky(1, 2).step("a"), Box(0, 1).step("never")],
            [("a", "failed", STILL)],
            [("step.apply", "a", "local", "value is 1", "1 -> 2"), ("step.failed", "a", "local", STILL, None)],
            StepFailed(STILL),
        ),
        (
            False,
            lambda: [Step("pre", lambda: Status(False, "plugin missing. Fix: install it"))],
            [("pre", "failed", "plugin missing. Fix: install it")],
            [("step.failed", "pre", "local", "plugin missing. Fix: install it", None)],
            StepFailed("plugin missing. Fix: install it"),
        ),
        (
            True,
            lambda: [Step("cloud", fails_check("no cloud x")), Box(0, 1).step("never")],
            [("cloud", "failed", "no cloud x")],
            [("step.failed", "cloud", "local", "no cloud x", None)],
            StepFailed("no cloud x"),
        ),
        (
            False,
            lambda: [Sticky(1, 2, fails=StepFailed("quota exceeded")).step("a")],
            [("a", "failed", "quota exceeded")],
            [("step.apply", "a", "local", "value is 1", "1 -> 2"), ("step.failed", "a", "local", "quota exceeded", None)],
            StepFailed("quota exceeded"),
        ),
        (
            False,
            lambda: [Sticky(1, 2, fails=DOWN).step("a")],
            [("a", "failed", faults.describe(DOWN))],
            [
                ("step.apply", "a", "local", "value is 1", "1 -> 2"),
                ("step.failed", "a", "local", faults.describe(DOWN), None),
            ],
            StepFailed(faults.describe(DOWN)),
        ),
        (
            False,
            lambda: [Sticky(1, 2, fails=RuntimeError("bug")).step("a")],
            [("a", "failed", "internal error in apply: RuntimeError('bug')")],
            [("step.apply", "a", "local", "value is 1", "1 -> 2")],
            RuntimeError("bug"),
        ),
        (
            False,
            lambda: [Step("a", boom)],
            [("a", "failed", "internal error in check: RuntimeError('bug')")],
            [],
            RuntimeError("bug"),
        ),
    ],
    ids=[
        "still wrong after apply",
        "a prerequisite",
        "a failed check in a dry run, nothing planned",
        "apply fails",
        "a cloud API down in apply",
        "a bug in apply",
        "a bug in check",
    ],
)
def test_each_failure_is_a_row_an_event_and_the_error_that_stops_the_run(tmp_path, dry_run, plan, rows, events, error):
    assert NOVA_DOWN in faults.describe(DOWN)
    got_rows, got_events, got = converge_logged(tmp_path, dry_run, plan())
    assert (got_rows, got_events, type(got), str(got)) == (rows, events, type(error), str(error))


def test_the_longest_secret_is_masked_first():
    """A secret inside a longer one (and after it in reverse alphabetical order) must not leave the
    longer one's ends in the clear."""
    log.secret("wxyz")
    log.secret("abwxyzcd")
    assert log.redact("token abwxyzcd, then wxyz") == "token ***, then ***"


def test_secrets_are_masked_in_lists_and_tuples_too():
    log.secret("l1st-s3cret")
    assert log.redact({"argv": ["login", ("--password", "l1st-s3cret")]}) == {"argv": ["login", ["--password", "***"]]}


@pytest.mark.parametrize("length, masked", [(4, True), (3, False), (0, False), (None, False)])
def test_values_of_four_characters_or_more_are_secrets(length, masked):
    """Shorter values would mask ordinary words (an empty one, every character). The values are new
    each run: the registry lives as long as the process (and a forked one inherits it)."""
    value = None if length is None else secrets.token_hex(4)[:length]
    assert log.secret(value) == value
    text = f"a {value} b"
    assert log.redact(text) == (f"a {log.MASK} b" if masked else text)
