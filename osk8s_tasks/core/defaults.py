"""Every configuration key osk8s reads, with its default: the namespace defaults of Invoke's
config chain (defaults < /etc/invoke.yaml < ~/.invoke.yaml < project invoke.yaml < INVOKE_* env
< -f FILE < task flags).

Every key is declared here, even as None: Invoke only maps an ``INVOKE_*`` environment variable
onto a key that exists. This module imports nothing heavy, so ``inv --list`` stays fast; the typed
model that validates these values lives in :mod:`osk8s_tasks.config`.
"""

# The one place where versions are pinned. Change them here or override them in config.
# Each is the newest release seen to exist (devstack's stable/2026.1 branch and
# cloud-provider-openstack v1.36.0, whose OCCM supports the next Kubernetes minor).
VERSIONS = {
    "kubernetes": "1.37.2",  # the newest 1.37 patch (also what the test peers build from k8s.io/kubernetes)
    "openstack_branch": "stable/2026.1",
    "cloud_provider_openstack": "v1.36.0",
    "calico": "v3.31.0",
    # What the tool applies or trusts from the network is checked before use: sha256 of Calico's
    # manifests/calico.yaml at that tag, and the fingerprint of pkgs.k8s.io's Release.key
    # ("isv:kubernetes OBS Project", the key of every core:/stable:/v1.x repository).
    "calico_manifest_sha256": "1990b1cec14002790718bb960b1b8445eb7b896cd16c32e952309f35a9026981",
    "kubernetes_apt_key_fingerprint": "DE15B14486CD377B9E876E1A234654DA9A296436",
    # CSI sidecars, as cloud-provider-openstack v1.36.0's manifests pin them, but the attacher:
    # v4.10.0's source is not served on the Go module proxy, so the tests could not run the
    # program the lab would; v4.12.0 is the nearest release that is
    "csi_attacher": "v4.12.0",
    "csi_provisioner": "v5.3.0",
    "csi_resizer": "v1.14.0",
    "csi_snapshotter": "v8.4.0",
    "csi_livenessprobe": "v2.17.0",
    "csi_node_driver_registrar": "v2.15.0",
    # verify workloads: Kubernetes' own e2e test images (agnhost serve-hostname answers HTTP with its
    # pod name; busybox writes and reads the PVC's file)
    "agnhost": "2.53",
    "busybox": "1.36.1-1",
    "box": "cloud-image/ubuntu-24.04",
    "box_version": None,
}

