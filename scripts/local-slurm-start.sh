#!/usr/bin/env bash
# local-slurm-start.sh -- start a REAL single-node SLURM cluster on this host for segsweep's tests
# (Debian 12, run as root, no systemd needed).
#
#   munged  ->  mariadbd (private instance, 127.0.0.1:3307)  ->  slurmdbd  ->  slurmctld  ->  slurmd
#
# Idempotent: installs missing Debian packages (apt-get update + install --no-install-recommends),
# (re)writes the config, starts only the daemons that are not already running, waits until
# `sinfo` shows the node idle, and prints the partition name as the ONLY line on stdout
# (progress goes to stderr):
#
#     PART=$(scripts/local-slurm-start.sh)
#
# slurmdbd + MariaDB are there so that `sacct` works: submitit polls job states with sacct, and
# `python -m sweeper status` reads SLURM states from it. Without accounting, job.state stays
# UNKNOWN and job.result() on a cancelled/killed job hangs forever.
#
# Environment knobs (all optional):
#   LOCAL_SLURM_DIR=/tmp/segsweep-slurm  base dir (config in etc/, state/, spool/, log/, run/, mysql/)
#   LOCAL_SLURM_PARTITION=debug       partition name (the default partition)
#   LOCAL_SLURM_CPUS=<n>              advertise n CPUs instead of the real count (oversubscribe so that
#                                     array tasks run concurrently; SlurmdParameters=config_overrides)
#   LOCAL_SLURM_ACCOUNTING=1          0 = no MariaDB/slurmdbd, AccountingStorageType=none (sacct fails)
#   LOCAL_SLURM_CGROUP=0              1 = proctrack/cgroup + task/cgroup (not with LOCAL_SLURM_CPUS)
#   LOCAL_SLURM_DB_PORT=3307          TCP port of the private MariaDB
#   LOCAL_SLURM_TIMEOUT=60            seconds to wait for each daemon / for the node to be idle
#   LOCAL_SLURM_NODES=1               2 = also a second node <host>2 (e.g. vm2): its slurmd runs in a network
#                                     namespace (segsweep-<host>2, veth 10.77.0.1 <-> 10.77.0.2, own UTS
#                                     hostname, own spool dir through a private mount namespace); it is only in
#                                     the partition LOCAL_SLURM_MULTI_PARTITION, the default partition keeps
#                                     the one node <host>. Unset: keep what the running config has.
#   LOCAL_SLURM_MULTI_PARTITION=multi the 2-node partition (<host>,<host>2)
#   LOCAL_SLURM_NET=10.77.0           the /24 of the veth pair (.1 this host, .2 the second node)
# Stop with scripts/local-slurm-stop.sh (kills only the PIDs recorded in $LOCAL_SLURM_DIR/run/started/).
# Derived from shared/reference/local-slurm (NOTES.md lists the pitfalls each setting avoids).
set -euo pipefail

BASE=${LOCAL_SLURM_DIR:-/tmp/segsweep-slurm}
PART=${LOCAL_SLURM_PARTITION:-debug}
ACCOUNTING=${LOCAL_SLURM_ACCOUNTING:-1}
CGROUP=${LOCAL_SLURM_CGROUP:-0}
DB_PORT=${LOCAL_SLURM_DB_PORT:-3307}
TIMEOUT=${LOCAL_SLURM_TIMEOUT:-60}
CLUSTER=localcluster
DB_USER=slurm
DB_PASS=slurm_local_pw
DB_NAME=slurm_acct_db

