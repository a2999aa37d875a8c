#!/usr/bin/env bash
# DevStack stand-in (see README.md): the phases, logs and units osk8s looks at, nothing else.
set -o errexit -o nounset -o pipefail
TOP_DIR=$(cd "$(dirname "$0")" && pwd)
[[ $EUID -eq 0 ]] && { echo "You are running this script as root." >&2; exit 1; }
[[ -f $TOP_DIR/local.conf ]] || { echo "no local.conf" >&2; exit 1; }
# localrc's assignments, ENABLED_SERVICES+= included (bash appends as DevStack's stackrc does)
eval "$(sed -n '/^\[\[local|localrc\]\]/,/^\[\[/p' "$TOP_DIR/local.conf" | grep -E '^[A-Z_][A-Z0-9_]*\+?=')"
ENABLED_SERVICES=${ENABLED_SERVICES:-}
is_service_enabled() { [[ ",$ENABLED_SERVICES," == *",$1,"* ]]; }
: "${DEST:?}" "${LOGFILE:?}" "${HOST_IP:?}" "${ADMIN_PASSWORD:?}"
PORTS=(keystone:15000 g-api:19292 neutron-api:19696 n-api:18774 n-api-meta:18775 c-api:18776 o-api:19876)
PHASE_SECONDS=$(cat "$DEST/.standin-phase-seconds" 2>/dev/null || echo 0.2)

echo $(( $(cat "$DEST/.standin-stack-count" 2>/dev/null || echo 0) + 1 )) >"$DEST/.standin-stack-count"
stamp=$(date +%F-%H%M%S)
mkdir -p "$(dirname "$LOGFILE")"
LOG=$LOGFILE.$stamp SUM=$LOGFILE.summary.$stamp
ln -sf "$LOG" "$LOGFILE"; ln -sf "$SUM" "$LOGFILE.summary"
ts() { date '+%Y-%m-%d %H:%M:%S.%3N'; }
log() { echo "$(ts) | $*" >>"$LOG"; }
summary() { echo "$(ts) | $*" >>"$SUM"; log "$*"; echo "$*"; }
phase() {
  summary "$1"
  if [[ "$(cat "$DEST/.standin-fail-at" 2>/dev/null)" == "$1" ]]; then
    # DevStack runs under xtrace: its log carries commands with their passwords (lib/databases/mysql)
    log "+ lib/databases/mysql:recreate_database_mysql:60 mysql -uroot -p${DATABASE_PASSWORD:-} -h127.0.0.1 -e 'DROP DATABASE IF EXISTS keystone;'"
    log "ERROR: stand-in told to fail at: $1"; exit 1
  fi
  sleep "$PHASE_SECONDS"
}
start_unit() {  # start_unit NAME: a devstack@NAME unit serving a tiny API
  local name=$1 port=""
  for p in "${PORTS[@]}"; do [[ ${p%%:*} == "$name" ]] && port=${p##*:}; done
  sudo tee "/etc/systemd/system/devstack@$name.service" >/dev/null <<UNIT
[Unit]
Description=Devstack stand-in devstack@$name.service
[Service]
ExecStart=/usr/bin/python3 $TOP_DIR/tools/fake-service.py $name $port $DEST
User=$USER
[Install]
WantedBy=multi-user.target
UNIT
  sudo systemctl daemon-reload
  sudo systemctl restart "devstack@$name.service"
  log "started devstack@$name on port $port"
}
wait_for() {  # wait_for NAME: DevStack blocks until the API answers
  local name=$1 port=""
  for p in "${PORTS[@]}"; do [[ ${p%%:*} == "$name" ]] && port=${p##*:}; done
  for _ in $(seq 600); do
    curl -s -o /dev/null -m 2 "http://$HOST_IP:$port/" && return 0
    log "waiting for $name at http://$HOST_IP:$port/"
    sleep 1
  done
  log "ERROR: $name did not answer"; exit 1
}

if ! command -v systemctl >/dev/null || [[ ! -d /run/systemd/system ]]; then
  sudo install -m 755 "$TOP_DIR/tools/systemctl" /usr/local/bin/systemctl  # no systemd here: the shim
fi

summary "stack.sh log $LOG"
phase "Installing package prerequisites"
phase "Installing OpenStack project source"
phase "Starting Keystone"; start_unit keystone
phase "Configuring Glance"
phase "Configuring Neutron"
phase "Configuring Cinder"
phase "Configuring Nova"
phase "Starting Nova API"; start_unit n-api
# lib/nova: the metadata API runs only as its own service, n-api-meta (cloud-init's SSH key source)
if is_service_enabled n-api-meta; then start_unit n-api-meta; fi
phase "Starting Neutron"; start_unit neutron-api
phase "Creating initial neutron network elements"
phase "Starting Cinder"; start_unit c-api
phase "Starting Glance"; start_unit g-api
phase "Uploading images"; wait_for g-api
if is_service_enabled o-api || grep -q '^enable_service .*o-api' "$TOP_DIR/local.conf"; then
  phase "Starting Octavia"; start_unit o-api
fi
echo "This is your host IP address: $HOST_IP"
echo "Keystone is serving at http://$HOST_IP/identity/"
echo "The default users are: admin and demo"
echo "The password: $ADMIN_PASSWORD"
summary "stack.sh completed in $SECONDS seconds."
