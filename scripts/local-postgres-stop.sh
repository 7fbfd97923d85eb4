#!/usr/bin/env bash
# local-postgres-stop.sh -- stop the instance scripts/local-postgres-start.sh started.
#   --purge   also delete its data directory (the next start initialises a new, empty one)
set -uo pipefail
BASE=${LOCAL_PG_DIR:-/tmp/segsweep-pg}
DATA=$BASE/data
BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
if [ -n "$BIN" ] && [ -s "$DATA/PG_VERSION" ]; then
  runuser -u postgres -- "$BIN/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null 2>&1 \
    && echo "[local-postgres-stop] stopped ($DATA)" >&2
fi
[ "${1:-}" = --purge ] && rm -rf "$BASE" && echo "[local-postgres-stop] purged $BASE" >&2
exit 0
