#!/usr/bin/env bash
# Start segsweep's MLflow tracking server on 127.0.0.1 (foreground; add `&` or use tmux/systemd).
#   scripts/mlflow-server.sh                          # sqlite:///mlflow.db, ./mlartifacts, port 5000
#   scripts/mlflow-server.sh --port 5001 --store postgresql://segsweep@localhost/segsweep
# Then: python sweep.py -m tracking=server ...   (or MLFLOW_TRACKING_URI=http://127.0.0.1:5000)
set -euo pipefail
cd "$(dirname "$0")/.."
exec python -m sweeper server "$@"
