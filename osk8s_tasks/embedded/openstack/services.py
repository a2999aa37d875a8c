"""How each service of the loopback control plane is configured and started (see loopback.py)."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def _absolute(variable: str, default: str) -> Path:
    """A directory from the environment: empty means the default, a relative path is refused (start()
    removes BASE: with `OSK8S_OPENSTACK_BASE=` read as Path("") it would empty the working directory)."""
    path = Path(os.environ.get(variable) or default)
    if not path.is_absolute():
        raise SystemExit(f"{variable}={path}: not an absolute path. Fix: give an absolute directory, or unset it")
    return path


BASE = _absolute("OSK8S_OPENSTACK_BASE", "/var/lib/osk8s-openstack")
VENV = _absolute("OSK8S_OPENSTACK_VENV", "/var/cache/osk8s-test/openstack-venv")
HERE = Path(__file__).resolve().parent
PACKAGES = [
    "keystone==30.0.0",
    "glance==33.0.0",
    "openstack-placement==16.0.0",
    "nova==34.0.0",
    "neutron==29.0.0",
    "cinder==29.0.0",
    "octavia==19.0.0",
    "gunicorn",
    "fixtures",
]
PORTS = {"keystone": 5000, "glance": 9292, "placement": 8778, "nova": 8774, "neutron": 9696, "cinder": 8776, "octavia": 9876}
ADMIN_PW, SERVICE_PW, DEMO_PW = "adminpw", "servicepw", "demopw"
RABBIT = "rabbit://guest:guest@127.0.0.1:5672/"
KS = f"http://127.0.0.1:{PORTS['keystone']}"
COMPUTE_HOST = "osk8s-compute"


def log(msg: str) -> None:
    print(f"[openstack {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def v(tool: str) -> str:
    return str(VENV / "bin" / tool)


def wal(directory: Path) -> None:
    """sqlite in write-ahead-log mode (kept in the file): readers stop blocking the writer ("database is locked")."""
    for db in sorted(directory.glob("*.db")):
        with sqlite3.connect(db) as conn:
            conn.execute("PRAGMA journal_mode=WAL")


def run(*cmd, env=None, cwd=None):
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env={**os.environ, **(env or {})}, cwd=cwd)
    if r.returncode:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed: {(r.stderr or r.stdout)[-1500:]}")
    return r.stdout


def auth_section(name: str) -> str:
    return (
        f"[{name}]\nauth_url = {KS}\nauth_type = password\nusername = service\npassword = {SERVICE_PW}\n"
        "project_name = service\nuser_domain_name = Default\nproject_domain_name = Default\nregion_name = RegionOne\n"
    )


def authtoken() -> str:
    return (
        auth_section("keystone_authtoken").replace(
            "[keystone_authtoken]\n", f"[keystone_authtoken]\nwww_authenticate_uri = {KS}\n"
        )
        + "service_token_roles_required = true\n"
    )


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def wrapper(svc: str, env: dict, argv: list[str], module: str) -> None:
    """A WSGI module that sets config env and sys.argv before the app parses them (oslo.config
    would otherwise read gunicorn's arguments)."""
    write(
        BASE / svc / f"{svc}_wsgi.py",
        "import os, sys\n"
        f"os.environ.update({env!r})\n_a, sys.argv = sys.argv, {argv!r}\n"
        f"from {module} import application  # noqa\nsys.argv = _a\n",
    )


def spawn(name: str, cmd: list, env=None) -> None:
    """Start one service in its own process group; its command line is kept beside its PID file,
    so `loopback.py restart NAME` can start it again without rebuilding the cloud."""
    logf = open(BASE / "log" / f"{name}.out", "a")
    immediate = "" if name.startswith("octavia") else "1"  # octavia: see sqlite_immediate.py
    env = {"OSK8S_SQLITE_IMMEDIATE": immediate, **(env or {})}
    p = subprocess.Popen(
        [str(c) for c in cmd],
        stdout=logf,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **env},
        start_new_session=True,
        cwd=BASE,
    )
    (BASE / "run" / f"{name}.cmd").write_text(json.dumps({"cmd": [str(c) for c in cmd], "env": env}))
    (BASE / "run" / f"{name}.pid").write_text(str(p.pid))


def gunicorn(svc: str, threads: int = 4) -> None:
    wal(BASE / svc)  # after the service's db sync, before anything serves from it
    spawn(
        svc,
        [
            v("gunicorn"),
            "--no-control-socket",
            "--chdir",
            BASE / svc,
            "--bind",
            f"127.0.0.1:{PORTS[svc]}",
            "--workers",
            "1",
            "--threads",
            threads,
            "--worker-class",
            "gthread",
            "--keep-alive",
            "5",
            "--timeout",
            "120",
            f"{svc}_wsgi:application",
        ],
    )


