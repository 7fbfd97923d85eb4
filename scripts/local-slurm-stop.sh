#!/usr/bin/env bash
# local-slurm-stop.sh -- stop what scripts/local-slurm-start.sh started, by the PIDs it recorded in
# $LOCAL_SLURM_DIR/run/started/*.pid (never by name). Cancels all jobs first.
#   --purge   also delete Slurm state, spool, logs and the MariaDB datadir (next start = from scratch)
set -uo pipefail
BASE=${LOCAL_SLURM_DIR:-/tmp/segsweep-slurm}
STARTED=$BASE/run/started
PURGE=0; [ "${1:-}" = --purge ] && PURGE=1
log() { echo "[local-slurm-stop] $*" >&2; }

alive() {  # alive <pid> <comm>
  local pid=$1 comm=$2 st
  [ -n "$pid" ] && [ -r "/proc/$pid/stat" ] || return 1
  st=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) || return 1
  [ "$st" != Z ] || return 1
  [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$comm" ]
}

# 1. cancel every job and give slurmd a few seconds to clean the steps up
if [ -f "$STARTED/slurmctld.pid" ] && scontrol ping >/dev/null 2>&1; then
  jobs=$(squeue -h -o '%A' 2>/dev/null | sort -u | tr '\n' ' ')
  if [ -n "${jobs// /}" ]; then
    log "scancel $jobs"; scancel $jobs 2>/dev/null || true
    for _ in $(seq 1 50); do [ -z "$(squeue -h -t R,CG,PD 2>/dev/null)" ] && break; sleep 0.2; done
  fi
fi

# 2. SIGTERM in reverse start order, wait, SIGKILL if needed (slurmd-<node>: the second node's slurmd)
for f in "$STARTED"/slurmd-*.pid "$STARTED"/slurmd.pid "$STARTED"/slurmctld.pid "$STARTED"/slurmdbd.pid \
         "$STARTED"/mariadbd.pid "$STARTED"/munged.pid; do
  [ -f "$f" ] || continue
  name=$(basename "$f" .pid); comm=${name%%-*}
  pid=$(tr -dc '0-9' < "$f")
  if alive "$pid" "$comm"; then
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 1 100); do alive "$pid" "$comm" || break; sleep 0.1; done
    if alive "$pid" "$comm"; then log "$name ($pid) ignored SIGTERM for 10s -> SIGKILL"; kill -KILL "$pid" 2>/dev/null; fi
    log "stopped $name ($pid)"
  else
    log "$name ($pid) was not running"
  fi
  rm -f "$f"
done

# the second node's network namespace (LOCAL_SLURM_NODES=2): deleting it deletes its veth pair
for ns in $(ip netns list 2>/dev/null | awk '$1 ~ /^segsweep-/ {print $1}'); do
  if [ -z "$(ip netns pids "$ns" 2>/dev/null)" ]; then
    ip netns del "$ns" && rm -rf "/etc/netns/$ns" && log "deleted network namespace $ns"
  else
    log "warning: network namespace $ns still has processes ($(ip netns pids "$ns" | tr '\n' ' ')), kept"
  fi
done

# slurmstepd processes of jobs that survived (only children spawned by our slurmd; matched by PPID chain
# would be fragile, so list them for the user instead of killing by name)
left=$(ps -eo pid=,comm= | awk '$2=="slurmstepd"{print $1}' | tr '\n' ' ')
[ -n "${left// /}" ] && log "warning: slurmstepd still running: $left"

if [ $PURGE = 1 ]; then
  rm -rf "$BASE/state" "$BASE/spool" "$BASE/mysql" "$BASE/log" "$BASE/run"
  log "purged state/spool/mysql/log/run under $BASE"
fi
exit 0
