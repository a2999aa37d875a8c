"""Mutation score of the pure decision code: mutmut (pinned in the test extras, configured in
pyproject.toml [tool.mutmut]) mutates the functions in SCOPE one change at a time and runs the unit
tests that call each one; a mutant the tests do not notice is a missing test or a dead branch.

Prints the score per module and in total, killed / (killed + survived), where a mutant no unit
test reaches ("no tests") counts as survived and one that makes the tests hang (timeout) as
killed; then every surviving mutant with its diff (`mutmut show NAME`). Goal: >= 85 %.
Starts from a fresh mutants/ every time (mutmut's cache would keep a stale test-to-function map
when a test changes). Only tests/unit runs: never a peer, never the network.

Usage: .venv/bin/python bench/mutation.py [MODULE ...] [--jobs N]   (or ./dev mutate)
  MODULE: a key of SCOPE or its last part (engine, config, resources, lint...); default: all.

Out of scope, in the same files: what does I/O (the read and act closures of the *_step
functions, node_steps/connections/run_nodes, allowed_cidrs, flavor_named, find_image, file_hash,
download, open_url, HttpsOnlyRedirects, server_of, the Keystone calls _client, issue_token,
token_review and revoke, log setup and its sinks and console, config.load which reads the Invoke
context and the -f file) and the probe command texts (stack_probe, watchdog_probe, sysctl_probe:
shell run on a host; the recorded fact cases pin them, only a real host proves them); names()
and v3() build names and URLs, they decide nothing. mutmut 3 does not mutate decorated functions
(engine.session, the pydantic model validators, properties), nor module-level constants (the
field patterns, the lint's key tables): those are covered by the tests but not counted here.
"""

import argparse
import fnmatch
import io
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter, defaultdict
from contextlib import redirect_stdout
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MUTMUT = str(Path(sys.executable).parent / "mutmut")
GOAL = 0.85

# module -> the functions mutated ("Class.method" for a method, "*" for the whole module)
SCOPE = {
    "osk8s_tasks.core.engine": ["*"],
    "osk8s_tasks.core.config": [
        "_dns_label",
        "_cidr",
        "_yaml_string",
        "_box",
        "_patch_file",
        "_remote_path",
        "_git_ref",
        "_one_line",
        "_user_name",
        "_port_range",
        "_env_name",
        "_fix",
        "_known_keys",
        "_describe",
        "_merge",
        "_plain",
        "_derive",
        "validate",
        "KeyedError.__init__",
        "ConfigError.__init__",
        "Devstack.patch_path",
    ],
    "osk8s_tasks.core.shapes": ["parse_sysctl_probe", "sysctl_file", "sysctl_diff"],
    "osk8s_tasks.core.log": ["secret", "redact", "_redact_processor"],
    "osk8s_tasks.openstack.resources": [
        "decide_flavor",
        "decide_keypair",
        "wanted_rules",
        "rule_key",
        "decide_secgroup",
        "decide_app_credential",
    ],
    "osk8s_tasks.openstack.images": ["decide_image"],
    "osk8s_tasks.openstack.servers": ["decide_server", "decide_fip"],
    "osk8s_tasks.cluster.nodes": ["missing_modules", "swap_status", "containerd_status", "kube_status"],
    "osk8s_tasks.cluster.facts": ["*"],
    "osk8s_tasks.cluster.lint": ["*"],
    "osk8s_tasks.devstack.facts": [
        "parse_summary",
        "completed_seconds",
        "current_phase",
        "parse_stack_probe",
        "parse_watchdog_probe",
        "healthy",
        "parse_host_ip",
        "secret_values",
        "mask_secret_lines",
        "parse_units",
    ],
    "osk8s_tasks.verify.octavia": ["rule_allows", "check_load_balancer", "check_volume", "check_ingress_lb"],
    "osk8s_tasks.verify.keystone.model": ["check_policy", "_match", "authorize"],
}
KILLED = {"killed", "timeout", "segfault"}  # the tests noticed (a hang or a crash is noticed too)
SURVIVED = {"survived", "no tests"}


def mutant_glob(module: str, function: str) -> str:
    if function == "*":
        return f"{module}.*"
    cls, _, name = function.rpartition(".")
    return f"{module}.{'xǁ' + cls + 'ǁ' if cls else 'x_'}{name}__mutmut_*"