ETC=$BASE/etc; RUN=$BASE/run; LOG=$BASE/log; STARTED=$RUN/started
T0=$(date +%s%N)
log() { local ms=$(( ($(date +%s%N) - T0) / 1000000 )); printf '[local-slurm-start %3d.%02ds] %s\n' $((ms / 1000)) $((ms % 1000 / 10)) "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root"

# ---------------------------------------------------------------- helpers
# alive <pid> <comm>: pid exists, is not a zombie, and its command name matches
alive() {
  local pid=$1 comm=$2 st
  [ -n "$pid" ] && [ -r "/proc/$pid/stat" ] || return 1
  st=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) || return 1
  [ "$st" != Z ] || return 1
  [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$comm" ]
}
pid_from() { [ -s "$1" ] && tr -dc '0-9' < "$1" || true; }
wait_for() {  # wait_for <what> <command...>
  local what=$1; shift; local end=$(( $(date +%s) + TIMEOUT ))
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$end" ] || die "timeout (${TIMEOUT}s) waiting for $what"
    sleep 0.2
  done
}
record() { cp "$2" "$STARTED/$1.pid"; log "$1 started, pid $(cat "$2")"; }

# ---------------------------------------------------------------- 1. packages
PKGS=(munge slurm-client slurmctld slurmd)
[ "$ACCOUNTING" = 1 ] && PKGS+=(slurmdbd mariadb-server)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing: ${missing[*]}"
  # keep the packages' postinst from trying to start daemons with the stock config
  created_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; created_policy=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  mkdir -p "$BASE"
  ok=1
  apt-get update -q >"$BASE/apt-update.log" 2>&1 || log "apt-get update failed (see $BASE/apt-update.log), trying the install anyway"
  apt-get install -y -q --no-install-recommends "${missing[@]}" >"$BASE/apt-install.log" 2>&1 || ok=0
  if [ $ok = 0 ]; then
    [ $created_policy = 1 ] && rm -f /usr/sbin/policy-rc.d
    die "apt-get install ${missing[*]} failed, see $BASE/apt-install.log"
  fi
  [ $created_policy = 1 ] && rm -f /usr/sbin/policy-rc.d
  log "packages installed"
fi

# ---------------------------------------------------------------- 2. dirs + config
mkdir -p "$ETC" "$BASE/state" "$BASE/spool/slurmd" "$LOG" "$RUN" "$STARTED"
NODE=$(hostname -s)
getent hosts "$NODE" >/dev/null || { echo "127.0.0.1 $NODE" >> /etc/hosts; log "added $NODE to /etc/hosts"; }

# the second node (LOCAL_SLURM_NODES=2): unset keeps what the running config has, so a plain re-run of
# this script does not take the second node away from whoever started it
NODE2=${NODE}2
NS=segsweep-$NODE2
NET=${LOCAL_SLURM_NET:-10.77.0}
MULTI=${LOCAL_SLURM_MULTI_PARTITION:-multi}
NODES=${LOCAL_SLURM_NODES:-}
if [ -z "$NODES" ]; then
  NODES=1; grep -q "^NodeName=$NODE2 " "$ETC/slurm.conf" 2>/dev/null && NODES=2
fi
case "$NODES" in 1|2) ;; *) die "LOCAL_SLURM_NODES=$NODES: give 1 or 2" ;; esac

HW=$(slurmd -C 2>/dev/null | head -1)           # NodeName=vm CPUs=2 Boards=1 ... RealMemory=24105
[[ $HW == NodeName=* ]] || die "slurmd -C failed: $HW"
REALMEM=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$HW")
NODELINE=$(sed "s/^NodeName=[^ ]*/NodeName=$NODE/" <<<"$HW")
EXTRA=""
if [ -n "${LOCAL_SLURM_CPUS:-}" ]; then
  NODELINE="NodeName=$NODE CPUs=$LOCAL_SLURM_CPUS RealMemory=$REALMEM"
  EXTRA="SlurmdParameters=config_overrides"
  [ "$CGROUP" = 1 ] && log "WARNING: LOCAL_SLURM_CPUS + LOCAL_SLURM_CGROUP=1 -> slurmd logs 'job N allocated no CPUs' (cpuset cannot bind fake CPUs); prefer LOCAL_SLURM_CGROUP=0"
fi
if [ "$ACCOUNTING" = 1 ]; then
  ACCT="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=6819
JobAcctGatherType=jobacct_gather/linux"
else
  ACCT="AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none"
fi
if [ "$CGROUP" = 1 ]; then
  PROC="ProctrackType=proctrack/cgroup
TaskPlugin=task/cgroup,task/affinity"
else
  PROC="ProctrackType=proctrack/linuxproc
TaskPlugin=task/none"
fi

if [ "$NODES" = 2 ]; then
  # <host>2 is reached at its veth address; its slurmd finds slurmctld (SlurmctldHost=<host>) through the
  # namespace's own /etc/hosts (ip netns exec bind-mounts /etc/netns/$NS/hosts), which maps <host> to $NET.1
  NODES_AND_PARTS="$NODELINE State=UNKNOWN
$(sed "s/^NodeName=$NODE /NodeName=$NODE2 NodeAddr=$NET.2 NodeHostname=$NODE2 /" <<<"$NODELINE") State=UNKNOWN
PartitionName=$PART Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
PartitionName=$MULTI Nodes=$NODE,$NODE2 MaxTime=INFINITE State=UP"
else
  NODES_AND_PARTS="$NODELINE State=UNKNOWN
PartitionName=$PART Nodes=ALL Default=YES MaxTime=INFINITE State=UP"
fi

