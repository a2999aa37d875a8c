# sourced by every stand-in: record the call, keep state per host
S=/var/lib/osk8s-standin
mkdir -p "$S" 2>/dev/null
echo "$(basename "$0") $*" >> "$S/calls.log" 2>/dev/null
