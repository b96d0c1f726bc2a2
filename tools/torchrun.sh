#!/usr/bin/env bash
# torchrun for tools/dist_train.sh and tools/dist_test.sh (GPU: nccl; CPU-only: gloo).
#   bash tools/torchrun.sh NUM_PROCS SCRIPT [script arguments]
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=10.0.0.1 PORT=29500 bash tools/dist_train.sh CONFIG 8
set -euo pipefail
NPROCS=${1:?usage: torchrun.sh NUM_PROCS SCRIPT [arguments]}
SCRIPT=${2:?usage: torchrun.sh NUM_PROCS SCRIPT [arguments]}
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

PYTHONPATH="$ROOT:${PYTHONPATH:-}" \
exec "${PYTHON:-python}" -m torch.distributed.run \
    --nnodes="${NNODES:-1}" --node_rank="${NODE_RANK:-0}" \
    --master_addr="${MASTER_ADDR:-127.0.0.1}" --master_port="${PORT:-29500}" \
    --nproc_per_node="$NPROCS" "$ROOT/$SCRIPT" "${@:3}" --launcher pytorch