# Job ids restart at 1 whenever the state dir is empty. submitit treats an existing
# <folder>/<jobid>_0_result.pkl as the result, so a reused submitit folder would silently return
# a STALE result from an earlier cluster incarnation. Start fresh clusters at a time-based id.
FIRST_JOB_ID=""
[ -n "$(ls -A "$BASE/state" 2>/dev/null)" ] && FIRST_JOB_ID=$(sed -n 's/^FirstJobId=//p' "$ETC/slurm.conf" 2>/dev/null || true)
[ -n "$FIRST_JOB_ID" ] || FIRST_JOB_ID=$(( $(date +%s) % 50000000 + 1000 ))

NEWCONF=$(cat <<EOF
# generated by segsweep scripts/local-slurm-start.sh
ClusterName=$CLUSTER
SlurmctldHost=$NODE
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$BASE/state
SlurmdSpoolDir=$BASE/spool/slurmd
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
$PROC
MpiDefault=none
MailProg=/bin/true
SchedulerType=sched/backfill
# batch jobs are otherwise started only every 3 s (default batch_sched_delay=3)
SchedulerParameters=batch_sched_delay=0
SelectType=select/cons_tres
# CR_CPU: memory is not a consumable resource, so jobs without --mem don't each grab the whole node
SelectTypeParameters=CR_CPU
$ACCT
JobCompType=jobcomp/none
ReturnToService=2
InactiveLimit=0
KillWait=5
MinJobAge=300
FirstJobId=$FIRST_JOB_ID
SlurmctldTimeout=30
SlurmdTimeout=60
$EXTRA
$NODES_AND_PARTS
EOF
)
CONF_CHANGED=0
if [ ! -f "$ETC/slurm.conf" ] || [ "$NEWCONF" != "$(cat "$ETC/slurm.conf")" ]; then
  printf '%s\n' "$NEWCONF" > "$ETC/slurm.conf"; CONF_CHANGED=1
fi
if [ "$CGROUP" = 1 ]; then
  printf 'CgroupPlugin=autodetect\nCgroupAutomount=no\nConstrainCores=yes\nConstrainRAMSpace=no\n' > "$ETC/cgroup.conf"
fi

cat > "$ETC/slurmdbd.conf" <<EOF
AuthType=auth/munge
DbdHost=localhost
DbdPort=6819
SlurmUser=root
DebugLevel=info
LogFile=$LOG/slurmdbd.log
PidFile=$RUN/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=$DB_USER
StoragePass=$DB_PASS
StorageLoc=$DB_NAME
EOF
chmod 600 "$ETC/slurmdbd.conf"

cat > "$ETC/my.cnf" <<EOF
[mysqld]
user=root
datadir=$BASE/mysql
socket=$RUN/mysqld.sock
pid-file=$RUN/mysqld.pid
log-error=$LOG/mysqld.log
bind-address=127.0.0.1
port=$DB_PORT
skip-name-resolve
innodb_buffer_pool_size=256M
innodb_log_file_size=64M
innodb_lock_wait_timeout=900
innodb_flush_log_at_trx_commit=0
EOF

# the Slurm client commands (sbatch/squeue/sacct, i.e. submitit) read /etc/slurm/*.conf
mkdir -p /etc/slurm
for f in slurm.conf slurmdbd.conf $([ "$CGROUP" = 1 ] && echo cgroup.conf); do
  if [ -e "/etc/slurm/$f" ] && [ ! -L "/etc/slurm/$f" ]; then mv "/etc/slurm/$f" "/etc/slurm/$f.bak-segsweep"; fi
  ln -sfn "$ETC/$f" "/etc/slurm/$f"
done
[ "$CGROUP" = 1 ] || { [ -L /etc/slurm/cgroup.conf ] && rm -f /etc/slurm/cgroup.conf; } || true

# ---------------------------------------------------------------- 3. munge
if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  log "munged already answering, reusing it"
else
  if [ ! -s /etc/munge/munge.key ]; then
    mkdir -p /etc/munge
    mungekey --create --keyfile=/etc/munge/munge.key 2>/dev/null || dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=128 status=none
    chown munge:munge /etc/munge/munge.key 2>/dev/null || true; chmod 400 /etc/munge/munge.key
  fi
  mkdir -p /run/munge /var/lib/munge /var/log/munge
  chown munge:munge /run/munge /var/lib/munge /var/log/munge 2>/dev/null || true
  chmod 755 /run/munge
  rm -f /run/munge/munged.pid
  if ! runuser -u munge -- /usr/sbin/munged 2>"$LOG/munged.start.err"; then
    log "munged as user munge failed ($(cat "$LOG/munged.start.err")), trying as root --force"
    /usr/sbin/munged --force 2>>"$LOG/munged.start.err" || die "munged failed: $(cat "$LOG/munged.start.err")"
  fi
  wait_for munged sh -c 'munge -n | unmunge'
  record munged /run/munge/munged.pid
