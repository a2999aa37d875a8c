"""The step engine: check -> dry-run report / apply -> re-check, summary, composition."""

import json

import invoke
import pytest
from invoke.exceptions import Exit

from osk8s_tasks.core import log
from osk8s_tasks.core import engine as steps
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

    down = ksa.ConnectFailure("Unable to establish connection to http://127.0.0.1:8774/v2.1/servers/detail: "
                              "Connection refused")
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


@pytest.mark.parametrize("key", ["OS_PASSWORD", "Password", "password", "APPLICATION_CREDENTIAL_SECRET",
                                 "application_credential_secret", "Token", "X-Auth-Token", "private_key"])
def test_secret_keys_are_redacted_whatever_their_case(key):
    assert log.redact({key: "v4lue", "user": "demo"}) == {key: "***", "user": "demo"}