def module_of(mutant: str) -> str:
    return re.split(r"\.x[_ǁ]", mutant, maxsplit=1)[0]


def pick(names: list[str]) -> dict[str, list[str]]:
    if not names:
        return SCOPE
    out = {}
    for n in names:
        hits = [m for m in SCOPE if m == n or m.endswith("." + n) or m.removeprefix("osk8s_tasks.") == n]
        if not hits:
            sys.exit(f"no module {n!r} in SCOPE; one of: {', '.join(m.removeprefix('osk8s_tasks.') for m in SCOPE)}")
        out.update({m: SCOPE[m] for m in hits})
    return out


def run_mutmut(globs: list[str], jobs: int, log: Path) -> float:
    shutil.rmtree(ROOT / "mutants", ignore_errors=True)
    (ROOT / "mutants").mkdir()
    t0 = time.monotonic()
    with open(log, "w") as out:
        rc = subprocess.run(
            [MUTMUT, "run", "--max-children", str(jobs), *globs], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT
        ).returncode
    if rc:
        tail = "\n".join(log.read_text().replace("\r", "\n").splitlines()[-30:])
        sys.exit(f"mutmut run failed (exit {rc}); the end of {log}:\n{tail}")
    return time.monotonic() - t0


def results(globs: list[str]) -> dict[str, str]:
    """{mutant name: status} for every mutant in scope (`mutmut results --all true`)."""
    text = subprocess.run([MUTMUT, "results", "--all", "true"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    out = {}
    for line in text.splitlines():
        name, _, status = line.strip().partition(": ")
        if any(fnmatch.fnmatchcase(name, g) for g in globs):
            out[name] = status
    return out


def shows(names: list[str]) -> list[str]:
    """`mutmut show NAME` for each name, run in this process (one start-up instead of one per mutant)."""
    from mutmut.__main__ import cli

    os.chdir(ROOT)
    out = []
    for name in names:
        buf = io.StringIO()
        with redirect_stdout(buf):
            cli.main(["show", name], standalone_mode=False)
        out.append(buf.getvalue())
    return out


def score(statuses) -> tuple[int, int, float]:
    c = Counter(statuses)
    killed, survived = sum(c[s] for s in KILLED), sum(c[s] for s in SURVIVED)
    return killed, survived, killed / (killed + survived) if killed + survived else 1.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("modules", nargs="*", help="keys of SCOPE (or their last part); default: all")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2, help="mutants tested at once")
    args = ap.parse_args()
    scope = pick(args.modules)
    globs = [mutant_glob(m, f) for m, fs in scope.items() for f in fs]
    log = ROOT / "mutants" / "osk8s-mutate.log"
    print(f"mutmut run over {len(scope)} module(s), tests/unit only (log: {log.relative_to(ROOT)})", flush=True)
    seconds = run_mutmut(globs, args.jobs, log)
    found = results(globs)
    unexpected = sorted({s for s in found.values()} - KILLED - SURVIVED)
    if unexpected:
        print(f"note: statuses counted neither killed nor survived: {', '.join(unexpected)}")
    by_module = defaultdict(list)
    for name, status in found.items():
        by_module[module_of(name)].append(status)

    width = max(len(m) for m in scope)
    print(f"\n{'MODULE':<{width}}  KILLED  SURVIVED  (NO TESTS)  SCORE")
    for module in scope:
        statuses = by_module.get(module, [])
        killed, survived, ratio = score(statuses)
        print(f"{module:<{width}}  {killed:>6}  {survived:>8}  {statuses.count('no tests'):>10}  {ratio:6.1%}")
    killed, survived, ratio = score(found.values())
    print(
        f"{'total':<{width}}  {killed:>6}  {survived:>8}  {list(found.values()).count('no tests'):>10}  {ratio:6.1%}"
        f"   (goal >= {GOAL:.0%})"
    )
    print(f"{len(found)} mutants in {seconds / 60:.1f} min")

    survivors = sorted(
        (n for n, s in found.items() if s in SURVIVED),
        key=lambda n: (module_of(n), n.partition("__mutmut_")[0], int(n.rpartition("_")[2])),
    )
    if survivors:
        print(f"\n{len(survivors)} surviving mutants:\n")
        for text in shows(survivors):
            print(text.rstrip() + "\n")


if __name__ == "__main__":
    main()
