#!/usr/bin/env bash
# Create or reuse the project's virtual environment with the pinned OpenMMLab stack.
#
#   bash tools/setup_env.sh               # everything: core + vision stack (mmcv, mmdet, mmseg, mmpretrain)
#   bash tools/setup_env.sh --core        # the lean core: torch, mmengine, mmext and its ops (recommenders)
#   bash tools/setup_env.sh --check-pins  # seconds: prove that our pip calls keep pkg_resources (CI guard)
#
# Idempotent: a second run with nothing changed returns at once.
#
# Environment variables:
#   MMEXT_VENV         where the venv lives               (default: <repo>/.venv)
#   MMEXT_PYTHON       interpreter used to create it      (default: python3.11, else python3)
#   MMEXT_WHEEL_CACHE  cache of wheels we build ourselves (default: ~/.cache/mmext/wheels)
#
# mmcv 2.1.0 is the newest mmcv that mmdet 3.3.0 / mmseg 1.2.2 accept and PyPI ships it only as
# source.  Building it takes 10-45 min on 2 cores, so the wheel is built once into a cache keyed by
# the python and torch versions (pip's own cache ignores the torch version an extension was
# compiled against) and reused by every later set-up on the machine.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${MMEXT_VENV:-$ROOT/.venv}"
CACHE_ROOT="${MMEXT_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mmext/wheels}"
CONSTRAINTS="$ROOT/requirements/constraints.txt"
MMCV_VERSION=2.1.0
MODE=full
case "${1:-}" in
    '') ;;
    --core) MODE=core ;;
    --check-pins) MODE=check-pins ;;
    *) echo "usage: bash tools/setup_env.sh [--core | --check-pins]" >&2; exit 2 ;;
esac

