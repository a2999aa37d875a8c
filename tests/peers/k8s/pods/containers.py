"""What a container is started with (the CRI container config kubelet builds and containerd turns
into an OCI spec): argv as containerd merges command/args with the image's ENTRYPOINT/CMD
(its CRI plugin's WithProcessArgs); go-runner's flags and preamble (registry.k8s.io/build-image/
go-runner, k8s.io/component-base logs/kube-log-runner); runAsUser/runAsGroup/supplementalGroups/
fsGroup and runAsNonRoot (pkg/kubelet/kuberuntime/security_context_others.go, verifyRunAsNonRoot);
containerd's default capability set (pkg/oci/spec.go defaultUnixCaps) with capabilities add/drop;
/etc/hosts as kubelet writes it (pkg/kubelet/kubelet_pods.go managedHostsFileContent,
nodeHostsFileContent); the volume mounts with subPath/subPathExpr and mount propagation
(kubelet_pods.go makeMounts). /etc/resolv.conf is the node's: dnsPolicy ClusterFirst falls back
to Default when the kubelet has no clusterDNS (pkg/kubelet/network/dns/dns.go); there is no
cluster DNS here.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from tests.peers.k8s.pods.envvars import expand
from tests.peers.k8s.pods.errors import ConfigError
from tests.peers.k8s.pods.images import GO_RUNNER, IMAGES, ImageConfig, _digest, applets, split_image
from tests.peers.k8s.pods.state import Ctr

ROOT = Path(__file__).resolve().parents[4]  # the repository: Python stand-ins run from it

# containerd's default capability set (pkg/oci/spec.go, defaultUnixCaps), kept by unprivileged containers
CAPS = {
    n: i
    for i, n in enumerate(
        (
            "CHOWN",
            "DAC_OVERRIDE",
            "DAC_READ_SEARCH",
            "FOWNER",
            "FSETID",
            "KILL",
            "SETGID",
            "SETUID",
            "SETPCAP",
            "LINUX_IMMUTABLE",
            "NET_BIND_SERVICE",
            "NET_BROADCAST",
            "NET_ADMIN",
            "NET_RAW",
            "IPC_LOCK",
            "IPC_OWNER",
            "SYS_MODULE",
            "SYS_RAWIO",
            "SYS_CHROOT",
            "SYS_PTRACE",
            "SYS_PACCT",
            "SYS_ADMIN",
            "SYS_BOOT",
            "SYS_NICE",
            "SYS_RESOURCE",
            "SYS_TIME",
            "SYS_TTY_CONFIG",
            "MKNOD",
            "LEASE",
            "AUDIT_WRITE",
            "AUDIT_CONTROL",
            "SETFCAP",
            "MAC_OVERRIDE",
            "MAC_ADMIN",
            "SYSLOG",
            "WAKE_ALARM",
            "BLOCK_SUSPEND",
            "AUDIT_READ",
            "PERFMON",
            "BPF",
            "CHECKPOINT_RESTORE",
        )
    )
}
DEFAULT_CAPS = (
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
)

PASSWD = (
    "root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n"
    "nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"
)  # distroless /etc/passwd
GROUP = "root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\ntty:x:5:\n"


class Containers:
    """PodWorker's part that builds a container's config (see the module docstring)."""

    # -- container config ------------------------------------------------------------------------------
    def container_spec(self, c: Ctr) -> dict:
        pod, spec = self.pod, c.spec
        psc, csc = pod["spec"].get("securityContext") or {}, spec.get("securityContext") or {}
        for hook in ("postStart", "preStop"):
            if (spec.get("lifecycle") or {}).get(hook):
                raise ConfigError(f"osk8s pod runner: lifecycle.{hook} is not supported")
        repo, _ = split_image(spec["image"])
        target = self.runner.images[repo]
        image = IMAGES.get(repo, ImageConfig())
        c.image_id = f"{repo}@sha256:{_digest(target)}"
        env = self.environment(c)
        command = [expand(a, env) for a in spec.get("command") or []]
        args = [expand(a, env) for a in spec.get("args") or []]
        if not command:  # containerd WithProcessArgs
            args = args or list(image.cmd)
            command = list(image.entrypoint)
        argv = command + args
        if not argv:
            raise ConfigError("no command specified")
        workdir = spec.get("workingDir") or image.workdir
        uid = csc.get("runAsUser", psc.get("runAsUser", image.user))
        # the image's /etc/passwd (distroless) gives a known user's group; containerd uses 0 otherwise
        gid = csc.get("runAsGroup", psc.get("runAsGroup", {0: 0, 65532: 65532, 65534: 65534}.get(uid, 0)))
        if csc.get("runAsNonRoot", psc.get("runAsNonRoot")) and uid == 0:  # kubelet verifyRunAsNonRoot
            raise ConfigError(
                "container has runAsNonRoot and image will run as root "
                f'(pod: "{self.name}_{self.ns}({self.uid})", container: {c.name})'
            )
        groups = list(psc.get("supplementalGroups") or []) + ([psc["fsGroup"]] if "fsGroup" in psc else [])
        c.user = (uid, gid, groups)
        full_env = dict(image.env)
        full_env["HOSTNAME"] = self.hostname()
        full_env.setdefault("HOME", "/root" if uid == 0 else "/")
        full_env.update(env)
        c.env = full_env
        result = {
            "root": str(self.dir / "root"),
            "hostname": self.hostname(),
            "env": full_env,
            "cwd": workdir,
            "uid": uid,
            "gid": gid,
            "groups": groups,
            "mounts": [],
            "files": {},
        }
        # go-runner (component-base logs/kube-log-runner): flags, then the command it runs
        c.go_runner = bool(argv and argv[0] == GO_RUNNER and image.entrypoint == (GO_RUNNER,))
        binary_path = image.binary
        if c.go_runner:
            argv = self.go_runner(argv, result, binary_path)
        elif image.applets:  # a multi-call binary: argv[0] is looked up on PATH among its applets at exec
            result["mounts"] += [
                {"kind": "symlink", "target": f"{os.path.dirname(binary_path)}/{a}", "to": os.path.basename(binary_path)}
                for a in applets(target)
            ]
        elif binary_path is not None and self._resolve(argv[0], workdir, full_env) != binary_path:
            result["fail"] = {"start_error": f'exec: "{argv[0]}": stat {argv[0]}: no such file or directory'}
        if binary_path is None:  # an image we know nothing of: its program is where argv[0] says
            binary_path = self._resolve(argv[0], workdir, full_env)
        if isinstance(target, list):
            result["argv"] = target + argv[1:]
            result["mounts"] += self.standin_mounts(target)
        else:
            result["argv"] = argv
            result["mounts"].append({"kind": "bind", "source": str(target), "target": binary_path, "ro": True})
            for d in image.libs:  # merged /usr: /lib and /lib64 are links into /usr, as on the host
                result["mounts"].append({"kind": "bind", "source": d, "target": d, "ro": True})
            result["mounts"] += [
                {"kind": "symlink", "target": d, "to": os.readlink(d)}
                for d in ("/lib", "/lib64")
                if image.libs and os.path.islink(d)
            ]
        result["mounts"] += self.base_mounts(c) + self.volume_mounts(c, env)
        privileged = bool(csc.get("privileged"))
        caps = set(CAPS) if privileged else set(DEFAULT_CAPS)
        capspec = csc.get("capabilities") or {}
        for name in capspec.get("drop") or []:
            caps = set() if name.upper() == "ALL" else caps - {name.upper().removeprefix("CAP_")}
        for name in capspec.get("add") or []:
            caps = set(CAPS) if name.upper() == "ALL" else caps | {name.upper().removeprefix("CAP_")}
        result["caps"] = sorted(CAPS[n] for n in caps if n in CAPS)
        result["no_new_privs"] = csc.get("allowPrivilegeEscalation") is False
        result["readonly_root"] = bool(csc.get("readOnlyRootFilesystem"))
        result["privileged"] = privileged
        result["files"]["/etc/passwd"] = PASSWD
        result["files"]["/etc/group"] = GROUP
        return result

    @staticmethod
    def _resolve(arg0: str, workdir: str, env: dict) -> str:
        if "/" in arg0:
            return os.path.normpath(os.path.join(workdir, arg0))
        for d in env.get("PATH", "").split(":"):
            if d:
                return os.path.join(d, arg0)  # the first PATH entry is where a single-binary image would have it
        return "/" + arg0

    def go_runner(self, argv: list[str], result: dict, binary: str | None) -> list[str]:
        """Parse go-runner's flags as Go's flag package does; its child is the container's program."""
        flags = {
            "flush-interval": "0s",
            "log-file": "",
            "log-file-size": "0",
            "log-file-age": "0s",
            "also-stdout": "false",
            "redirect-stderr": "true",
        }
        bools = {"also-stdout", "redirect-stderr"}
        rest, i = argv[1:], 0
        while i < len(rest):
            a = rest[i]
            if a == "--":
                i += 1
                break
            if len(a) < 2 or a[0] != "-":
                break
            name = a.lstrip("-")
            name, has_value, value = name.partition("=")
            if name not in flags:
                result["fail"] = {"message": f"flag provided but not defined: -{name}", "code": 2}
                return argv
            if name in bools:
                flags[name] = value if has_value else "true"
            elif has_value:
                flags[name] = value
            elif i + 1 < len(rest):
                i += 1
                flags[name] = rest[i]
            else:
                result["fail"] = {"message": f"flag needs an argument: -{name}", "code": 2}
                return argv
            i += 1
        child = rest[i:]
        stamp = time.strftime("%Y/%m/%d %H:%M:%S")
        if not child:
            result["fail"] = {"message": f"{stamp} not enough arguments to run", "code": 1}
            return argv
        if flags["log-file"]:
            raise ConfigError("osk8s pod runner: go-runner --log-file is not emulated")
        result["merge_stderr"] = flags["redirect-stderr"] == "true"
        result["go_runner_preamble"] = [
            f"{stamp} Running command:",
            f"Command env: (enable-flush={flags['flush-interval'] != '0s'}, log-file=, "
            f"log-file-size=0, log-file-age=0s, also-stdout={flags['also-stdout']}, "
            f"redirect-stderr={flags['redirect-stderr']})".replace("True", "true").replace("False", "false"),
            "Run from directory: ",
            f"Executable path: {child[0]}",
            f"Args (comma-delimited): {','.join(child)}",
            f"{stamp} Now listening for interrupts",
        ]
        if binary is not None and self._resolve(child[0], result["cwd"], result["env"]) != binary:
            result["fail"] = {
                "message": f"{stamp} starting command: fork/exec {child[0]}: no such file or directory",
                "code": 1,
            }
        return child

    def hostname(self) -> str:
        spec = self.pod["spec"]
        if spec.get("hostNetwork"):
            return self.runner.node_name
        return (spec.get("hostname") or self.name)[:63].rstrip("-.")

    # -- mounts --------------------------------------------------------------------------------------------
    def base_mounts(self, c: Ctr) -> list[dict]:
        pod_etc = self.dir / "etc"
        pod_etc.mkdir(parents=True, exist_ok=True)
        spec = self.pod["spec"]
        if spec.get("hostNetwork"):  # nodeHostsFileContent
            hosts = "# Kubernetes-managed hosts file (host network).\n" + Path("/etc/hosts").read_text()
        else:  # managedHostsFileContent
            name = self.hostname()
            sub = spec.get("subdomain")
            fqdn = f"{name}.{sub}.{self.ns}.svc.cluster.local\t{name}" if sub else name
            hosts = (
                "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
                "fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n"
                f"{self.runner.node_ip}\t{fqdn}\n"
            )
        aliases = spec.get("hostAliases") or []
        if aliases:
            hosts += "\n# Entries added by HostAliases.\n" + "".join(
                f"{a['ip']}\t{chr(9).join(a.get('hostnames', []))}\n" for a in aliases
            )
        (pod_etc / "hosts").write_text(hosts)
        (pod_etc / "resolv.conf").write_text(
            Path("/etc/resolv.conf").read_text() if Path("/etc/resolv.conf").exists() else ""
        )
        return [
            {"kind": "bind", "source": str(pod_etc / "hosts"), "target": "/etc/hosts", "ro": False},
            {"kind": "bind", "source": str(pod_etc / "resolv.conf"), "target": "/etc/resolv.conf", "ro": False},
            {"kind": "bind", "source": "/etc/ssl/certs", "target": "/etc/ssl/certs", "ro": True},
        ]

    @staticmethod
    def standin_mounts(argv: list[str]) -> list[dict]:
        """A Python stand-in's 'image': the host's /usr and /lib* and the repository, read-only."""
        mounts = [
            {"kind": "bind", "source": d, "target": d, "ro": True}
            for d in ("/usr", "/lib", "/lib64", "/etc/alternatives")
            if os.path.isdir(d) and not os.path.islink(d)
        ]
        mounts += [
            {"kind": "symlink", "target": d, "to": os.readlink(d)}
            for d in ("/bin", "/sbin", "/lib", "/lib64")
            if os.path.islink(d)
        ]
        dirs = {str(ROOT), sys.base_prefix, sys.prefix}  # the repository and the interpreter's installation
        for a in argv:
            if a.startswith("/") and os.path.exists(a) and not a.startswith(("/usr/", str(ROOT) + "/")):
                dirs.add(os.path.dirname(a))
        mounts += [{"kind": "bind", "source": d, "target": d, "ro": True} for d in sorted(dirs)]
        return mounts

    def volume_mounts(self, c: Ctr, env: dict) -> list[dict]:
        vols = {v["name"]: v for v in self.pod["spec"].get("volumes") or []}
        out = []
        for vm in c.spec.get("volumeMounts") or []:
            vol = vols.get(vm["name"])
            if vol is None:
                raise ConfigError(f'cannot find volume "{vm["name"]}" to mount into container "{c.name}"')
            source = self.volume_path(vol)
            sub = vm.get("subPath") or (expand(vm["subPathExpr"], env) if vm.get("subPathExpr") else "")
            if sub:
                if sub.startswith("/") or ".." in Path(sub).parts:
                    raise ConfigError(f"invalid subpath {sub!r}")
                source = source / sub
                if not source.exists() and not source.is_symlink():
                    source.mkdir(parents=True, mode=0o755)
            prop = vm.get("mountPropagation", "None")
            if prop == "Bidirectional" and not (c.spec.get("securityContext") or {}).get("privileged"):
                raise ConfigError("Bidirectional mount propagation is available only to privileged containers")
            out.append(
                {
                    "kind": "bind",
                    "source": str(source),
                    "target": vm["mountPath"],
                    "ro": bool(vm.get("readOnly")),
                    "propagation": prop,
                }
            )
        return out
