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
# numpy < 2, the numpy of the code's era (it was written for torch 1.6), in this venv; torch is
# NOT installed again: a .pth file appends the project venv's site-packages to this venv's
# sys.path (as tools/benchmark/setup_recbole_env.sh does), so both sides of the benchmark run the
# same torch build, and this venv's own numpy comes first on sys.path.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
MAIN_VENV="${MMEXT_VENV:-$ROOT/.venv}"
VENV="${MMEXT_SASREC_OFFICIAL_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/mmext/sasrec-official-venv}"
DEPS=('numpy<2')

log() { printf '[setup_sasrec_official_env %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

[[ -x "$MAIN_VENV/bin/python" ]] || { log "no project venv at $MAIN_VENV: run tools/setup_env.sh"; exit 1; }
MAIN_SITE="$("$MAIN_VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"

stamp_of() { printf '%s\n' "${DEPS[@]}" "$MAIN_SITE" | sha256sum | cut -c1-16; }
STAMP_FILE="$VENV/.mmext-sasrec-official-stamp"
check() {
    "$VENV/bin/python" - <<'PY' >/dev/null 2>&1
import numpy, torch
assert numpy.__version__.startswith('1.'), numpy.__version__
torch.nn.MultiheadAttention(50, 1)
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
# requirements/constraints.txt on every pip call, as in tools/setup_env.sh.
PIP=("$VENV/bin/python" -m pip install --disable-pip-version-check -q
     -c "$ROOT/requirements/constraints.txt")
log "installing ${DEPS[*]}"
"${PIP[@]}" "${DEPS[@]}"
BENCH_SITE="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
echo "$MAIN_SITE" >"$BENCH_SITE/zz_mmext_project_site.pth"
check || { log "torch or numpy does not import in $VENV; see the errors below"; "$VENV/bin/python" -c 'import numpy, torch'; exit 1; }
stamp_of >"$STAMP_FILE"
log "venv ready in $((SECONDS - start)) s: $("$VENV/bin/python" -c 'import numpy, torch; print(f"numpy {numpy.__version__}, torch {torch.__version__}")')"
echo "$VENV/bin/python"