log() { printf '[setup_env %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

# Every pip call goes through these two, so requirements/constraints.txt (setuptools < 81, which
# still has pkg_resources) holds for each of them, torch's install included.
pip_install() { "$1" -m pip install --disable-pip-version-check -q -c "$CONSTRAINTS" "${@:2}"; }
pip_run() { "$1" -m pip "$2" --disable-pip-version-check -q -c "$CONSTRAINTS" "${@:3}"; }

new_venv() {
    local py="${MMEXT_PYTHON:-$(command -v python3.11 || command -v python3)}"
    log "creating $1 with $py"
    "$py" -m venv "$1"
}

if [[ "$MODE" == check-pins ]]; then
    # A fresh venv starts with an old setuptools (65 on python 3.11).  torch then asks for a newer
    # one; through pip_install it must stay below 81 so that pkg_resources still imports.
    # Installing torch itself would take minutes: its setuptools requirement is what matters.
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
    new_venv "$work/venv"
    requirement="${MMEXT_TORCH_SETUPTOOLS_REQ:-setuptools>=77.0.3}"
    pip_install "$work/venv/bin/python" "$requirement"
    "$work/venv/bin/python" -W ignore - "$requirement" <<'EOF'
import sys
from importlib.metadata import version
import pkg_resources  # noqa: F401  (the point of the check)
print(f'check-pins: {sys.argv[1]!r} resolved to setuptools {version("setuptools")}; '
      'pkg_resources imports')
EOF
    exit 0
fi

# Hash of everything that decides the environment's content: change one, and set-up runs again.
stamp_of() {
    # The compiled ops' sources count too: changing them must rebuild mmext._ext.
    { echo "$MODE"; cat "$ROOT"/requirements/*.txt "$ROOT/tools/setup_env.sh" "$ROOT/setup.py"
      find "$ROOT/mmext/ops/csrc" -type f | LC_ALL=C sort | xargs cat; } | sha256sum | cut -c1-16
}
STAMP_FILE="$VENV/.mmext-setup-stamp"
if [[ -f "$STAMP_FILE" && "$(cat "$STAMP_FILE")" == "$(stamp_of)" ]] \
    && "$VENV/bin/python" -c 'import mmext' 2>/dev/null; then
    exit 0
fi

start=$SECONDS
[[ -x "$VENV/bin/python" ]] || new_venv "$VENV"
PY="$VENV/bin/python"

pip_install "$PY" setuptools wheel ninja
log "installing torch (requirements/torch.txt)"
pip_install "$PY" -r "$ROOT/requirements/torch.txt"

build_mmcv() {
    # Serialise concurrent set-ups on one machine: the second waits and then reuses the wheel.
    exec 9>"$CACHE/.lock"
    flock 9
    if compgen -G "$CACHE/mmcv-$MMCV_VERSION-*.whl" >/dev/null; then return; fi
    local work
    work="$(mktemp -d)"
    log "building mmcv $MMCV_VERSION from source into $CACHE (once per python+torch; 10-45 min)"
    pip_run "$PY" download --no-deps --no-build-isolation --no-binary :all: "mmcv==$MMCV_VERSION" -d "$work"
    tar -xzf "$work"/mmcv-"$MMCV_VERSION".tar.gz -C "$work"
    local src="$work/mmcv-$MMCV_VERSION"
    # torch >= 2.10 headers need C++20; mmcv's setup.py hard-codes older standards.
    sed -i -E 's/-std=c\+\+1[47]/-std=c++20/g' "$src/setup.py"
    # --no-build-isolation: an isolated build env has no torch, and mmcv then silently skips its ops.
    (cd "$src" && MMCV_WITH_OPS=1 MAX_JOBS="$(nproc)" \
        pip_run "$PY" wheel --no-deps --no-build-isolation . -w "$work/dist")
    mv "$work"/dist/mmcv-*.whl "$CACHE/"
    rm -rf "$work"
}

mmcv_has_ops() { "$PY" -c 'from mmcv.ops import nms' 2>/dev/null; }

if [[ "$MODE" == full ]] && ! mmcv_has_ops; then
    PYTAG="$("$PY" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')"
    TORCH_TAG="$("$PY" -c 'import torch; print(torch.__version__.replace("+", "_"))')"
    CACHE="$CACHE_ROOT/$PYTAG-torch$TORCH_TAG"
    mkdir -p "$CACHE"
    build_mmcv
    pip_install "$PY" --no-deps --force-reinstall "$CACHE"/mmcv-"$MMCV_VERSION"-*.whl
    # mmcv's own requirements (addict, opencv, yapf, ...) from the index.
    pip_install "$PY" "$CACHE"/mmcv-"$MMCV_VERSION"-*.whl
    mmcv_has_ops || { log "mmcv was installed without its compiled ops; delete $CACHE and rerun"; exit 1; }
fi

requirements=(-r "$ROOT/requirements/core.txt" -r "$ROOT/requirements/tests.txt" -r "$ROOT/requirements/lint.txt")
[[ "$MODE" == full ]] && requirements+=(-r "$ROOT/requirements/vision.txt")
log "installing the $MODE stack: ${requirements[*]//$ROOT\//}"
pip_install "$PY" "${requirements[@]}"
# Packages used only for files they ship (recbole: the ml-100k example dataset; deepforest: the
# NEON tree-crown crops), never imported.
pip_install "$PY" --no-deps -r "$ROOT/requirements/nodeps.txt"
# mmext itself with its compiled ops (mmext._ext).  Where nvcc exists, the CUDA kernels are
# compiled too (FORCE_CUDA=1), so a CUDA compile error fails set-up, and CI, without a GPU.
if [[ -z "${FORCE_CUDA:-}" ]] && command -v nvcc >/dev/null; then
    export FORCE_CUDA=1
fi
if [[ "${FORCE_CUDA:-0}" == 1 && -z "${CUDA_HOME:-}" && -d /usr/local/cuda ]]; then
    export CUDA_HOME=/usr/local/cuda
fi
log "building mmext's ops (FORCE_CUDA=${FORCE_CUDA:-0})"
pip_install "$PY" --no-deps --no-build-isolation -e "$ROOT"

"$PY" - "$MODE" <<'EOF'
import sys
import mmengine, torch
import mmext
from mmext.utils.ext_loader import load_ext
ext = load_ext('_ext', ['layer_norm_fwd', 'batched_linear_sum_assignment'])  # built and current
stack = f'torch {torch.__version__}, mmengine {mmengine.__version__}'
if sys.argv[1] == 'full':
    import mmcv, mmdet, mmpretrain, mmseg
    from mmcv.ops import nms  # noqa: F401  (proves mmcv's compiled ops are there)
    stack += (f', mmcv {mmcv.__version__}, mmdet {mmdet.__version__}, mmseg {mmseg.__version__}, '
              f'mmpretrain {mmpretrain.__version__}')
print(f'{stack}, mmext {mmext.__version__} (ops: CPU{" + CUDA" if ext.with_cuda else ""})')
EOF
stamp_of >"$STAMP_FILE"
log "$MODE environment ready in $((SECONDS - start)) s"
