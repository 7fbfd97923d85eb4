#!/usr/bin/env bash
# Mutation testing of the pure decision modules (mutmut 3.8.1; not in CI): see docs/testing.md.
#   scripts/mutation.sh [TARGET ...] [--max-children N] [--slow] [--fail-under PCT] [--resume] | --show MUTANT
# Runs at `nice -n ${MUTATION_NICE:-10}`: the machine's cores are shared.
set -euo pipefail
cd "$(dirname "$0")/.."
exec nice -n "${MUTATION_NICE:-10}" python scripts/mutation.py "$@"
