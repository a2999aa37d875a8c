"""A pod's volumes (kubelet's volume manager): files written the AtomicWriter way
(pkg/volume/util/atomic_writer.go: `..<timestamp>` dir, `..data` symlink swapped by rename,
user-visible symlinks), secret and configMap payloads (pkg/volume/secret/secret.go and
pkg/volume/configmap MakePayload: items/defaultMode/optional), projected volumes
(pkg/volume/projected/projected.go collectData) with the ServiceAccount token from the TokenRequest
API bound to the pod (pkg/kubelet/token/token_manager.go: refreshed at 80% of its TTL or after
24 h; the token file 0600 and owned by the pod's single runAsUser, pkg/volume/util FsUserFrom),
downwardAPI, hostPath type checks (pkg/volume/hostpath), emptyDir, and a claim's CSI volume
(pkg/volume/csi: set up by the node plugin's stand-in, csinode.py).
"""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

from tests.peers.k8s.pods.client import ApiError, parse_time
from tests.peers.k8s.pods.errors import MountError

TOKEN_MAX_TTL = 24 * 3600.0

# ---------------------------------------------------------------------------------------------------
# AtomicWriter (pkg/volume/util/atomic_writer.go)


def atomic_write(target: Path, payload: dict[str, tuple[bytes, int, int | None]], fs_group: int | None = None) -> bool:
    """payload: {relative path: (data, mode, owner uid or None)}. Returns True when it wrote."""
    target.mkdir(parents=True, exist_ok=True)
    for p in payload:
        if p.startswith("/") or ".." in Path(p).parts or not p:
            raise MountError(f"invalid path {p!r}")
    data_link = target / "..data"
    old = os.readlink(data_link) if data_link.is_symlink() else ""
    if old:
        have = {}
        for dirpath, _, files in os.walk(target / old):
            for f in files:
                full = Path(dirpath) / f
                st = full.stat()
                have[str(full.relative_to(target / old))] = (full.read_bytes(), st.st_mode & 0o7777, st.st_uid)
        want = {
            p: (d, m | (0o440 if fs_group is not None else 0), 0 if u is None else u) for p, (d, m, u) in payload.items()
        }
        if have == want:
            _visible(target, payload)
            return False
    ts = Path(_mkdtemp(target, time.strftime("..%Y_%m_%d_%H_%M_%S.", time.gmtime())))
    os.chmod(ts, 0o755)
    for p, (data, mode, uid) in payload.items():
        full = ts / p
        full.parent.mkdir(parents=True, exist_ok=True)
        full.write_bytes(data)
        os.chmod(full, mode)
        if uid is not None:
            os.lchown(full, uid, -1)
        if fs_group is not None:  # volume.SetVolumeOwnership (read-only volume): group fsGroup, mode | 0440
            os.chown(full, -1, fs_group)
            os.chmod(full, mode | 0o440)
    if fs_group is not None:
        os.chown(ts, -1, fs_group)
    tmp_link = target / "..data_tmp"
    os.symlink(ts.name, tmp_link)
    os.rename(tmp_link, data_link)
    _visible(target, payload)
    want_top = {p.split("/", 1)[0] for p in payload}
    for entry in target.iterdir():
        if not entry.name.startswith("..") and entry.name not in want_top:
            entry.unlink()
    if old:
        shutil.rmtree(target / old, ignore_errors=True)
    return True


def _mkdtemp(parent: Path, prefix: str) -> str:
    import tempfile

    return tempfile.mkdtemp(prefix=prefix, dir=parent)


def _visible(target: Path, payload: dict) -> None:
    for p, (_, _, uid) in payload.items():
        top = p.split("/", 1)[0]
        link = target / top
        if not link.is_symlink():
            os.symlink(f"..data/{top}", link)
            if uid is not None:
                os.lchown(link, uid, -1)


def key_payload(
    data: dict[str, bytes], items: list[dict] | None, default_mode: int, optional: bool, what: str, user: int | None = None
) -> dict[str, tuple[bytes, int, int | None]]:
    """pkg/volume/secret/secret.go and configmap.go MakePayload."""
    if not items:
        return {k: (v, default_mode, user) for k, v in data.items()}
    out = {}
    for it in items:
        if it["key"] not in data:
            if optional:
                continue
            raise MountError(
                f"{what}: references non-existent {'config' if what.startswith('configmap') else 'secret'} key: {it['key']}"
            )
        out[it["path"]] = (data[it["key"]], it.get("mode", default_mode), user)
    return out


# ---------------------------------------------------------------------------------------------------


