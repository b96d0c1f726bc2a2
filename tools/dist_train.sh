#!/usr/bin/env bash
# Distributed training on one or more nodes with torchrun (GPU: nccl; CPU-only: gloo).
#   bash tools/dist_train.sh CONFIG NUM_PROCS [train.py options]
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=10.0.0.1 bash tools/dist_train.sh CONFIG 8
set -euo pipefail
CONFIG=${1:?usage: dist_train.sh CONFIG NUM_PROCS [options]}
NPROCS=${2:?usage: dist_train.sh CONFIG NUM_PROCS [options]}
exec bash "$(dirname "${BASH_SOURCE[0]}")/torchrun.sh" "$NPROCS" tools/train.py "$CONFIG" "${@:3}"
