#!/usr/bin/env bash
# Create (or reuse) a separate virtual environment for pmixer/SASRec.pytorch, the PyTorch port of
# the SASRec paper's official code, used only by tools/benchmark/bench_sasrec_official.py.
#
#   bash tools/benchmark/setup_sasrec_official_env.sh   # idempotent; prints the venv's python
#
# Environment variables:
#   MMEXT_SASREC_OFFICIAL_VENV  where the venv lives (default: ~/.cache/mmext/sasrec-official-venv)
#   MMEXT_VENV                  the project's venv   (default: <repo>/.venv)
#
# pmixer's code is NOT installed or downloaded here: the benchmark takes a checkout of
# https://github.com/pmixer/SASRec.pytorch as an argument (--official-repo) and imports its
# python/model.py and python/utils.py from there; it is never copied into mmext.
# What its code needs: torch and numpy (model.py, utils.py; main.py adds argparse and time).
# numpy < 2, the numpy of the code's era (it was written for torch 1.6), in this venv; torch
# comes from the project venv (peer_venv.sh), so both sides of the benchmark run the same build.
set -euo pipefail
NAME=sasrec_official
VENV="${MMEXT_SASREC_OFFICIAL_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/mmext/sasrec-official-venv}"
DEPS=('numpy<2')
NODEPS=()
PTH_FIRST=0
check() {
    "$VENV/bin/python" - <<'PY' >/dev/null 2>&1
import numpy, torch
assert numpy.__version__.startswith('1.'), numpy.__version__
torch.nn.MultiheadAttention(50, 1)
PY
}
describe() {
    "$VENV/bin/python" -c 'import numpy, torch; print(f"numpy {numpy.__version__}, torch {torch.__version__}")'
}
source "$(dirname "${BASH_SOURCE[0]}")/peer_venv.sh"
peer_venv_main
