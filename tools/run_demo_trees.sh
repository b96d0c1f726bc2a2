#!/usr/bin/env bash
# The NEON tree-crown demo (issue #20): check the data, train on tiles, evaluate on the validation
# part and the two other sites by sliding window, draw a whole crop.
#   bash tools/run_demo_trees.sh CONFIG WORK_DIR [--cfg-options ...]
# The data comes from the deepforest wheel that tools/setup_env.sh installs (--no-deps).
set -euo pipefail
CONFIG=${1:?usage: run_demo_trees.sh CONFIG WORK_DIR [--cfg-options ...]}
WORK_DIR=${2:?usage: run_demo_trees.sh CONFIG WORK_DIR [--cfg-options ...]}
shift 2
PYTHON=${PYTHON:-python}
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# this checkout's mmext, also where the venv holds another (editable) copy
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

echo "== data: the deepforest wheel's NEON crops, splits and tiles =="
"$PYTHON" tools/misc/neon_trees_data.py

start=$SECONDS
"$PYTHON" tools/train.py "$CONFIG" --work-dir "$WORK_DIR" "$@"
train_s=$((SECONDS - start))
CKPT="$(cat "$WORK_DIR/last_checkpoint")"

echo "== evaluating $CKPT: validation part, OSBS and SOAP crops; picture of a whole crop =="
"$PYTHON" tools/analysis/neon_trees_report.py "$CONFIG" "$CKPT" --work-dir "$WORK_DIR" "$@"
echo "trees demo finished: training took ${train_s} s, everything $((SECONDS - start)) s;" \
    "results in $WORK_DIR (neon_trees_results.md, neon_trees_yell_small.jpg)"
