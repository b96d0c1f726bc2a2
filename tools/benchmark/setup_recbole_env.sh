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
# its metrics use `np.float`/`np.bool`) and pandas, while the project runs on numpy 2.4.
# torch is NOT installed again: a .pth file appends the project venv's site-packages to this
# venv's sys.path, so the same torch 2.14.1 build serves both sides of the benchmark (identical
# kernels, nothing large to download).  Everything the bench venv installs itself (numpy<2,
# scipy, pandas, ...) comes first on sys.path and shadows the project's copies.
# RecBole is installed with --no-deps: its declared dependencies include ray, thop, plotly and
# tensorboard for hyper-parameter search and profiling; only what the code paths used here
# import at module level is installed (tensorboard because recbole.utils imports SummaryWriter).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
MAIN_VENV="${MMEXT_VENV:-$ROOT/.venv}"
VENV="${MMEXT_RECBOLE_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/mmext/recbole-venv}"
PKGS=(recbole==1.2.1)
DEPS=('numpy<2' 'pandas<2.3' 'scipy<1.14' 'scikit-learn<1.6' tqdm 'colorlog==4.7.2'
      'colorama==0.4.4' pyyaml texttable tabulate psutil tensorboard)

log() { printf '[setup_recbole_env %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

[[ -x "$MAIN_VENV/bin/python" ]] || { log "no project venv at $MAIN_VENV: run tools/setup_env.sh"; exit 1; }
MAIN_SITE="$("$MAIN_VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"

stamp_of() { printf '%s\n' "${PKGS[@]}" "${DEPS[@]}" "$MAIN_SITE" | sha256sum | cut -c1-16; }
STAMP_FILE="$VENV/.mmext-recbole-stamp"
check() {
    "$VENV/bin/python" - <<'PY' >/dev/null 2>&1
import numpy, torch
assert numpy.__version__.startswith('1.'), numpy.__version__
from recbole.config import Config  # noqa: F401
from recbole.model.sequential_recommender import GRU4Rec, SASRec  # noqa: F401
from recbole.trainer import Trainer  # noqa: F401
PY
}
if [[ -f "$STAMP_FILE" && "$(cat "$STAMP_FILE")" == "$(stamp_of)" ]] && check; then
    echo "$VENV/bin/python"
    exit 0
fi

start=$SECONDS
if [[ ! -x "$VENV/bin/python" ]]; then
    PY="$("$MAIN_VENV/bin/python" -c 'import sys; print(sys._base_executable)')"
    log "creating $VENV with $PY (same interpreter version as the project venv)"
    mkdir -p "$(dirname "$VENV")"
    "$PY" -m venv "$VENV"
fi
# requirements/constraints.txt on every pip call, as in tools/setup_env.sh (setuptools < 81).
PIP=("$VENV/bin/python" -m pip install --disable-pip-version-check -q
     -c "$ROOT/requirements/constraints.txt")
log "installing RecBole's runtime dependencies: ${DEPS[*]}"
"${PIP[@]}" "${DEPS[@]}"
log "installing ${PKGS[*]} (--no-deps)"
"${PIP[@]}" --no-deps "${PKGS[@]}"
# torch (and its own pure-python deps) from the project venv, after this venv's own packages.
BENCH_SITE="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
echo "$MAIN_SITE" >"$BENCH_SITE/zz_mmext_project_site.pth"
check || { log "RecBole does not import in $VENV; see the errors above"; "$VENV/bin/python" -c 'import recbole.trainer'; exit 1; }
stamp_of >"$STAMP_FILE"
log "RecBole venv ready in $((SECONDS - start)) s: $("$VENV/bin/python" -c 'import numpy, torch, recbole; print(f"recbole {recbole.__version__}, numpy {numpy.__version__}, torch {torch.__version__}")')"
echo "$VENV/bin/python"
