#!/usr/bin/env bash
# Distributed evaluation with torchrun.
#   bash tools/dist_test.sh CONFIG CHECKPOINT NUM_PROCS [test.py options]
set -euo pipefail
CONFIG=${1:?usage: dist_test.sh CONFIG CHECKPOINT NUM_PROCS [options]}
CHECKPOINT=${2:?usage: dist_test.sh CONFIG CHECKPOINT NUM_PROCS [options]}
NPROCS=${3:?usage: dist_test.sh CONFIG CHECKPOINT NUM_PROCS [options]}
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON=${PYTHON:-python}

PYTHONPATH="$ROOT:${PYTHONPATH:-}" \
exec "$PYTHON" -m torch.distributed.run \
    --nnodes="$NNODES" --node_rank="$NODE_RANK" --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$NPROCS" --master_port="$PORT" \
    "$ROOT/tools/test.py" "$CONFIG" "$CHECKPOINT" --launcher pytorch "${@:4}"
