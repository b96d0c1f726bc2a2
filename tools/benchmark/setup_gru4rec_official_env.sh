#!/usr/bin/env bash
# Create (or reuse) a separate virtual environment for the official PyTorch GRU4Rec
# (hidasib/GRU4Rec_PyTorch_Official), used only by tools/benchmark/bench_gru4rec_official.py.
# The official code itself is not installed: the benchmark takes a checkout as an argument.
#
#   bash tools/benchmark/setup_gru4rec_official_env.sh   # idempotent; prints the venv's python
#
# Environment variables:
#   MMEXT_GRU4REC_OFFICIAL_VENV  where the venv lives  (default: ~/.cache/mmext/gru4rec-official-venv)
#   MMEXT_VENV                   the project's venv    (default: <repo>/.venv)
#
# Why a separate venv: the official code and its run.py need numpy < 2 (it was written against
# numpy 1.x) and pandas, while the project runs on numpy 2.4.  torch comes from the project venv
# (peer_venv.sh), after this venv's own numpy < 2 and pandas.
set -euo pipefail
NAME=gru4rec_official
VENV="${MMEXT_GRU4REC_OFFICIAL_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/mmext/gru4rec-official-venv}"
DEPS=('numpy<2' 'pandas<2.3' joblib)
NODEPS=()
PTH_FIRST=0
check() {
    "$VENV/bin/python" - <<'PY' >/dev/null 2>&1
import numpy, pandas, joblib, torch  # noqa: F401
assert numpy.__version__.startswith('1.'), numpy.__version__
PY
}
describe() {
    "$VENV/bin/python" -c 'import numpy, pandas, torch; print(f"numpy {numpy.__version__}, pandas {pandas.__version__}, torch {torch.__version__}")'
}
source "$(dirname "${BASH_SOURCE[0]}")/peer_venv.sh"
peer_venv_main