def wait_http(url: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=3) as r:
                if r.status < 500:
                    return
        except urllib.error.HTTPError as e:
            if e.code < 500:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer in {timeout} s (see {BASE}/log)")
        time.sleep(0.2)


# --- services ------------------------------------------------------------------------------------


def keystone() -> None:
    d = BASE / "keystone"
    for sub in ("fernet-keys", "credential-keys"):
        (d / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(d / sub, 0o700)
    conf = write(
        d / "keystone.conf",
        f"""[DEFAULT]
log_dir = {BASE}/log
[database]
connection = sqlite:///{d}/keystone.db
[token]
provider = fernet
[fernet_tokens]
key_repository = {d}/fernet-keys
[fernet_receipts]
key_repository = {d}/fernet-keys
[credential]
key_repository = {d}/credential-keys
[identity]
password_hash_rounds = 4
[cache]
enabled = true
backend = dogpile.cache.memory
""",
    )
    km = [v("keystone-manage"), "--config-file", conf]
    run(*km, "db_sync")
    run(*km, "fernet_setup", "--keystone-user", "root", "--keystone-group", "root")
    run(*km, "credential_setup", "--keystone-user", "root", "--keystone-group", "root")
    run(
        *km,
        "bootstrap",
        "--bootstrap-password",
        ADMIN_PW,
        "--bootstrap-region-id",
        "RegionOne",
        *[x for i in ("admin", "internal", "public") for x in (f"--bootstrap-{i}-url", f"{KS}/v3")],
    )
    wrapper("keystone", {"OS_KEYSTONE_CONFIG_FILES": str(conf)}, ["keystone"], "keystone.wsgi.api")
    gunicorn("keystone", threads=1)  # token issues write here: one request at a time, or sqlite says "locked"


def rabbitmq() -> None:
    d = BASE / "rabbitmq"
    for sub in ("mnesia", "log"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    write(d / "rabbitmq.conf", "listeners.tcp.default = 127.0.0.1:5672\n")
    write(d / "enabled_plugins", "[].\n")
    erl = "-kernel inet_dist_use_interface {127,0,0,1}"
    write(
        d / "env.sh",
        "\n".join(
            [
                "export HOME=/var/lib/rabbitmq",
                f"export RABBITMQ_CONFIG_FILE={d}/rabbitmq.conf",
                f"export RABBITMQ_ENABLED_PLUGINS_FILE={d}/enabled_plugins",
                f"export RABBITMQ_MNESIA_BASE={d}/mnesia",
                f"export RABBITMQ_LOG_BASE={d}/log",
                f"export RABBITMQ_PID_FILE={d}/rabbit.pid",
                "export RABBITMQ_NODENAME=rabbit@localhost RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 ERL_EPMD_ADDRESS=127.0.0.1",
                "export RABBITMQ_DIST_PORT=25672",
                f"export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS='{erl}'",
                f"export RABBITMQ_CTL_ERL_ARGS='{erl}'",
                "",
            ]
        ),
    )
    run("chown", "-R", "rabbitmq:rabbitmq", d)
    os.chmod(BASE, 0o755)
    spawn(
        "rabbitmq", ["su", "rabbitmq", "-s", "/bin/bash", "-c", f". {d}/env.sh; exec /usr/lib/rabbitmq/bin/rabbitmq-server"]
    )


def rabbitmq_wait() -> None:
    d = BASE / "rabbitmq"
    run("su", "rabbitmq", "-s", "/bin/bash", "-c", f". {d}/env.sh; /usr/lib/rabbitmq/bin/rabbitmqctl -q await_startup")


def identity_data() -> None:
    """Service user, demo project/user, roles and the catalog (what DevStack would create)."""
    import openstack

    conn = openstack.connect(
        auth_url=f"{KS}/v3",
        username="admin",
        password=ADMIN_PW,
        project_name="admin",
        user_domain_id="default",
        project_domain_id="default",
        region_name="RegionOne",
    )
    idn = conn.identity

    def project(n):
        return idn.find_project(n, domain_id="default") or idn.create_project(name=n, domain_id="default")

    def role(n):
        return idn.find_role(n) or idn.create_role(name=n)

    def user(n, pw, p):
        return idn.find_user(n, domain_id="default") or idn.create_user(
            name=n, domain_id="default", password=pw, default_project_id=p.id
        )

    svc, demo, alt = project("service"), project("demo"), project("alt_demo")
    s = user("service", SERVICE_PW, svc)
    for r in ("admin", "service"):
        idn.assign_project_role_to_user(svc, s, role(r))
    for name, proj in (("demo", demo), ("alt_demo", alt)):
        u = user(name, DEMO_PW, proj)
        for r in ("member", "reader", "load-balancer_member"):
            idn.assign_project_role_to_user(proj, u, role(r))
    role("k8s-viewer")
    role("load-balancer_admin")
    catalog = {
        "glance": ("image", f"http://127.0.0.1:{PORTS['glance']}"),
        "placement": ("placement", f"http://127.0.0.1:{PORTS['placement']}"),
        "nova": ("compute", f"http://127.0.0.1:{PORTS['nova']}/v2.1"),
        "neutron": ("network", f"http://127.0.0.1:{PORTS['neutron']}"),
        "cinderv3": ("block-storage", f"http://127.0.0.1:{PORTS['cinder']}/v3/%(project_id)s"),
        "octavia": ("load-balancer", f"http://127.0.0.1:{PORTS['octavia']}"),
    }
    for name, (stype, url) in catalog.items():
        service = idn.find_service(name) or idn.create_service(name=name, type=stype)
        if not list(idn.endpoints(service_id=service.id)):
            for i in ("public", "internal", "admin"):
                idn.create_endpoint(service_id=service.id, interface=i, url=url, region_id="RegionOne")
    write(
        BASE / "clouds.yaml",
        json.dumps(
            {
                "clouds": {
                    c: {
                        "region_name": "RegionOne",
                        "identity_api_version": 3,
                        "auth": {
                            "auth_url": f"{KS}/v3",
                            "username": c if c != "alt_demo" else "alt_demo",
                            "password": ADMIN_PW if c == "admin" else DEMO_PW,
                            "project_name": c,
                            "user_domain_name": "Default",
                            "project_domain_name": "Default",
                        },
                    }
                    for c in ("admin", "demo", "alt_demo")
                }
            },
            indent=1,
        ),
    )


def glance() -> None:
    d = BASE / "glance"
    for sub in ("images", "staging", "tasks"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    shutil.copy(VENV / "etc/glance/glance-api-paste.ini", d / "glance-api-paste.ini")
    write(
        d / "glance-api.conf",
        f"""[DEFAULT]
enabled_backends = fs:file
log_dir = {BASE}/log
[glance_store]
default_backend = fs
[fs]
filesystem_store_datadir = {d}/images
[os_glance_staging_store]
filesystem_store_datadir = {d}/staging
[os_glance_tasks_store]
filesystem_store_datadir = {d}/tasks
[database]
connection = sqlite:///{d}/glance.db
[paste_deploy]
flavor = keystone
{authtoken()}""",
    )
    run(v("glance-manage"), "--config-file", d / "glance-api.conf", "db_sync")
    wrapper("glance", {"OS_GLANCE_CONFIG_DIR": str(d)}, ["glance-api"], "glance.wsgi.api")
    gunicorn("glance")


def placement() -> None:
    d = BASE / "placement"
    write(
        d / "placement.conf",
        f"""[DEFAULT]
log_dir = {BASE}/log
[placement_database]
connection = sqlite:///{d}/placement.db
[api]
auth_strategy = keystone
{authtoken()}""",
    )
    run(v("placement-manage"), "--config-file", d / "placement.conf", "db", "sync")
    wrapper("placement", {"OS_PLACEMENT_CONFIG_DIR": str(d)}, ["placement-api"], "placement.wsgi.api")
    gunicorn("placement")


def neutron() -> None:
    d = BASE / "neutron"
    write(
        d / "neutron.conf",
        f"""[DEFAULT]
core_plugin = ml2
service_plugins = router
auth_strategy = keystone
transport_url = {RABBIT}
api_paste_config = {d}/api-paste.ini
notify_nova_on_port_status_changes = false
notify_nova_on_port_data_changes = false
log_dir = {BASE}/log
[database]
connection = sqlite:///{d}/neutron.db
[oslo_concurrency]
lock_path = {d}/lock
{authtoken()}""",
    )
    shutil.copy(VENV / "etc/neutron/api-paste.ini", d / "api-paste.ini")
    write(
        d / "plugins/ml2/ml2_conf.ini",
        """[ml2]
type_drivers = flat,vxlan
tenant_network_types = vxlan
mechanism_drivers = osk8s_bindall
extension_drivers = port_security
[ml2_type_flat]
flat_networks = public
[ml2_type_vxlan]
vni_ranges = 1:1000
""",
    )
    files = [d / "neutron.conf", d / "plugins/ml2/ml2_conf.ini"]
    # alembic migrations need ALTER constraint, which sqlite lacks: create from the models, then stamp
    run(
        v("python"),
        "-c",
        "import sys; from oslo_db.sqlalchemy import engines; "
        "from neutron.db.migration.models import head; "
        "head.get_metadata().create_all(engines.create_engine(sys.argv[1]))",
        f"sqlite:///{d}/neutron.db",
    )
    run(v("neutron-db-manage"), *[x for f in files for x in ("--config-file", f)], "stamp", "heads")
    wrapper("neutron", {"OS_NEUTRON_CONFIG_DIR": str(d)}, ["neutron-api"], "neutron.wsgi.api")
    gunicorn("neutron")


def nova() -> None:
    d = BASE / "nova"
    (d / "lock").mkdir(parents=True, exist_ok=True)
    shutil.copy(VENV / "etc/nova/api-paste.ini", d / "api-paste.ini")
    conf = write(
        d / "nova.conf",
        f"""[DEFAULT]
transport_url = {RABBIT}
compute_driver = fake.FakeDriver
host = {COMPUTE_HOST}
state_path = {d}
my_ip = 127.0.0.1
log_dir = {BASE}/log
[api]
auth_strategy = keystone
[api_database]
connection = sqlite:///{d}/nova_api.db
[database]
connection = sqlite:///{d}/nova.db
[wsgi]
api_paste_config = {d}/api-paste.ini
[scheduler]
discover_hosts_in_cells_interval = 2
workers = 1
[conductor]
workers = 1
[oslo_concurrency]
lock_path = {d}/lock
[vnc]
enabled = false
[cinder]
os_region_name = RegionOne
{authtoken()}
{auth_section("placement")}
{auth_section("neutron")}
{auth_section("service_user")}send_service_user_token = true

""",
    )
    nm = [v("nova-manage"), "--config-file", conf]
    run(*nm, "api_db", "sync")
    run(*nm, "cell_v2", "map_cell0", "--database_connection", f"sqlite:///{d}/nova_cell0.db")
    run(
        *nm,
        "cell_v2",
        "create_cell",
        "--name",
        "cell1",
        "--database_connection",
        f"sqlite:///{d}/nova.db",
        "--transport-url",
        RABBIT,
    )
    run(*nm, "db", "sync")
    wrapper("nova", {"OS_NOVA_CONFIG_DIR": str(d)}, ["nova-api"], "nova.wsgi.osapi_compute")
    gunicorn("nova")
    for part in ("conductor", "scheduler", "compute"):
        spawn(f"nova-{part}", [v(f"nova-{part}"), "--config-file", conf])


def cinder() -> None:
    d = BASE / "cinder"
    (d / "lock").mkdir(parents=True, exist_ok=True)
    shutil.copy(VENV / "etc/cinder/api-paste.ini", d / "api-paste.ini")
    # the filters the API accepts in list queries (DevStack installs this file into /etc/cinder); without
    # it `GET /volumes/detail?name=...` (cinder-csi's CreateVolume looks a volume up by name) is a 400
    shutil.copy(VENV / "etc/cinder/resource_filters.json", d / "resource_filters.json")
    conf = write(
        d / "cinder.conf",
        f"""[DEFAULT]
transport_url = {RABBIT}
auth_strategy = keystone
resource_query_filters_file = {d}/resource_filters.json
enabled_backends = fake
state_path = {d}
my_ip = 127.0.0.1
api_paste_config = {d}/api-paste.ini
log_dir = {BASE}/log
[database]
connection = sqlite:///{d}/cinder.db
[oslo_concurrency]
lock_path = {d}/lock
[fake]
volume_driver = cinder.tests.fake_driver.FakeLoggingVolumeDriver
volume_backend_name = fake
{authtoken()}""",
    )
    run(v("cinder-manage"), "--config-file", conf, "db", "sync")
    wrapper("cinder", {}, ["cinder-api", "--config-file", str(conf)], "cinder.wsgi.api")
    gunicorn("cinder")
    for part in ("scheduler", "volume"):
        spawn(f"cinder-{part}", [v(f"cinder-{part}"), "--config-file", conf])


def octavia() -> None:
    d = BASE / "octavia"
    for sub in ("certs", "tls", "lock", "amp/certs"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    # octavia's worker requires an encrypted CA key (an empty passphrase fails with a TypeError)
    run(
        "openssl",
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-passout",
        "pass:casecret",
        "-keyout",
        d / "certs/ca.key",
        "-out",
        d / "certs/ca.pem",
        "-days",
        "30",
        "-subj",
        "/CN=osk8s-test-octavia-ca",
    )
    conf = write(
        d / "octavia.conf",
        f"""[DEFAULT]
transport_url = {RABBIT}
log_dir = {BASE}/log
[api_settings]
bind_host = 127.0.0.1
bind_port = {PORTS["octavia"]}
auth_strategy = keystone
enabled_provider_drivers = amphora:'Amphora provider with noop backends',noop_driver:'Noop provider'
default_provider_driver = amphora
[database]
connection = sqlite:///{d}/octavia.db
pool_timeout =
[health_manager]
bind_ip = 127.0.0.1
controller_ip_port_list = 127.0.0.1:5555
heartbeat_key = insecure
{authtoken()}
{auth_section("service_auth")}
[certificates]
ca_certificate = {d}/certs/ca.pem
ca_private_key = {d}/certs/ca.key
ca_private_key_passphrase = casecret
storage_path = {d}/tls
[controller_worker]
# network_driver: bindall/osk8s_octavia_vip.py (noop, but the VIP is a real Neutron port)
client_ca = {d}/certs/ca.pem
amphora_driver = amphora_noop_driver
compute_driver = compute_noop_driver
network_driver = osk8s_vip_port_driver
image_driver = image_noop_driver
volume_driver = volume_noop_driver
loadbalancer_topology = SINGLE
amp_image_tag = amphora
amp_flavor_id = 1
amp_boot_network_list = 11111111-2222-3333-4444-555555555555
amp_secgroup_list = 11111111-2222-3333-4444-666666666666
[haproxy_amphora]
server_ca = {d}/certs/ca.pem
client_cert = {d}/certs/ca.pem
base_path = {d}/amp
base_cert_dir = {d}/amp/certs
[task_flow]
jobboard_enabled = false
engine = serial
[oslo_concurrency]
lock_path = {d}/lock
""",
    )
    run(v("python"), HERE / "octavia_schema.py", f"sqlite:///{d}/octavia.db")
    run(v("octavia-db-manage"), "--config-file", conf, "stamp", "head")
    wrapper("octavia", {}, ["octavia-api", "--config-file", str(conf)], "octavia.wsgi.api")
    gunicorn("octavia")
    spawn("octavia-worker", [v("octavia-worker"), "--config-file", conf])


def networks() -> None:
    """public (external, flat), private + private-subnet, router1: what DevStack creates."""
    import openstack

    os.environ["OS_CLIENT_CONFIG_FILE"] = str(BASE / "clouds.yaml")
    admin, demo = openstack.connect(cloud="admin"), openstack.connect(cloud="demo")
    net = admin.network
    # The default security-group rule templates a real Neutron has: its 2023.2 migration
    # c33da356b165_security_group_default_rules inserts them (egress IPv4/IPv6 in every group,
    # ingress from the group itself in the default group); the schema built here with create_all
    # skips migrations, so they are created as the migration does. Without them a new group had no
    # rules at all, which no real cloud shows (a direction-blind rule check passed on it).
    if not list(net.default_security_group_rules()):
        for ethertype in ("IPv4", "IPv6"):
            net.create_default_security_group_rule(
                direction="egress",
                ethertype=ethertype,
                used_in_default_sg=True,
                used_in_non_default_sg=True,
                description="Legacy default SG rule for egress traffic",
            )
            net.create_default_security_group_rule(
                direction="ingress",
                ethertype=ethertype,
                remote_group_id="PARENT",
                used_in_default_sg=True,
                used_in_non_default_sg=False,
                description="Legacy default SG rule for ingress traffic",
            )
    public = net.find_network("public") or net.create_network(
        name="public", is_router_external=True, provider_network_type="flat", provider_physical_network="public"
    )
    if not net.find_subnet("public-subnet"):
        net.create_subnet(
            name="public-subnet",
            network_id=public.id,
            ip_version=4,
            cidr="172.24.4.0/24",
            gateway_ip="172.24.4.1",
            enable_dhcp=False,
        )
    dnet = demo.network
    private = dnet.find_network("private") or dnet.create_network(name="private")
    subnet = dnet.find_subnet("private-subnet") or dnet.create_subnet(
        name="private-subnet", network_id=private.id, ip_version=4, cidr="10.0.0.0/26"
    )
    router = dnet.find_router("router1")
    if router is None:
        router = dnet.create_router(name="router1", external_gateway_info={"network_id": public.id})
        dnet.add_interface_to_router(router, subnet_id=subnet.id)
