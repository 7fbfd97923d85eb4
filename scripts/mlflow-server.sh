#!/usr/bin/env bash
# Start segsweep's MLflow tracking server on 127.0.0.1 (foreground; add `&` or use tmux/systemd).
#   scripts/mlflow-server.sh                          # sqlite:///mlflow.db, ./mlartifacts, port 5000
#   scripts/mlflow-server.sh --port 5001 --store postgresql://segsweep@localhost/segsweep
#   scripts/mlflow-server.sh --auth --host 0.0.0.0 --store postgresql://...   # a lab's server (docs/tracking.md);
#     any --host but 127.0.0.1 needs --auth. Users: python -m sweeper server user add NAME --server URL
# Then: python sweep.py -m tracking=server ...   (or MLFLOW_TRACKING_URI=http://127.0.0.1:5000)
# Stop it with Ctrl-C, or `kill <pid>` of the pid it prints (this script's pid: it execs the server):
# the whole server (uvicorn and its workers) stops and the port is freed. Workers: --workers N
# (default one per two cores, 1 to 4).
set -euo pipefail
cd "$(dirname "$0")/.."
exec python -m sweeper server "$@"
