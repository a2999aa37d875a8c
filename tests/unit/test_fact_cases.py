"""Every shell probe is a command plus a pure parser (as pyinfra's facts): the JSON cases in
tests/unit/facts/ hold command -> output -> fact, recorded on this machine (record.py) or written
from the upstream format they name. A changed probe command fails here until it is re-recorded."""

import importlib
import json
import subprocess
from pathlib import Path

import pytest

from osk8s_tasks.cluster import facts as cluster_facts
from osk8s_tasks.core import shapes
from osk8s_tasks.devstack import facts as devstack_facts
from tests.unit.facts.record import plain

CASES = [c for f in sorted((Path(__file__).parent / "facts").glob("*.json")) for c in json.loads(f.read_text())]


def probe_of(case: dict) -> str | None:
    """The command the product runs today for this case (None: a probe built per service list)."""
    name, args = case["parser"].rsplit(":", 1)[1], case["args"]
    if name == "parse_sysctl_probe":
        return shapes.sysctl_probe(args["keys"], args["file"])
    if name == "parse_stack_probe":
        return devstack_facts.stack_probe(args["dest"]) if args else None
    return {
        "parse_lsmod": cluster_facts.LSMOD_PROBE,
        "parse_swap": cluster_facts.SWAP_PROBE,
        "parse_containerd": cluster_facts.CONTAINERD_PROBE,
        "parse_kube_versions": cluster_facts.KUBE_VERSIONS_PROBE,
        "parse_units": devstack_facts.UNITS_PROBE,
        "parse_host_ip": devstack_facts.HOST_IP_PROBE,
        "parse_ctr_images": cluster_facts.CTR_IMAGES_PROBE,
    }.get(name)


def case_id(case: dict) -> str:
    """The parser and the start of the output, whitespace folded: an id with a backslash (a repr'd
    newline) is escaped again when pytest collects twice in one process (mutmut does), and then
    no longer selects its test."""
    return f"{case['parser'].rsplit(':', 1)[1]}:{' '.join(case['output'].split())[:24]}"


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_recorded_output_parses_to_the_recorded_fact(case):
    module, _, name = case["parser"].partition(":")
    parse = getattr(importlib.import_module(module), name)
    assert plain(parse(case["output"])) == case["fact"]
    want = probe_of(case)
    if want is not None:
        assert case["probe"] == want, "the probe changed: re-record (python -m tests.unit.facts.record)"


def test_every_probe_has_cases():
    parsers = {c["parser"] for c in CASES}
    for module, names in (
        (cluster_facts, ("parse_lsmod", "parse_swap", "parse_containerd", "parse_kube_versions", "parse_ctr_images")),
        (devstack_facts, ("parse_units", "parse_host_ip", "parse_stack_probe", "parse_watchdog_probe")),
        (shapes, ("parse_sysctl_probe",)),
    ):
        for n in names:
            assert f"{module.__name__}:{n}" in parsers, n


def test_one_node_probe_holds_every_section_run_by_a_real_shell():
    """cluster.facts.node_probe: the node's checks read one command's output; a section whose command
    fails or prints nothing is still there (empty), and the next section is not swallowed."""
    import subprocess

    sections = {
        "first": "printf 'a\\nb\\n'",
        "failing": "false",
        "silent": "true",
        "unterminated": "printf 'no newline'",
        "last": cluster_facts.SWAP_PROBE,
    }
    out = subprocess.run(["bash", "-c", cluster_facts.node_probe(sections)], capture_output=True, text=True).stdout
    got = cluster_facts.parse_node_probe(out)
    assert list(got) == list(sections)
    assert got["first"] == "a\nb\n" and got["failing"] == "" and got["silent"] == ""
    assert got["unterminated"].startswith("no newline") and cluster_facts.parse_swap(got["last"]) == (False, False)


def test_the_sysctl_probe_finds_sysctl_off_a_user_path():
    """The lab VM's vagrant user has no /usr/sbin on its PATH (Debian's default for a user): the
    probe read every value as unset there, and devstack.deploy's apply never converged."""
    probe = shapes.sysctl_probe(["net.ipv4.ip_forward"], "/nonexistent/osk8s.conf")
    out = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"}).stdout
    assert shapes.parse_sysctl_probe(out)[1]["net.ipv4.ip_forward"] in ("0", "1")
