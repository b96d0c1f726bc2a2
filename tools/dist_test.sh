#!/usr/bin/env bash
# Distributed evaluation with torchrun.
#   bash tools/dist_test.sh CONFIG CHECKPOINT NUM_PROCS [test.py options]
set -euo pipefail
CONFIG=${1:?usage: dist_test.sh CONFIG CHECKPOINT NUM_PROCS [options]}
CHECKPOINT=${2:?usage: dist_test.sh CONFIG CHECKPOINT NUM_PROCS [options]}
NPROCS=${3:?usage: dist_test.sh CONFIG CHECKPOINT NUM_PROCS [options]}
exec bash "$(dirname "${BASH_SOURCE[0]}")/torchrun.sh" "$NPROCS" tools/test.py "$CONFIG" \
    "$CHECKPOINT" "${@:4}"
