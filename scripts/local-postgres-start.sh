#!/usr/bin/env bash
# local-postgres-start.sh -- start a private PostgreSQL instance on 127.0.0.1 as an MLflow backend store
# (Debian 12, run as root, no systemd needed). For tests and for a single workstation; a shared
# team server is the DBA's job.
#
# Idempotent: installs Debian's postgresql if missing (apt-get update + install --no-install-recommends),
# initialises a data directory owned by the `postgres` user (first start only), starts the server if it
# is not running, creates the role and database, and prints the store URI as the ONLY line on stdout
# (progress goes to stderr):
#
#     URI=$(scripts/local-postgres-start.sh)      # postgresql://segsweep:segsweep@127.0.0.1:5433/segsweep
#     python -m sweeper server --store "$URI"     # or MLFLOW_TRACKING_URI="$URI" python sweep.py -m ...
#
# It does not touch Debian's own cluster (port 5432): the data directory, socket and log live under
# $LOCAL_PG_DIR. Password authentication (scram-sha-256) on 127.0.0.1 only.
#
# Environment knobs (all optional):
#   LOCAL_PG_DIR=/tmp/segsweep-pg   base dir (data/, run/ for the socket, postgres.log)
#   LOCAL_PG_PORT=5433              TCP port on 127.0.0.1
#   LOCAL_PG_DB=segsweep            database, role and password (a local test instance, not a secret)
#   LOCAL_PG_TIMEOUT=60             seconds to wait for the server
# Stop with scripts/local-postgres-stop.sh [--purge].
set -euo pipefail

BASE=${LOCAL_PG_DIR:-/tmp/segsweep-pg}
PORT=${LOCAL_PG_PORT:-5433}
DB=${LOCAL_PG_DB:-segsweep}
TIMEOUT=${LOCAL_PG_TIMEOUT:-60}
DATA=$BASE/data; RUN=$BASE/run; LOG=$BASE/postgres.log

log() { echo "[local-postgres-start] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root (it installs packages and runs the server as the postgres user)"

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }
if [ -z "$(pg_bin)" ] || ! id postgres >/dev/null 2>&1; then
  log "installing Debian's postgresql (apt)"
  export DEBIAN_FRONTEND=noninteractive
  mkdir -p "$BASE"
  apt-get update -q >"$BASE/apt-update.log" 2>&1 || log "apt-get update failed (see $BASE/apt-update.log), trying the install anyway"
  apt-get install -y -q --no-install-recommends postgresql >"$BASE/apt-install.log" 2>&1 \
    || die "apt-get install postgresql failed, see $BASE/apt-install.log"
fi
BIN=$(pg_bin); [ -n "$BIN" ] || die "no /usr/lib/postgresql/*/bin after the install"
as_pg() { runuser -u postgres -- "$@"; }

mkdir -p "$BASE" "$RUN"
chown postgres:postgres "$BASE" "$RUN"
if [ ! -s "$DATA/PG_VERSION" ]; then
  log "initdb $DATA"
  rm -rf "$DATA"
  pw=$(mktemp); echo postgres > "$pw"; chown postgres "$pw"
  as_pg "$BIN/initdb" -D "$DATA" -U postgres --pwfile="$pw" --auth-local=peer --auth-host=scram-sha-256 \
    -E UTF8 --locale=C.UTF-8 >"$BASE/initdb.log" 2>&1 || { rm -f "$pw"; die "initdb failed, see $BASE/initdb.log"; }
  rm -f "$pw"
fi

if as_pg "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
  log "already running ($DATA)"
else
  log "starting on 127.0.0.1:$PORT"
  as_pg "$BIN/pg_ctl" -D "$DATA" -l "$LOG" -w -t "$TIMEOUT" \
    -o "-p $PORT -k $RUN -c listen_addresses=127.0.0.1 -c max_connections=200" start >/dev/null \
    || die "the server did not start, see $LOG"
fi

psql_pg() { as_pg "$BIN/psql" -h "$RUN" -p "$PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 -qtA "$@"; }
# CREATEDB: the tests give each test a database of its own and drop it afterwards.
if [ "$(psql_pg -c "SELECT 1 FROM pg_roles WHERE rolname='$DB'")" != 1 ]; then
  psql_pg -c "CREATE ROLE $DB LOGIN CREATEDB PASSWORD '$DB'" >/dev/null
fi
if [ "$(psql_pg -c "SELECT 1 FROM pg_database WHERE datname='$DB'")" != 1 ]; then
  psql_pg -c "CREATE DATABASE $DB OWNER $DB" >/dev/null
fi
log "ready: database $DB, role $DB on 127.0.0.1:$PORT (log $LOG)"
echo "postgresql://$DB:$DB@127.0.0.1:$PORT/$DB"
