"""cluster.load-images through the real `inv` CLI against sshd nodes behind a gateway (the jump
host), whose containerd client is the ctr stand-in (tests/peers/k8s/ctr.py, installed with the
containerd "package" by cluster.prepare-nodes). The archives are built here as `docker save` and
OCI exporters write them (tests/peers/image_archives.py).

Shows: bad input (a missing file, a file that is not an image archive, a local image in
cluster.images that no archive holds, a node without containerd) is refused before any copy, with
the key and the fix and no traceback; --dry-run changes nothing; the archives are imported on
every node; a second run changes nothing and says why on each node; a new build of the same name
replaces the old one everywhere. No loopback OpenStack: only these namespaces are touched."""

import hashlib
import json
import re
import subprocess
import uuid
from contextlib import ExitStack
from pathlib import Path

import pytest
import yaml

from osk8s_tasks.embedded.simnodes import calls, node_hosts
from tests.conftest import require_root_tools, run_inv
from tests.peers.image_archives import docker_save, oci_layout

pytestmark = pytest.mark.sshd
SUFFIX = uuid.uuid4().hex[:4]
LAB = f"i{SUFFIX}"
PREFIX = f"o8i{SUFFIX}"
OCCM = f"docker.io/o8i/occm:dev-{SUFFIX}"  # what containerd names RepoTags o8i/occm:dev-<suffix>
INGRESS = f"localhost/o8i/ingress:dev-{SUFFIX}"
TASK = "cluster.load-images"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    require_root_tools("sshd", "ip", "unshare")
    with ExitStack() as cleanup:
        hosts = node_hosts(Path(f"/run/osk8s-images-{uuid.uuid4().hex[:6]}"), LAB, workers=2, prefix=PREFIX)
        cleanup.callback(hosts.stop)
        files = tmp_path_factory.mktemp("archives")

        class Lab:
            nodes = hosts.hosts[1:]
            occm = docker_save(files / "occm.tar", [f"o8i/occm:dev-{SUFFIX}"])
            ingress = oci_layout(files / "ingress.tar", {"io.containerd.image.name": INGRESS})
            notes = files / "notes.txt"

            def config(self, **images) -> Path:
                cfg = hosts.workdir / f"lab-{len(images)}-{'-'.join(sorted(images))}.yaml"
                cfg.write_text(
                    yaml.safe_dump(
                        {
                            "lab": {"name": LAB, "state_dir": str(hosts.workdir / "state")},
                            "versions": hosts.pins,
                            "devstack": {"ssh_target": "gateway", "ssh_config": str(hosts.ssh_config)},
                            "cluster": {
                                "ssh_config": str(hosts.ssh_config),
                                "images": images,
                                "nodes": [
                                    {"name": "master", "role": "control-plane"},
                                    {"name": "worker-1", "role": "worker"},
                                    {"name": "worker-2", "role": "worker"},
                                ],
                            },
                        }
                    )
                )
                return cfg

            def inv(self, *args, images=None):
                return run_inv(["-f", str(self.config(**(images or {}))), *args], timeout=900)

            def store(self, host) -> dict:
                path = hosts.private(host, "/var/lib/osk8s-standin") / "containerd" / "images.json"
                return json.loads(path.read_text()).get("k8s.io", {}) if path.exists() else {}

            def copies(self, host) -> int:
                """SFTP sessions the node's sshd served (LogLevel VERBOSE logs each subsystem request)."""
                log = hosts.workdir / f"{host.netns}_sshd.log"
                return log.read_text(errors="replace").count("Starting session: subsystem 'sftp'") if log.exists() else 0

            def imports(self, host) -> list[str]:
                return [c for c in calls(hosts, host) if re.match(r"ctr .*images import", c)]

        lab = Lab()
        lab.notes.write_text("release notes, not an image\n" * 50)
        lab.hosts = hosts
        yield lab


def out(r) -> str:
    return r.stdout + r.stderr


def nothing_on_the_nodes(lab, sftp_before: dict | None = None) -> None:
    for h in lab.nodes:
        assert lab.imports(h) == [] and lab.store(h) == {}, (h.name, calls(lab.hosts, h))
        if sftp_before is not None:  # not even a copy made and removed again
            assert lab.copies(h) == sftp_before[h.name], h.name


def sftp_sessions(lab) -> dict:
    return {h.name: lab.copies(h) for h in lab.nodes}


def test_a_node_without_containerd_is_refused_before_any_copy(lab):
    r = lab.inv(TASK, "--dry-run", str(lab.occm))
    assert r.returncode == 1 and "Traceback" not in out(r), out(r)
    assert "containerd is not installed on" in out(r) and "Fix: inv cluster.prepare-nodes" in out(r)
    nothing_on_the_nodes(lab)
    prepared = lab.inv("cluster.prepare-nodes")  # installs the containerd "package", ctr with it
    assert prepared.returncode == 0, out(prepared)[-3000:]


BAD = [
    ("a missing file", lambda lab: f"{lab.occm},{lab.occm.parent / 'occm-v2.tar'}", {}, ["occm-v2.tar: no such file. Fix:"]),
    (
        "not an image archive",
        lambda lab: f"{lab.notes},{lab.occm}",
        {},
        ["notes.txt: not an image archive containerd can import", "Fix: save the image by its name"],
    ),
    (
        "a local image in no archive",
        lambda lab: str(lab.occm),
        {"occm": "o8i/occm:other"},
        [
            "cluster.images.occm = 'o8i/occm:other' is a local build",
            "in none of the archives given (occm.tar)",
            "Fix: add its archive to the command",
        ],
    ),
]


