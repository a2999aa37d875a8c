"""Local files the tool writes are private from creation and never written through a symlink."""

import os
import stat
import subprocess

import pytest

from osk8s_tasks.core import files


def mode(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_write_private_is_0600_atomic_and_ignores_a_planted_symlink(tmp_path):
    target, victim = tmp_path / "lab" / "secrets.yaml", tmp_path / "victim"
    victim.write_text("untouched")
    (tmp_path / "lab").mkdir(mode=0o755)
    os.symlink(victim, tmp_path / "lab" / "secrets.yaml.tmp")  # the old, predictable temporary name
    old = os.umask(0)
    try:
        files.write_private(target, "admin: pw\n")
    finally:
        os.umask(old)
    assert target.read_text() == "admin: pw\n" and mode(target) == 0o600 and mode(target.parent) == 0o755
    assert victim.read_text() == "untouched"
    assert sorted(p.name for p in target.parent.iterdir()) == ["secrets.yaml", "secrets.yaml.tmp"]


def test_a_report_or_log_file_never_changes_the_mode_of_the_directory_it_is_put_in(tmp_path):
    """--junit /tmp/report.xml or --log-json /tmp/run.jsonl: the file is 0600, /tmp stays 1777 (a
    chmod 0700 of a shared directory breaks every other user of it; a test host's sshd lost its
    authorized_keys that way). Only the tool's own directories are narrowed (private_dir)."""
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    files.write_private(shared / "report.xml", "<testsuites/>")
    files.open_private(shared / "run.jsonl").close()
    assert mode(shared) == 0o1777 and mode(shared / "report.xml") == 0o600 and mode(shared / "run.jsonl") == 0o600
    files.write_private(shared / "new" / "deeper" / "report.json", "{}")
    assert mode(shared / "new") == 0o700 and mode(shared / "new" / "deeper") == 0o700 and mode(shared) == 0o1777
    own = tmp_path / "lab"
    own.mkdir(mode=0o755)
    files.private_dir(own)
    assert mode(own) == 0o700


def test_open_private_refuses_a_symlink_and_narrows_an_old_file(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("")
    link = tmp_path / "logs" / "run.jsonl"
    link.parent.mkdir()
    os.symlink(victim, link)
    with pytest.raises(OSError):
        files.open_private(link)
    wide = tmp_path / "logs" / "vagrant.log"
    wide.write_text("")
    wide.chmod(0o644)
    with files.open_private(wide) as fh:
        fh.write("x\n")
    assert mode(wide) == 0o600 and mode(wide.parent) == 0o755  # the directory: see the next two tests


def test_a_run_leaves_only_private_files(inv, tmp_path):
    """A real run (a dry run of host.up, in a namespace with no network) under a permissive umask."""
    state = tmp_path / "state"
    (state / "osk8s" / "logs").mkdir(parents=True, mode=0o755)  # an older version's lab directory, left wide
    os.chmod(state / "osk8s", 0o755)
    ns = f"o8files{os.getpid()}"  # this run's own: another test run at once has its own
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        r = inv(["host.up", "--dry-run"], env={"INVOKE_LAB_STATE_DIR": str(state)}, netns=ns, timeout=120)
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=True)
    assert r.returncode == 0, r.stdout + r.stderr
    made = [p for p in state.rglob("*")]
    assert made, "the run wrote its log"
    for p in [state / "osk8s", *made]:
        assert mode(p) == (0o700 if p.is_dir() else 0o600), (p, oct(mode(p)))