fi

# ---------------------------------------------------------------- 4. MariaDB + slurmdbd
if [ "$ACCOUNTING" = 1 ]; then
  if alive "$(pid_from "$RUN/mysqld.pid")" mariadbd; then
    log "mariadbd already running"
  else
    if [ ! -d "$BASE/mysql/mysql" ]; then
      mkdir -p "$BASE/mysql"
      mariadb-install-db --defaults-file="$ETC/my.cnf" --auth-root-authentication-method=socket \
        --skip-test-db >"$LOG/mariadb-install-db.log" 2>&1 || die "mariadb-install-db failed, see $LOG/mariadb-install-db.log"
    fi
    rm -f "$RUN/mysqld.pid"
    setsid /usr/sbin/mariadbd --defaults-file="$ETC/my.cnf" >>"$LOG/mariadbd.stdout" 2>&1 </dev/null &
    wait_for mariadbd mariadb-admin --socket="$RUN/mysqld.sock" ping
    wait_for mariadbd.pid test -s "$RUN/mysqld.pid"
    record mariadbd "$RUN/mysqld.pid"
  fi
  mariadb --socket="$RUN/mysqld.sock" <<EOF || die "creating the slurm database/user failed"
CREATE DATABASE IF NOT EXISTS $DB_NAME;
CREATE USER IF NOT EXISTS '$DB_USER'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
CREATE USER IF NOT EXISTS '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASS';
ALTER USER '$DB_USER'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
ALTER USER '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASS';
GRANT ALL ON $DB_NAME.* TO '$DB_USER'@'127.0.0.1';
GRANT ALL ON $DB_NAME.* TO '$DB_USER'@'localhost';
FLUSH PRIVILEGES;
EOF

  if alive "$(pid_from "$RUN/slurmdbd.pid")" slurmdbd; then
    log "slurmdbd already running"
  else
    rm -f "$RUN/slurmdbd.pid"
    slurmdbd || die "slurmdbd failed to start, see $LOG/slurmdbd.log"
    wait_for slurmdbd sacctmgr -n list cluster
    record slurmdbd "$RUN/slurmdbd.pid"
  fi
  sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER" \
    || sacctmgr -i add cluster "$CLUSTER" >/dev/null 2>&1 || true
fi

# ---------------------------------------------------------------- 5. slurmctld + slurmd
# netns_up: the second node's network: namespace $NS, veth $NET.1 (here) <-> $NET.2 (there), and the
# names both sides resolve (<host> is 127.0.0.1 here, so $NET.1 inside the namespace; its slurmd gets
# /etc/netns/$NS/hosts as /etc/hosts, as `ip netns exec` would do)
netns_up() {
  ip netns list | grep -qw "$NS" || { ip netns add "$NS"; log "network namespace $NS added"; }
  if ! ip link show sgs-$NODE >/dev/null 2>&1; then
    ip link add "sgs-$NODE" type veth peer name "sgs-$NODE2" netns "$NS"
    ip addr add "$NET.1/24" dev "sgs-$NODE"
    ip link set "sgs-$NODE" up
    ip netns exec "$NS" ip addr add "$NET.2/24" dev "sgs-$NODE2"
    ip netns exec "$NS" ip link set "sgs-$NODE2" up
    ip netns exec "$NS" ip link set lo up
    log "veth sgs-$NODE ($NET.1) <-> sgs-$NODE2 ($NET.2, in $NS)"
  fi
  mkdir -p "/etc/netns/$NS"
  printf '127.0.0.1 localhost\n%s %s\n%s %s\n' "$NET.1" "$NODE" "$NET.2" "$NODE2" > "/etc/netns/$NS/hosts"
  grep -qE "^$NET\.2[[:space:]]+$NODE2\$" /etc/hosts || { echo "$NET.2 $NODE2" >> /etc/hosts; log "added $NODE2 to /etc/hosts"; }
}
[ "$NODES" = 2 ] && netns_up

