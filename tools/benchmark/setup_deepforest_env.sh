#!/usr/bin/env bash
# Create (or reuse) a separate virtual environment holding DeepForest 2.1.0 with its dependencies,
# used only by tools/benchmark/bench_deepforest.py (the `train` step) as the peer of the NEON trees
# demo.
#
#   bash tools/benchmark/setup_deepforest_env.sh   # idempotent; prints the venv's python on stdout
#
# Environment variables:
#   MMEXT_DEEPFOREST_VENV  where the venv lives   (default: ~/.cache/mmext/deepforest-venv)
#   MMEXT_VENV             the project's venv     (default: <repo>/.venv)
#
# Why a separate venv: DeepForest brings pytorch-lightning, hydra, geopandas, rasterio, kornia,
# transformers, ... (116 packages with torch), none of which the project needs or should pin.
# torch is NOT installed again: a .pth file appends the project venv's site-packages to this
# venv's sys.path *before* pip runs, so pip finds torch 2.14.1 there (deepforest asks for
# torch >= 2.2) and the same torch build serves both sides of the comparison.  What pip installs
# here comes first on sys.path and shadows the project's copies.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
MAIN_VENV="${MMEXT_VENV:-$ROOT/.venv}"
VENV="${MMEXT_DEEPFOREST_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/mmext/deepforest-venv}"
PKGS=(deepforest==2.1.0)

log() { printf '[setup_deepforest_env %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

[[ -x "$MAIN_VENV/bin/python" ]] || { log "no project venv at $MAIN_VENV: run tools/setup_env.sh"; exit 1; }
MAIN_SITE="$("$MAIN_VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"

stamp_of() { printf '%s\n' "${PKGS[@]}" "$MAIN_SITE" | sha256sum | cut -c1-16; }
STAMP_FILE="$VENV/.mmext-deepforest-stamp"
check() {
    "$VENV/bin/python" - <<'PY' >/dev/null 2>&1
import pytorch_lightning, torch, torchvision  # noqa: F401
from deepforest import main  # noqa: F401
from torchvision.models.detection import RetinaNet  # noqa: F401
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
BENCH_SITE="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
echo "$MAIN_SITE" >"$BENCH_SITE/zz_mmext_project_site.pth"
# requirements/constraints.txt on every pip call, as in tools/setup_env.sh (setuptools < 81).
log "installing ${PKGS[*]} with its dependencies (torch from the project venv)"
"$VENV/bin/python" -m pip install --disable-pip-version-check -q \
    -c "$ROOT/requirements/constraints.txt" "${PKGS[@]}"
check || { log "DeepForest does not import in $VENV; see the errors above"; "$VENV/bin/python" -c 'from deepforest import main'; exit 1; }
stamp_of >"$STAMP_FILE"
log "DeepForest venv ready in $((SECONDS - start)) s: $("$VENV/bin/python" -c 'import importlib.metadata as m, pytorch_lightning as pl, torch; print("deepforest", m.version("deepforest") + ", lightning", pl.__version__ + ", torch", torch.__version__)')"
echo "$VENV/bin/python"
