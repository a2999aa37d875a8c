"""Node host keys are read from the server console (cloud-init's markers), not trusted on first use."""

from osk8s_tasks.cluster.facts import parse_console_host_keys

CONSOLE = """[   12.3] cloud-init[812]: Cloud-init v. 24.4 running 'modules:final'
-----BEGIN SSH HOST KEY FINGERPRINTS-----
256 SHA256:abc root@k-master (ED25519)
-----END SSH HOST KEY FINGERPRINTS-----
-----BEGIN SSH HOST KEY KEYS-----
ecdsa-sha2-nistp256 AAAAE2VjZHNh root@k-master
ssh-ed25519 AAAAC3NzaC1lZDI1NTE5 root@k-master
ssh-rsa AAAAB3NzaC1yc2E root@k-master
-----END SSH HOST KEY KEYS-----
[   13.0] cloud-init[812]: Cloud-init v. 24.4 finished
"""


def test_keys_between_the_markers_only():
    assert parse_console_host_keys(CONSOLE) == [
        "ecdsa-sha2-nistp256 AAAAE2VjZHNh",
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5",
        "ssh-rsa AAAAB3NzaC1yc2E",
    ]


def test_no_keys_before_cloud_init_printed_them():
    assert parse_console_host_keys("FAKE CONSOLE OUTPUT\nANOTHER\nLAST LINE") == []


def test_only_what_cloud_init_printed_between_its_markers_is_trusted():
    """Anything may print to a console (a user-data script, a process on the node): key-shaped
    lines before or after the markers, and lines between them that are not keys, are ignored."""
    console = (
        "ssh-ed25519 AAAAplanted-before root@evil\n"
        "-----BEGIN SSH HOST KEY KEYS-----\n"
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5\n"  # no comment: still a key
        "ci-info: no authorized SSH keys\n"  # not a key type
        "ssh-rsa\n"  # a type without a key
        "ecdsa-sha2-nistp256 AAAAE2VjZHNh root@k-master\n"
        "-----END SSH HOST KEY KEYS-----\n"
        "ssh-rsa AAAAplanted-after root@evil\n"
    )
    assert parse_console_host_keys(console) == ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5", "ecdsa-sha2-nistp256 AAAAE2VjZHNh"]