ctld_pid=$(pid_from "$RUN/slurmctld.pid"); slurmd_pid=$(pid_from "$RUN/slurmd.pid")
start_ctld() {
  rm -f "$RUN/slurmctld.pid"
  slurmctld || die "slurmctld failed to start, see $LOG/slurmctld.log"
  wait_for slurmctld scontrol ping
  wait_for slurmctld.pid test -s "$RUN/slurmctld.pid"
  record slurmctld "$RUN/slurmctld.pid"
}
if alive "$ctld_pid" slurmctld; then
  if [ $CONF_CHANGED = 1 ]; then
    log "slurm.conf changed; slurmctld/slurmd are running -> scontrol reconfigure"
    log "(ProctrackType/accounting changes need scripts/local-slurm-stop.sh + start)"
    known=$(sinfo -h -N -o '%N' 2>/dev/null | sort -u | tr '\n' ' ' || true)
    want=$(sed -n 's/^NodeName=\([^ ]*\).*/\1/p' "$ETC/slurm.conf" | sort -u | tr '\n' ' ')
    if [ "$known" != "$want" ]; then
      # Slurm 22.05 adds/removes nodes only at a start: on reconfigure slurmctld exits with
      # "fatal: MaxNodeCount has changed (1->2) during reconfig, slurmctld must be restarted"
      log "nodes changed ($known-> $want): restarting slurmctld (running jobs go on; its state is saved)"
      kill -TERM "$ctld_pid"; for _ in $(seq 1 100); do alive "$ctld_pid" slurmctld || break; sleep 0.1; done
      start_ctld
    else
      scontrol reconfigure || true
    fi
  else
    log "slurmctld already running"
  fi
else
  start_ctld
fi
if alive "$slurmd_pid" slurmd; then
  log "slurmd already running"
else
  rm -f "$RUN/slurmd.pid"
  slurmd || die "slurmd failed to start, see $LOG/slurmd.log"
  wait_for slurmd.pid test -s "$RUN/slurmd.pid"
  record slurmd "$RUN/slurmd.pid"
fi
# the second node's slurmd: in $NS with hostname <host>2, and, through a private mount namespace, its own
# spool dir and pid file at the paths slurm.conf names (Debian's slurmd runs one node per spool dir)
N2=$BASE/$NODE2
if [ "$NODES" = 2 ]; then
  mkdir -p "$N2/spool" "$N2/run"
  if alive "$(pid_from "$N2/run/slurmd.pid")" slurmd; then
    log "slurmd $NODE2 already running"
  else
    rm -f "$N2/run/slurmd.pid"
    # nsenter --net, not `ip netns exec`: that remounts /sys without the cgroup tree slurmd needs
    unshare --uts --mount --propagation private nsenter --net="/run/netns/$NS" /bin/sh -c \
      "hostname $NODE2 && mount --bind /etc/netns/$NS/hosts /etc/hosts && mount --bind $N2/spool $BASE/spool/slurmd && mount --bind $N2/run $RUN && exec slurmd -N $NODE2 -L $LOG/slurmd-$NODE2.log" \
      || die "slurmd $NODE2 failed to start, see $LOG/slurmd-$NODE2.log"
    wait_for "slurmd $NODE2 pid" test -s "$N2/run/slurmd.pid"
    record "slurmd-$NODE2" "$N2/run/slurmd.pid"
  fi
elif alive "$(pid_from "$N2/run/slurmd.pid" 2>/dev/null)" slurmd; then  # LOCAL_SLURM_NODES=1 given: back to one node
  kill -TERM "$(pid_from "$N2/run/slurmd.pid")"; rm -f "$STARTED/slurmd-$NODE2.pid"
  log "stopped slurmd $NODE2 (LOCAL_SLURM_NODES=1); scripts/local-slurm-stop.sh removes its network namespace"
fi

# ---------------------------------------------------------------- 6. wait for the node(s)
wait_idle() {  # NODE PARTITION LOGFILE: until the node is idle in the partition (a drained one is resumed)
  local node=$1 part=$2 logfile=$3 st end=$(( $(date +%s) + TIMEOUT ))
  while :; do
    st=$(sinfo -h -n "$node" -p "$part" -o '%t' 2>/dev/null | head -1 || true)
    case "$st" in
      idle|mix|alloc) break ;;
      drain*|drng*|down*|fail*) scontrol update nodename="$node" state=resume >/dev/null 2>&1 || true ;;
    esac
    [ "$(date +%s)" -lt "$end" ] || die "node $node not idle after ${TIMEOUT}s (state '$st'); see $logfile"
    sleep 0.2
  done
  echo "$st"
}
st=$(wait_idle "$NODE" "$PART" "$LOG/")
log "cluster up: node $NODE is $st, partition $PART ($(sinfo -h -o '%c' -n "$NODE") CPUs)"
if [ "$NODES" = 2 ]; then
  st=$(wait_idle "$NODE2" "$MULTI" "$LOG/slurmd-$NODE2.log")
  log "second node up: $NODE2 is $st ($NET.2, network namespace $NS), partition $MULTI = $NODE,$NODE2"
fi
echo "$PART"
