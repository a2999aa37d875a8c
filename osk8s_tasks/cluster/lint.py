"""Lint a cloud-provider-openstack cloud.conf: keys that current releases no longer read (silently:
gcfg skips them) or never knew, each with its modern replacement.

The key lists mirror the config structs of cloud-provider-openstack v1.36 (pkg/client AuthOpts,
pkg/openstack LoadBalancerOpts/RouterOpts/NetworkingOpts, pkg/util/metadata, and cinder-csi's
BlockStorageOpts); gcfg matches keys case-insensitively and lower-cases untagged fields.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

GLOBAL = {
    "auth-url",
    "user-id",
    "username",
    "password",
    "tenant-id",
    "tenant-name",
    "trust-id",
    "trustee-id",
    "trustee-password",
    "domain-id",
    "domain-name",
    "tenant-domain-id",
    "tenant-domain-name",
    "user-domain-id",
    "user-domain-name",
    "region",
    "os-endpoint-type",
    "ca-file",
    "tls-insecure",
    "token",
    "cert-file",
    "key-file",
    "use-clouds",
    "clouds-file",
    "cloud",
    "application-credential-id",
    "application-credential-name",
    "application-credential-secret",
}
LOADBALANCER = {
    "enabled",
    "lb-version",
    "subnet-id",
    "member-subnet-id",
    "network-id",
    "floating-network-id",
    "floating-subnet-id",
    "floating-subnet",
    "floating-subnet-tags",
    "lb-method",
    "lb-provider",
    "create-monitor",
    "monitor-delay",
    "monitor-timeout",
    "monitor-max-retries",
    "monitor-max-retries-down",
    "manage-security-groups",
    "internal-lb",
    "node-selector",
    "cascade-delete",
    "flavor-id",
    "availability-zone",
    "enable-ingress-hostname",
    "ingress-hostname-suffix",
    "max-shared-lb",
    "container-store",
    "provider-requires-serial-api-calls",
    "default-tls-container-ref",
}
LB_CLASS = {
    "floating-network-id",
    "floating-subnet-id",
    "floating-subnet",
    "floating-subnet-tags",
    "network-id",
    "subnet-id",
    "member-subnet-id",
}
KNOWN = {
    "occm": {
        "global": GLOBAL,
        "loadbalancer": LOADBALANCER,
        "loadbalancerclass": LB_CLASS,
        "route": {"router-id"},
        "metadata": {"search-order", "request-timeout"},
        "networking": {"ipv6-support-disabled", "public-network-name", "internal-network-name", "address-sort-order"},
    },
    "cinder-csi": {
        "global": GLOBAL,
        "metadata": {"search-order", "request-timeout"},
        "blockstorage": {"node-volume-attach-limit", "rescan-on-resize", "ignore-volume-az", "ignore-volume-microversion"},
    },
}
# Keys and sections of the in-tree provider era, with what replaces them.
REMOVED = {
    ("loadbalancer", "use-octavia"): "removed: Octavia is the only load-balancer API (neutron-lbaas is gone); "
    "delete it, and choose the Octavia driver with lb-provider = amphora|ovn",
    ("blockstorage", "bs-version"): "removed with the in-tree Cinder provider: cinder-csi-plugin always uses Block "
    "Storage v3; delete it (volume options go in a StorageClass of cinder.csi.openstack.org)",
    ("blockstorage", "trust-device-path"): "removed with the in-tree Cinder provider; delete it",
}
# Still read, and any value but v2 stops OCCM at start-up: pkg/openstack/openstack.go (LoadBalancer(),
# "Config error: currently only support LBaaS v2, unrecognised lb-version").
LB_VERSION_FATAL = (
    'OCCM still reads it and exits at start-up on any value but v2 ("Config error: currently only '
    'support LBaaS v2"); delete it (v2 is the only load-balancer API)'
)
LB_VERSION_V2 = "still read, and v2 is the only value it accepts: it changes nothing; you may delete it"
SECTION_HINTS = {
    ("occm", "blockstorage"): "openstack-cloud-controller-manager reads no [BlockStorage]: block storage settings "
    "belong in cinder-csi-plugin's cloud.conf (node-volume-attach-limit, rescan-on-resize, "
    "ignore-volume-az, ignore-volume-microversion)",
    ("cinder-csi", "loadbalancer"): "cinder-csi-plugin reads no [LoadBalancer]: it belongs in the OCCM cloud.conf",
}


@dataclass(frozen=True)
class LintFinding:
    """A cloud.conf key current cloud-provider-openstack reads differently, with its fix."""

    line: int
    section: str
    key: str
    kind: str  # removed | fatal | unknown | misplaced | advice
    fix: str


def parse(text: str) -> list[tuple[int, str, str]]:
    """(line, section, key) for every key in a gcfg file; values are never kept (they hold secrets)."""
    out, section = [], ""
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        m = re.match(r'^\[\s*([A-Za-z]+)(?:\s+"[^"]*")?\s*\]$', line)
        if m:
            section = m.group(1)
            continue
        key = line.split("=", 1)[0].strip()
        out.append((n, section, key))
    return out


def _value(text: str, line: int) -> str | None:
    """The value on `line` (1-based) as gcfg reads it: quotes removed, a `;` or `#` comment cut off;
    None for a bare key (no `=`). Only for the few keys whose value is no secret (lb-version)."""
    raw = text.splitlines()[line - 1].split("=", 1)
    if len(raw) < 2:
        return None
    m = re.match(r'\s*"([^"]*)"|([^;#]*)', raw[1])
    return m.group(1) if m.group(1) is not None else m.group(2).strip()


def lint(text: str, component: str = "occm") -> list[LintFinding]:
    known = KNOWN[component]
    findings, keys = [], parse(text)
    seen_sections = set()
    for n, section, key in keys:
        s, k = section.lower(), key.lower()
        if (component, s) in SECTION_HINTS and s not in seen_sections:
            findings.append(LintFinding(n, section, "", "misplaced", SECTION_HINTS[(component, s)]))
        if (s, k) in REMOVED:
            findings.append(LintFinding(n, section, key, "removed", REMOVED[(s, k)]))
        elif component == "occm" and (s, k) == ("loadbalancer", "lb-version"):
            v2 = _value(text, n) in ("", "v2")  # openstack.go: lbVersion != "" && lbVersion != "v2" is fatal
            findings.append(
                LintFinding(n, section, key, "advice" if v2 else "fatal", LB_VERSION_V2 if v2 else LB_VERSION_FATAL)
            )
        elif (component, s) in SECTION_HINTS:
            pass
        elif s not in known:
            close = difflib.get_close_matches(s, known, n=1)
            findings.append(
                LintFinding(
                    n,
                    section,
                    key,
                    "unknown",
                    f"section [{section}] is not read by {component}" + (f" (did you mean [{close[0]}]?)" if close else ""),
                )
            )
        elif k not in known[s]:
            close = difflib.get_close_matches(k, known[s], n=1)
            findings.append(
                LintFinding(
                    n,
                    section,
                    key,
                    "unknown",
                    f"not a [{section}] key of {component}; it is ignored"
                    + (f" (did you mean {close[0]}?)" if close else ""),
                )
            )
        seen_sections.add(s)
    names = {k.lower() for _, s, k in keys if s.lower() == "global"}
    if "password" in names and "application-credential-secret" not in names:
        line = next(n for n, s, k in keys if s.lower() == "global" and k.lower() == "password")
        findings.append(
            LintFinding(
                line,
                "Global",
                "password",
                "advice",
                "a user's password in cloud.conf: use an application credential instead "
                "(application-credential-id + application-credential-secret; inv openstack.prepare "
                "creates one) so the cluster never holds the user's password",
            )
        )
    return sorted(findings, key=lambda f: f.line)


def report(path: str, findings: list[LintFinding]) -> str:
    if not findings:
        return f"{path}: no problems: every key is read by current cloud-provider-openstack"
    lines = [f"{path}:"]
    for f in findings:
        where = f"[{f.section}] {f.key}".strip()
        lines.append(f"  line {f.line:<3} {f.kind:<9} {where}: {f.fix}")
    return "\n".join(lines)
