"""Opening an SSH connection is retried for connection-level failures only (sshd dropped it
before its banner, a reset), with backoff and a log line; never after a host-key or an
authentication failure. A fake connect function stands in for the network."""

import paramiko
import pytest

from osk8s_tasks.core import ssh as remote

BANNER = paramiko.SSHException("Error reading SSH protocol banner[Errno 104] Connection reset by peer")


class Key:  # what BadHostKeyException reads of a key
    def get_base64(self):
        return "AAAAC3NzaC1lZDI1NTE5AAAAIKey"


KEY = Key()


class Log:
    def __init__(self):
        self.events = []

    def warning(self, event, **kw):
        self.events.append((event, kw))


def fake_connect(*failures):
    """A connect function failing with each of `failures` in turn, then succeeding."""
    calls = []

    def attempt():
        calls.append(len(calls))
        if len(calls) <= len(failures):
            raise failures[len(calls) - 1]
        return "connected"

    return attempt, calls


@pytest.mark.parametrize(
    "exc, transient",
    [
        (BANNER, True),
        (paramiko.SSHException("Error reading SSH protocol banner"), True),  # sshd closed without a word
        (ConnectionResetError(104, "Connection reset by peer"), True),
        (ConnectionAbortedError(103, "Software caused connection abort"), True),
        (paramiko.BadHostKeyException("node", KEY, KEY), False),
        (paramiko.AuthenticationException("Authentication failed."), False),
        (paramiko.BadAuthenticationType("Bad authentication type", ["password"]), False),
        (paramiko.SSHException("Server '198.19.1.2' not found in known_hosts"), False),  # RejectPolicy
        (paramiko.SSHException("SSH session not active"), False),
        (paramiko.ChannelException(2, "Connect failed"), False),
        (TimeoutError("timed out"), False),
        (ValueError("a bug"), False),
    ],
)
def test_only_connection_level_failures_are_transient(exc, transient):
    assert remote.is_transient(exc) is transient


def test_banner_and_reset_errors_are_retried_with_backoff_and_logged():
    attempt, calls = fake_connect(BANNER, ConnectionResetError(104, "Connection reset by peer"))
    slept, log = [], Log()
    assert remote.retrying(attempt, "osk8s@gateway:22", log, delays=(0.5, 1.0, 2.0), sleep=slept.append) == "connected"
    assert len(calls) == 3
    assert 0.5 <= slept[0] <= 0.75 and 1.0 <= slept[1] <= 1.5  # backoff, with jitter
    assert [e for e, _ in log.events] == ["ssh.retry", "ssh.retry"]
    assert log.events[0][1]["host"] == "osk8s@gateway:22" and log.events[0][1]["attempt"] == 1
    assert "protocol banner" in log.events[0][1]["error"] and "ConnectionResetError" in log.events[1][1]["error"]


@pytest.mark.parametrize(
    "exc",
    [
        paramiko.BadHostKeyException("node", KEY, KEY),
        paramiko.AuthenticationException("Authentication failed."),
        paramiko.SSHException("Server 'node' not found in known_hosts"),
    ],
)
def test_host_key_and_authentication_failures_are_never_retried(exc):
    attempt, calls = fake_connect(exc)
    slept, log = [], Log()
    with pytest.raises(type(exc)):
        remote.retrying(attempt, "node", log, delays=(0.5, 1.0), sleep=slept.append)
    assert len(calls) == 1 and not slept and not log.events


def test_a_host_key_failure_after_a_reset_ends_the_retries():
    attempt, calls = fake_connect(BANNER, paramiko.BadHostKeyException("node", KEY, KEY), BANNER)
    slept = []
    with pytest.raises(paramiko.BadHostKeyException):
        remote.retrying(attempt, "node", Log(), delays=(0.5, 1.0, 2.0), sleep=slept.append)
    assert len(calls) == 2 and len(slept) == 1


def test_the_last_transient_error_is_raised_when_attempts_run_out():
    attempt, calls = fake_connect(BANNER, BANNER, BANNER, BANNER)
    slept, log = [], Log()
    with pytest.raises(paramiko.SSHException, match="protocol banner"):
        remote.retrying(attempt, "node", log, delays=(0.5, 1.0), sleep=slept.append)
    assert len(calls) == 3 and len(slept) == 2 and len(log.events) == 2
