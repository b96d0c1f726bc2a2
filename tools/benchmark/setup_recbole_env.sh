#!/usr/bin/env bash
# Create (or reuse) a separate virtual environment holding RecBole 1.2.1, used only by
# tools/benchmark/bench_recbole.py as the reference for GRU4Rec and SASRec.
#
#   bash tools/benchmark/setup_recbole_env.sh     # idempotent; prints the venv's python on stdout
#
# Environment variables:
#   MMEXT_RECBOLE_VENV  where the venv lives   (default: ~/.cache/mmext/recbole-venv)
#   MMEXT_VENV          the project's venv     (default: <repo>/.venv)
#
# Why a separate venv: RecBole 1.2.1 needs numpy < 2 (its config does `np.float = np.float_`,
# its metrics use `np.float`/`np.bool`) and pandas, while the project runs on numpy 2.4.  torch
# comes from the project venv (peer_venv.sh), after this venv's own numpy < 2, scipy, pandas.
# RecBole is installed with --no-deps: its declared dependencies include ray, thop, plotly and
# tensorboard for hyper-parameter search and profiling; only what the code paths used here
# import at module level is installed (tensorboard because recbole.utils imports SummaryWriter).
set -euo pipefail
NAME=recbole
VENV="${MMEXT_RECBOLE_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/mmext/recbole-venv}"
DEPS=('numpy<2' 'pandas<2.3' 'scipy<1.14' 'scikit-learn<1.6' tqdm 'colorlog==4.7.2'
      'colorama==0.4.4' pyyaml texttable tabulate psutil tensorboard)
NODEPS=(recbole==1.2.1)
PTH_FIRST=0
check() {
    "$VENV/bin/python" - <<'PY' >/dev/null 2>&1
import numpy, torch
assert numpy.__version__.startswith('1.'), numpy.__version__
from recbole.config import Config  # noqa: F401
from recbole.model.sequential_recommender import GRU4Rec, SASRec  # noqa: F401
from recbole.trainer import Trainer  # noqa: F401
PY
}
describe() {
    "$VENV/bin/python" -c 'import numpy, torch, recbole; print(f"recbole {recbole.__version__}, numpy {numpy.__version__}, torch {torch.__version__}")'
}
source "$(dirname "${BASH_SOURCE[0]}")/peer_venv.sh"
peer_venv_main