class Volumes:
    """PodWorker's part that sets up the pod's volumes."""

    def volume_path(self, vol: dict) -> Path:
        if "hostPath" in vol:
            return Path(vol["hostPath"]["path"])
        if "persistentVolumeClaim" in vol:  # set up by setup_volumes: .../kubernetes.io~csi/<pv>/mount
            return self.pvc_paths[vol["name"]]
        plugin = next(k for k in vol if k != "name")
        return self.dir / "volumes" / f"kubernetes.io~{re.sub(r'(?<!^)(?=[A-Z])', '-', plugin).lower()}" / vol["name"]

    def setup_volumes(self) -> None:
        """kubelet's volume manager: every volume of the pod set up (or re-read) before containers start."""
        spec = self.pod["spec"]
        psc = spec.get("securityContext") or {}
        fs_group = psc.get("fsGroup")
        fs_user = self._fs_user()
        base = self.dir / "volumes"
        base.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o750)
        for vol in spec.get("volumes") or []:
            name = vol["name"]
            path = self.volume_path(vol) if "persistentVolumeClaim" not in vol else None
            if "hostPath" in vol:
                self.check_host_path(vol["hostPath"])
            elif "emptyDir" in vol:
                if not path.exists():
                    path.mkdir(parents=True)
                    os.chmod(path, 0o777)  # emptyDir's perm
                    if fs_group is not None:
                        os.chown(path, -1, fs_group)
                        os.chmod(path, 0o2777)
            elif "secret" in vol:
                src = vol["secret"]
                obj = self._volume_object("secrets", src["secretName"], src.get("optional", False), name)
                data = self._data("secretRef", obj) if obj else {}
                payload = key_payload(
                    data,
                    src.get("items"),
                    src.get("defaultMode", 0o644),
                    src.get("optional", False),
                    f"secret {src['secretName']}",
                )
                atomic_write(path, payload, fs_group)
            elif "configMap" in vol:
                src = vol["configMap"]
                obj = self._volume_object("configmaps", src["name"], src.get("optional", False), name)
                data = self._data("configMapRef", obj) if obj else {}
                payload = key_payload(
                    data,
                    src.get("items"),
                    src.get("defaultMode", 0o644),
                    src.get("optional", False),
                    f"configmap {src['name']}",
                )
                atomic_write(path, payload, fs_group)
            elif "downwardAPI" in vol:
                src = vol["downwardAPI"]
                atomic_write(path, self.downward(src.get("items") or [], src.get("defaultMode", 0o644)), fs_group)
            elif "projected" in vol:
                atomic_write(path, self.projected(vol, fs_user, fs_group), fs_group)
            elif "persistentVolumeClaim" in vol:
                self.pvc_paths[name] = self.persistent_volume(name, vol["persistentVolumeClaim"])
            else:
                kind = next((k for k in vol if k != "name"), "?")
                raise MountError(
                    f'MountVolume.SetUp failed for volume "{name}" : osk8s pod runner: volume type {kind} is not supported'
                )

    def persistent_volume(self, name: str, src: dict) -> Path:
        """A PVC volume (pkg/volume/csi): the claim bound, its PV a CSI volume, which the CSI hook sets up;
        the pod's mount point is kubelet's pods/<uid>/volumes/kubernetes.io~csi/<pv>/mount."""
        try:
            pvc = self.api.get(f"/api/v1/namespaces/{self.ns}/persistentvolumeclaims/{src['claimName']}")
        except ApiError as e:
            raise MountError(f'persistentvolumeclaim "{src["claimName"]}" not found' if e.status == 404 else str(e)) from e
        pv_name = (pvc.get("spec") or {}).get("volumeName")
        if (pvc.get("status") or {}).get("phase") != "Bound" or not pv_name:
            raise MountError(f'persistentvolumeclaim "{src["claimName"]}" is not bound')
        pv = self.api.get(f"/api/v1/persistentvolumes/{pv_name}")
        if "csi" not in pv.get("spec", {}) or self.runner.csi is None:
            kind = next(
                (
                    k
                    for k in pv.get("spec", {})
                    if k
                    not in (
                        "capacity",
                        "accessModes",
                        "claimRef",
                        "persistentVolumeReclaimPolicy",
                        "storageClassName",
                        "volumeMode",
                        "nodeAffinity",
                        "mountOptions",
                    )
                ),
                "?",
            )
            raise MountError(
                f'MountVolume.SetUp failed for volume "{pv_name}" : osk8s pod runner: {kind} volumes are not supported'
            )
        source = self.runner.csi(self.pod, name, pv)
        mount = self.dir / "volumes" / "kubernetes.io~csi" / pv_name / "mount"
        mount.parent.mkdir(parents=True, exist_ok=True)
        if not mount.is_symlink() or os.readlink(mount) != str(source):
            mount.unlink(missing_ok=True)
            os.symlink(source, mount)
        return mount

    def _fs_user(self) -> int | None:
        """pkg/volume/util FsUserFrom: the one runAsUser every container has, else None."""
        spec, users = self.pod["spec"], set()
        psc = spec.get("securityContext") or {}
        for c in spec.get("initContainers", []) + spec.get("containers", []):
            u = (c.get("securityContext") or {}).get("runAsUser", psc.get("runAsUser"))
            if u is None:
                return None
            users.add(u)
        return users.pop() if len(users) == 1 else None

    def _volume_object(self, plural: str, name: str, optional: bool, vol: str) -> dict | None:
        try:
            return self.api.get(f"/api/v1/namespaces/{self.ns}/{plural}/{name}")
        except ApiError as e:
            if e.status == 404 and optional:
                return None
            what = "secret" if plural == "secrets" else "configmap"
            detail = f'{what} "{name}" not found' if e.status == 404 else str(e)
            raise MountError(f'MountVolume.SetUp failed for volume "{vol}" : {detail}') from e

    def check_host_path(self, hp: dict) -> None:
        """pkg/volume/hostpath checkType."""
        path, kind = Path(hp["path"]), hp.get("type", "")
        if kind == "DirectoryOrCreate" and not path.exists():
            path.mkdir(parents=True, mode=0o755)
        elif kind == "FileOrCreate" and not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch(mode=0o644)
        checks = {
            "Directory": path.is_dir,
            "DirectoryOrCreate": path.is_dir,
            "File": path.is_file,
            "FileOrCreate": path.is_file,
            "Socket": path.is_socket,
            "CharDevice": path.is_char_device,
            "BlockDevice": path.is_block_device,
        }
        if kind in checks and not checks[kind]():
            what = {"DirectoryOrCreate": "directory", "FileOrCreate": "file"}.get(kind, kind.lower())
            raise MountError(f"MountVolume.SetUp failed : hostPath type check failed: {path} is not a {what}")

    def downward(self, items: list[dict], default_mode: int) -> dict:
        out = {}
        for it in items:
            if "fieldRef" in it:
                value = self.field(it["fieldRef"]["fieldPath"])
            else:
                spec = it["resourceFieldRef"]
                ctr = next((c for c in self.pod["spec"]["containers"] if c["name"] == spec.get("containerName")), None)
                value = self.resource_field(spec, ctr)
            out[it["path"]] = (value.encode(), it.get("mode", default_mode), None)
        return out

    def projected(self, vol: dict, fs_user: int | None, fs_group: int | None) -> dict:
        src = vol["projected"]
        mode = src.get("defaultMode", 0o644)
        out: dict = {}
        for s in src.get("sources") or []:
            if "secret" in s or "configMap" in s:
                kind = "secret" if "secret" in s else "configMap"
                ref = s[kind]
                plural = "secrets" if kind == "secret" else "configmaps"
                obj = self._volume_object(plural, ref["name"], ref.get("optional", False), vol["name"])
                data = self._data("secretRef" if kind == "secret" else "configMapRef", obj) if obj else {}
                out.update(
                    key_payload(data, ref.get("items"), mode, ref.get("optional", False), f"{kind.lower()} {ref['name']}")
                )
            elif "downwardAPI" in s:
                out.update(self.downward(s["downwardAPI"].get("items") or [], mode))
            elif "serviceAccountToken" in s:
                tp = s["serviceAccountToken"]
                token = self.service_account_token(vol["name"], tp)
                out[tp["path"]] = (token.encode(), 0o600 if fs_user is not None or fs_group is not None else mode, fs_user)
            else:
                raise MountError(
                    f'MountVolume.SetUp failed for volume "{vol["name"]}" : osk8s pod runner: projected '
                    f"source {list(s)} is not supported"
                )
        return out

    def service_account_token(self, vol: str, tp: dict) -> str:
        """pkg/kubelet/token/token_manager.go: a TokenRequest bound to the pod, cached until 80% of its TTL
        (or 24 h) has passed."""
        key = f"{vol}/{tp['path']}"
        now = time.time()
        if key in self.tokens:
            token, issued, expires = self.tokens[key]
            ttl = tp.get("expirationSeconds", 3600)
            if now < expires - ttl * 0.2 and now < issued + TOKEN_MAX_TTL:
                return token
        sa = self.pod["spec"].get("serviceAccountName") or "default"
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "audiences": [tp["audience"]] if tp.get("audience") else None,
                "expirationSeconds": tp.get("expirationSeconds", 3600),
                "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": self.name, "uid": self.uid},
            },
        }
        try:
            tr = self.api.request("POST", f"/api/v1/namespaces/{self.ns}/serviceaccounts/{sa}/token", body)
        except ApiError as e:
            raise MountError(f'MountVolume.SetUp failed for volume "{vol}" : failed to fetch token: {e}') from e
        token = tr["status"]["token"]
        expires = parse_time(tr["status"]["expirationTimestamp"])
        self.tokens[key] = (token, now, expires)
        return token
