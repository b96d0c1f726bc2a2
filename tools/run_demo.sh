#!/usr/bin/env bash
# The main job: train the demo config, evaluate the final checkpoint, draw predictions and curves.
#   bash tools/run_demo.sh CONFIG WORK_DIR [--cfg-options ...]
# The embedded shapes dataset is generated under data/shapes/ the first time it is needed.
set -euo pipefail
CONFIG=${1:?usage: run_demo.sh CONFIG WORK_DIR [--cfg-options ...]}
WORK_DIR=${2:?usage: run_demo.sh CONFIG WORK_DIR [--cfg-options ...]}
shift 2
PYTHON=${PYTHON:-python}
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

start=$SECONDS
"$PYTHON" tools/train.py "$CONFIG" --work-dir "$WORK_DIR" "$@"
train_s=$((SECONDS - start))
CKPT="$(cat "$WORK_DIR/last_checkpoint")"

echo "== evaluating $CKPT on the validation split =="
"$PYTHON" tools/test.py "$CONFIG" "$CKPT" --work-dir "$WORK_DIR" "$@"

echo "== drawing predictions and curves =="
"$PYTHON" tools/analysis/demo_report.py "$CONFIG" "$CKPT" --work-dir "$WORK_DIR" "$@"
echo "demo finished: training took ${train_s} s, everything $((SECONDS - start)) s; results in $WORK_DIR"