@pytest.mark.parametrize("files, images, messages", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_input_is_refused_before_any_copy(lab, files, images, messages):
    """In a dry run (a regressed check could then still change nothing): the checks run for real."""
    before = sftp_sessions(lab)
    r = lab.inv(TASK, "--dry-run", files(lab), images=images)
    assert r.returncode == 1 and "Traceback" not in out(r), out(r)
    for m in messages:
        assert m in out(r), out(r)
    assert "nothing was copied" in out(r)
    nothing_on_the_nodes(lab, before)


def test_a_local_image_in_no_archive_is_refused_after_reading_the_nodes_and_before_any_copy(lab):
    """Not a dry run: this check needs every node's images, and still comes before the first copy."""
    before = sftp_sessions(lab)
    r = lab.inv(TASK, str(lab.occm), images={"occm": "o8i/occm:other"})
    assert r.returncode == 1 and "Traceback" not in out(r) and "is a local build" in out(r), out(r)
    nothing_on_the_nodes(lab, before)


def rows(text: str, outcome: str) -> list[str]:
    return re.findall(rf"^{re.escape(TASK)} image archive \S+\s+({LAB}-\S+)\s+{outcome}\s", text, re.M)


def test_dry_run_then_load_then_nothing_to_do(lab):
    names = sorted(h.name for h in lab.nodes)
    both = f"{lab.occm},{lab.ingress}"
    before = sftp_sessions(lab)
    dry = lab.inv(TASK, "--dry-run", both, images={"occm": f"o8i/occm:dev-{SUFFIX}"})
    assert dry.returncode == 0, out(dry)
    assert sorted(rows(dry.stdout, "would-change")) == sorted(names * 2), dry.stdout
    assert "(dry run: nothing was changed)" in dry.stdout and "copy occm.tar" in dry.stdout
    nothing_on_the_nodes(lab, before)

    first = lab.inv(TASK, both, images={"occm": f"o8i/occm:dev-{SUFFIX}"})
    assert first.returncode == 0, out(first)
    assert sorted(rows(first.stdout, "changed")) == sorted(names * 2), first.stdout
    sha = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (lab.occm, lab.ingress)}
    for h in lab.nodes:
        store = lab.store(h)
        assert store[OCCM]["labels"] == {"osk8s.io/archive": f"sha256:{sha['occm.tar']}"}, store
        assert store[INGRESS]["labels"] == {"osk8s.io/archive": f"sha256:{sha['ingress.tar']}"}, store
        imports = lab.imports(h)
        assert len(imports) == 2 and all(
            c.startswith("ctr -n k8s.io images import --label osk8s.io/archive=sha256:") for c in imports
        ), imports
        assert lab.copies(h) == before[h.name] + 1  # one SFTP session carried both copies: the check above sees copies
        copies = [c.split()[-1] for c in imports]
        assert all(c.startswith("/tmp/osk8s-image.") and not Path(c).exists() for c in copies), copies  # removed

    second = lab.inv(TASK, both, images={"occm": f"o8i/occm:dev-{SUFFIX}"})
    assert second.returncode == 0, out(second)
    assert f"{TASK}: {2 * len(names) + 3} ok, 0 failed" in second.stdout, second.stdout  # 2 archives + nodes row
    assert sorted(rows(second.stdout, "ok")) == sorted(names * 2) and not rows(second.stdout, "changed")
    for n in names:
        assert re.search(
            rf"image archive occm.tar\s+{n}\s+ok\s+\S+\s+{re.escape(OCCM)} already imported from occm.tar", second.stdout
        ), second.stdout
    assert all(len(lab.imports(h)) == 2 for h in lab.nodes)


def test_a_new_build_of_the_same_name_replaces_the_old_one(lab):
    if not all(OCCM in lab.store(h) for h in lab.nodes):
        pytest.skip("needs the images loaded by test_dry_run_then_load_then_nothing_to_do")
    new = docker_save(lab.occm.parent / "occm-new.tar", [f"o8i/occm:dev-{SUFFIX}"], payload=b"rebuilt\n")
    r = lab.inv(TASK, str(new))
    assert r.returncode == 0, out(r)
    assert len(rows(r.stdout, "changed")) == len(lab.nodes) and "another build" in r.stderr, out(r)
    sha = hashlib.sha256(new.read_bytes()).hexdigest()
    assert all(lab.store(h)[OCCM]["labels"]["osk8s.io/archive"] == f"sha256:{sha}" for h in lab.nodes)


def test_ctr_ls_as_containerd_prints_it(lab):
    """The stand-in's `ctr images ls` is byte for byte what containerd's listCommand prints for the
    same images (tests/peers/ctr_format, its format strings), so the tool's parser reads the real thing."""
    from tests.peers.ctr_format.run import ctr_ls

    node = lab.nodes[0]
    store = lab.store(node)
    if not store:
        pytest.skip("needs the images loaded by test_dry_run_then_load_then_nothing_to_do")
    gateway = lab.hosts.hosts[0]  # ctr run on the node over ssh from the gateway's namespace
    ssh = ["ip", "netns", "exec", gateway.netns, "ssh", "-F", str(lab.hosts.ssh_config), "-o", "BatchMode=yes", node.name]
    r = subprocess.run([*ssh, "sudo -n ctr -n k8s.io images ls"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    images = [
        {
            "name": n,
            "media_type": v["target"]["mediaType"],
            "digest": v["target"]["digest"],
            "size": v["size"],
            "platforms": v["platforms"],
            "labels": v["labels"],
        }
        for n, v in sorted(store.items())
    ]
    assert r.stdout == ctr_ls(images)
