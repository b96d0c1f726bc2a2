#!/usr/bin/env bash
# Training on a Slurm cluster: one task per GPU (or per CPU worker without GPUs).
#   [GPUS=8] [GPUS_PER_NODE=8] [CPUS_PER_TASK=5] bash tools/slurm_train.sh PARTITION JOB CONFIG WORK_DIR [options]
set -euo pipefail
PARTITION=${1:?usage: slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [options]}
JOB_NAME=${2:?}
CONFIG=${3:?}
WORK_DIR=${4:?}
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
SRUN_ARGS=${SRUN_ARGS:-}
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON=${PYTHON:-python}

PYTHONPATH="$ROOT:${PYTHONPATH:-}" \
srun -p "$PARTITION" --job-name="$JOB_NAME" --gres=gpu:"$GPUS_PER_NODE" \
    --ntasks="$GPUS" --ntasks-per-node="$GPUS_PER_NODE" --cpus-per-task="$CPUS_PER_TASK" \
    --kill-on-bad-exit=1 $SRUN_ARGS \
    "$PYTHON" -u "$ROOT/tools/train.py" "$CONFIG" --work-dir="$WORK_DIR" --launcher slurm "${@:5}"