DEFAULTS = {
    "lab": {
        # DNS-1123 label: also the libvirt domain name, the VM hostname and the prefix of every
        # OpenStack and Kubernetes object the lab creates.
        "name": "osk8s",
        "state_dir": None,  # None: <project>/.osk8s
        # full: the lab VM (vagrant-libvirt), DevStack on it, real Nova servers as the nodes.
        # embedded: everything on this machine, no VM and no internet (osk8s_tasks/embedded): the
        # loopback OpenStack control plane, simulated nodes, the real Kubernetes control plane and
        # cloud controllers; no data plane (verify skips those checks, saying so).
        "kind": "full",
    },
    "log": {
        "json": None,  # a file that gets every log event as one JSON object a line
    },
    "versions": VERSIONS,
    "host": {
        "driver": "kvm",  # kvm | qemu (TCG: no hardware virtualization needed, slow)
        "cpu_mode": None,  # None: host-passthrough for kvm, maximum for qemu
        "nested": True,
        "box": None,  # None: versions.box
        "box_version": None,  # None: versions.box_version
        "box_url": None,  # file or URL of a .box to add when the box is missing
        "memory": 12288,  # MiB
        "cpus": 4,
        "disk_gb": 60,  # None: the box's own disk size
        "libvirt_uri": "qemu:///system",
        "storage_pool": "default",
        "management_network": {"name": "vagrant-libvirt", "address": "192.168.121.0/24"},
        "install_plugin": False,  # allow host.check/host.up to run `vagrant plugin install vagrant-libvirt`
        "boot_timeout": 900,  # seconds vagrant waits for SSH (TCG boots slowly)
        "vagrantfile": None,  # None: the project's top-level Vagrantfile
    },
    "devstack": {
        "ssh_target": None,  # None: the lab VM from host.up; else a Host alias in devstack.ssh_config
        "ssh_config": None,  # None: ~/.ssh/config (used with ssh_target only)
        "repo": "https://opendev.org/openstack/devstack",
        "branch": None,  # None: versions.openstack_branch
        "dest": "/opt/stack",
        "packages": ["git", "curl", "sudo", "python3"],
        "octavia_provider": "amphora",  # amphora | ovn
        "amphora_image": None,  # a prebuilt amphora qcow2 on the VM: skips the slow image build
        "cinder_lvm_size": "24G",
        "enable_barbican": False,
        "patches": [],  # file names under devstack/patches/ (or absolute paths)
        "stack_timeout": 7200,  # seconds devstack.stack waits for stack.sh before giving up waiting
        "watchdog": {
            # While stack.sh runs, each devstack@<unit> that exists must be active and its API must
            # answer (any HTTP status below 500); unhealthy for unhealthy_seconds -> systemctl restart.
            "services": [
                {"unit": "keystone", "url": "http://{host_ip}/identity/v3"},
                {"unit": "g-api", "url": "http://{host_ip}/image"},
                {"unit": "neutron-api", "url": "http://{host_ip}/networking"},
                {"unit": "n-api", "url": "http://{host_ip}/compute"},
                {"unit": "n-api-meta", "url": "http://{host_ip}:8775/"},  # cloud-init's SSH key source
                {"unit": "c-api", "url": "http://{host_ip}/volume"},
                {"unit": "o-api", "url": "http://{host_ip}/load-balancer"},
            ],
            "unhealthy_seconds": 120,
            "interval": 15,
        },
    },
    "openstack": {
        "clouds_yaml": None,  # None: .osk8s/<lab>/clouds.yaml when devstack.stack wrote it, else
        #                       openstacksdk's own search (OS_CLIENT_CONFIG_FILE, ~/.config/openstack)
        "cloud": "devstack",  # the clouds.yaml entry the cluster lives in (the demo project)
        "admin_cloud": "devstack-admin",  # for the flavor
        "flavor": {"name": None, "ram": 4096, "vcpus": 2, "disk": 20},  # name None: <lab>-k8s
        "image": {"name": "ubuntu-24.04", "url": None, "file": None, "checksum": None, "disk_format": "qcow2"},
        "keypair": None,  # None: <lab>-key (private key in .osk8s/<lab>/id_ed25519, 0600)
        "security_group": None,  # None: <lab>-k8s
        "network": "private",
        "subnet": "private-subnet",
        "router": "router1",
        "external_network": "public",
        "nodeport_range": "30000-32767",
        # who may reach the nodes' SSH, API and NodePorts: None = the external network's subnets
        # and the nodes' subnet (never 0.0.0.0/0 unless listed here)
        "allowed_cidrs": None,
        "app_credential": True,  # an application credential for the cloud provider (not a password)
        "server_timeout": 600,
        "boot_concurrency": 4,  # servers created at once (checks always run concurrently)
        # boot the nodes with a config drive: cloud-init (and cinder-csi's node service) read the
        # SSH key and instance ID from it even where the metadata API is missing or unreachable
        "config_drive": True,
    },
    "cluster": {
        "nodes": [
            {"name": "master", "role": "control-plane"},
            {"name": "worker-1", "role": "worker"},
        ],
        "ssh_user": "ubuntu",
        "ssh_config": None,  # None: .osk8s/<lab>/nodes_ssh_config, written by cluster.ssh-config
        "api_server": None,  # None: an SSH forward to the control plane through the jump host
        "pod_subnet": "10.244.0.0/16",
        "service_subnet": "10.96.0.0/12",
        "cni": "calico",
        "lb_provider": "amphora",  # amphora | ovn
        "manage_security_groups": True,
        "create_monitor": True,
        # the add-ons' images: None = cloud-provider-openstack's own at versions.cloud_provider_openstack.
        # Another image is a local build that `inv cluster.load-images FILE...` put on every node
        # (the nodes cannot pull it); its add-on gets imagePullPolicy: IfNotPresent
        "images": {"occm": None, "cinder_csi": None, "octavia_ingress": None, "keystone_auth": None},
    },
    "embedded": {  # lab.kind embedded only (osk8s_tasks/embedded)
        "workers": 1,  # simulated worker nodes besides the control plane
    },
    "verify": {
        "checks": ["lb", "pv", "ingress", "keystone"],
        "keep": False,  # leave the test objects in place (verify.destroy removes them later)
        "timeout": 600,  # seconds each wait may take (an Octavia amphora LB takes minutes under TCG)
        "namespace": "osk8s-verify",  # the Kubernetes namespace of the test objects
        "viewer_role": "k8s-viewer",  # Keystone role the k8s-keystone-auth policy lets read pods
        "keystone_user_cloud": None,  # clouds.yaml entry of the Keystone user verify.keystone acts as
        #                               (None: openstack.cloud, DevStack's demo user)
    },
}


def namespace_defaults(tree: dict = DEFAULTS) -> dict:
    """DEFAULTS with every leaf None: declares each key for Invoke (so an INVOKE_* variable maps
    onto it) and leaves all typing and defaulting to :mod:`osk8s_tasks.config`. Invoke's own env
    casting would turn INVOKE_HOST_NESTED=no into True and crash on INVOKE_HOST_MEMORY=abc."""
    return {k: namespace_defaults(v) if isinstance(v, dict) else None for k, v in tree.items()}
