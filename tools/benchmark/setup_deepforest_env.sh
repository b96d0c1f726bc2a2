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
# The project's site-packages are visible *before* pip runs (PTH_FIRST, peer_venv.sh), so pip
# finds torch 2.14.1 there (deepforest asks for torch >= 2.2) and the same torch build serves
# both sides of the comparison.
set -euo pipefail
NAME=deepforest
VENV="${MMEXT_DEEPFOREST_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/mmext/deepforest-venv}"
DEPS=(deepforest==2.1.0)
NODEPS=()
PTH_FIRST=1
check() {
    "$VENV/bin/python" - <<'PY' >/dev/null 2>&1
import pytorch_lightning, torch, torchvision  # noqa: F401
from deepforest import main  # noqa: F401
from torchvision.models.detection import RetinaNet  # noqa: F401
PY
}
describe() {
    "$VENV/bin/python" -c 'import importlib.metadata as m, pytorch_lightning as pl, torch; print("deepforest", m.version("deepforest") + ", lightning", pl.__version__ + ", torch", torch.__version__)'
}
source "$(dirname "${BASH_SOURCE[0]}")/peer_venv.sh"
peer_venv_main
