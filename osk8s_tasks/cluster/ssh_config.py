"""The nodes' ssh_config, from OpenStack: each node's floating IP, the lab key, and host keys read
from the server's console (cloud-init prints them there), so the first SSH connection to a node is
already checked against a key the cloud vouched for."""

from __future__ import annotations

from pathlib import Path

from osk8s_tasks.cluster.facts import parse_console_host_keys
from osk8s_tasks.core import lab
from osk8s_tasks.core.engine import Status, Step, StepFailed
from osk8s_tasks.core.files import write_private
from osk8s_tasks.openstack import clouds as cloud
from osk8s_tasks.openstack.servers import server_of


def host_block(name: str, address: str, user: str, key, known) -> str:
    return (
        f"Host {name}\n  HostName {address}\n  User {user}\n  IdentityFile {key}\n  IdentitiesOnly yes\n"
        f"  UserKnownHostsFile {known}\n  StrictHostKeyChecking yes\n"
    )


def ssh_config_steps(s) -> list[Step]:
    if s.settings.cluster.ssh_config:  # the user's own file: read, never written
        return [own_ssh_config_step(s.settings.cluster.ssh_config)]
    path, known = lab.nodes_ssh_config(s.settings), lab.nodes_known_hosts(s.settings)
    clouds = cloud.Clouds(s.settings)
    names = lab.node_names(s.settings)

    def wanted() -> tuple[str, str]:
        blocks, hosts = [], []
        for name in names:
            srv = server_of(clouds, name)
            if srv is None:
                raise StepFailed(f"server {name} does not exist. Fix: inv openstack.servers")
            port = next(iter(clouds.main.network.ports(device_id=srv.id)), None)
            fip = next(iter(clouds.main.network.ips(port_id=port.id)), None) if port else None
            if fip is None:
                raise StepFailed(f"server {name} has no floating IP. Fix: inv openstack.servers")
            keys = parse_console_host_keys(clouds.main.compute.get_server_console_output(srv)["output"])
            if not keys:
                raise StepFailed(
                    f"{name}: no SSH host keys on its console yet (cloud-init prints them when it is done). "
                    "Fix: wait for the server to finish booting, then run cluster.ssh-config again"
                )
            hosts += [f"{fip.floating_ip_address} {k}" for k in keys]
            blocks.append(
                host_block(name, fip.floating_ip_address, s.settings.cluster.ssh_user, lab.private_key(s.settings), known)
            )
        return "".join(blocks), "".join(f"{h}\n" for h in hosts)

    def check():
        config, hosts = wanted()
        ok = path.exists() and path.read_text() == config and known.exists() and known.read_text() == hosts
        return Status(
            ok,
            f"{path.name}: {len(names)} nodes, host keys from their consoles"
            if ok
            else f"{path.name} missing or out of date",
            "" if ok else f"write {path} and {known.name}",
        )

    def apply():
        config, hosts = wanted()
        write_private(known, hosts)
        write_private(path, config)

    return [Step("nodes ssh_config", check, apply)]


def own_ssh_config_step(configured: str) -> Step:
    """cluster.ssh_config set: the nodes are reached through that file, which stays as it is."""
    path = Path(configured).expanduser()

    def check():
        if not path.is_file():
            raise StepFailed(
                f"cluster.ssh_config = {configured!r} does not exist. Fix: write it, or unset cluster.ssh_config "
                "to have cluster.ssh-config write the nodes' ssh_config from OpenStack"
            )
        return Status(True, f"cluster.ssh_config is your own file {path}: nothing written (unset it to have it written)")

    return Step("nodes ssh_config", check, None)
