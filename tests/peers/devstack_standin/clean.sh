#!/usr/bin/env bash
# DevStack stand-in: unstack, then remove units and logs.
TOP_DIR=$(cd "$(dirname "$0")" && pwd)
"$TOP_DIR/unstack.sh"
sudo rm -f /etc/systemd/system/devstack@*.service
eval "$(sed -n '/^\[\[local|localrc\]\]/,/^\[\[/p' "$TOP_DIR/local.conf" | grep -E '^(DEST|LOGFILE)=')"
rm -f "${LOGFILE:?}"*
