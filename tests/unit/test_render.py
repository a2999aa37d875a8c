import pytest

from osk8s_tasks.core import render
from osk8s_tasks.core.engine import StepFailed


def test_missing_value_is_an_error(tmp_path, monkeypatch):
    (tmp_path / "t.j2").write_text("a={{ a }} b={{ b }}\n")
    make = render.environment.__wrapped__
    monkeypatch.setattr(render, "environment", lambda: make(str(tmp_path)))
    assert render.render("t.j2", a=1, b=2) == "a=1 b=2\n"
    with pytest.raises(StepFailed, match="'b' is undefined"):
        render.render("t.j2", a=1)


def test_digest_is_stable():
    assert render.digest("x") == render.digest(b"x") and len(render.digest("x")) == 64
