#!/usr/bin/env bash
# Create or reuse the project's virtual environment with the pinned OpenMMLab stack.
#
#   bash tools/setup_env.sh          # idempotent: a second run with nothing changed returns at once
#
# Environment variables:
#   MMEXT_VENV         where the venv lives               (default: <repo>/.venv)
#   MMEXT_PYTHON       interpreter used to create it      (default: python3.11, else python3)
#   MMEXT_WHEEL_CACHE  cache of wheels we build ourselves (default: ~/.cache/mmext/wheels)
#
# mmcv 2.1.0 is the newest mmcv that mmdet 3.3.0 / mmseg 1.2.2 accept and PyPI ships it only as
# source.  Building it takes 20-45 min on 2 cores, so the wheel is built once into a cache keyed by
# the python and torch versions (pip's own cache ignores the torch version an extension was
# compiled against) and reused by every later set-up on the machine.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${MMEXT_VENV:-$ROOT/.venv}"
CACHE_ROOT="${MMEXT_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mmext/wheels}"
TORCH_VERSION=2.14.1
MMCV_VERSION=2.1.0

log() { printf '[setup_env %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

# Hash of everything that decides the environment's content: change one, and set-up runs again.
stamp_of() {
    # The compiled ops' sources count too: changing them must rebuild mmext._ext.
    { cat "$ROOT"/requirements/*.txt "$ROOT/tools/setup_env.sh" "$ROOT/setup.py"
      find "$ROOT/mmext/ops/csrc" -type f | LC_ALL=C sort | xargs cat; } | sha256sum | cut -c1-16
}
STAMP_FILE="$VENV/.mmext-setup-stamp"
if [[ -f "$STAMP_FILE" && "$(cat "$STAMP_FILE")" == "$(stamp_of)" ]] \
    && "$VENV/bin/python" -c 'import mmext' 2>/dev/null; then
    exit 0
fi

start=$SECONDS
if [[ ! -x "$VENV/bin/python" ]]; then
    PY="${MMEXT_PYTHON:-$(command -v python3.11 || command -v python3)}"
    log "creating $VENV with $PY"
    "$PY" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip install --disable-pip-version-check -q)

"${PIP[@]}" 'setuptools<81' wheel ninja
log "installing torch (requirements/torch.txt)"
"${PIP[@]}" -r "$ROOT/requirements/torch.txt"

PYTAG="$("$VENV/bin/python" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')"
TORCH_TAG="$("$VENV/bin/python" -c 'import torch; print(torch.__version__.replace("+", "_"))')"
CACHE="$CACHE_ROOT/$PYTAG-torch$TORCH_TAG"
mkdir -p "$CACHE"

mmcv_has_ops() { "$VENV/bin/python" -c 'from mmcv.ops import nms' 2>/dev/null; }

build_mmcv() {
    # Serialise concurrent set-ups on one machine: the second waits and then reuses the wheel.
    exec 9>"$CACHE/.lock"
    flock 9
    if compgen -G "$CACHE/mmcv-$MMCV_VERSION-*.whl" >/dev/null; then return; fi
    local work
    work="$(mktemp -d)"
    log "building mmcv $MMCV_VERSION from source into $CACHE (once per python+torch; 20-45 min)"
    "$VENV/bin/python" -m pip download -q --no-deps --no-build-isolation --no-binary :all: "mmcv==$MMCV_VERSION" -d "$work"
    tar -xzf "$work"/mmcv-"$MMCV_VERSION".tar.gz -C "$work"
    local src="$work/mmcv-$MMCV_VERSION"
    # torch >= 2.10 headers need C++20; mmcv's setup.py hard-codes older standards.
    sed -i -E 's/-std=c\+\+1[47]/-std=c++20/g' "$src/setup.py"
    # --no-build-isolation: an isolated build env has no torch, and mmcv then silently skips its ops.
    (cd "$src" && MMCV_WITH_OPS=1 MAX_JOBS="$(nproc)" \
        "$VENV/bin/python" -m pip wheel -q --no-deps --no-build-isolation . -w "$work/dist")
    mv "$work"/dist/mmcv-*.whl "$CACHE/"
    rm -rf "$work"
}

if ! mmcv_has_ops; then
    build_mmcv
    "${PIP[@]}" --no-deps --force-reinstall "$CACHE"/mmcv-"$MMCV_VERSION"-*.whl
    # mmcv's own requirements (addict, opencv, yapf, ...) from the index.
    "${PIP[@]}" "$CACHE"/mmcv-"$MMCV_VERSION"-*.whl
    mmcv_has_ops || { log "mmcv was installed without its compiled ops; delete $CACHE and rerun"; exit 1; }
fi

log "installing the OpenMMLab stack (requirements/runtime.txt, tests.txt)"
"${PIP[@]}" -r "$ROOT/requirements/runtime.txt" -r "$ROOT/requirements/tests.txt"
# Packages used only for files they ship (recbole: the ml-100k example dataset), never imported.
"${PIP[@]}" --no-deps -r "$ROOT/requirements/nodeps.txt"
# mmext itself with its compiled ops (mmext._ext).  Where nvcc exists, the CUDA kernels are
# compiled too (FORCE_CUDA=1), so a CUDA compile error fails set-up, and CI, without a GPU.
if [[ -z "${FORCE_CUDA:-}" ]] && command -v nvcc >/dev/null; then
    export FORCE_CUDA=1
fi
if [[ "${FORCE_CUDA:-0}" == 1 && -z "${CUDA_HOME:-}" && -d /usr/local/cuda ]]; then
    export CUDA_HOME=/usr/local/cuda
fi
log "building mmext's ops (FORCE_CUDA=${FORCE_CUDA:-0})"
"${PIP[@]}" --no-deps --no-build-isolation -e "$ROOT"

"$VENV/bin/python" - <<'EOF'
import mmcv, mmdet, mmengine, mmpretrain, mmseg, torch
from mmcv.ops import nms  # noqa: F401  (proves the compiled ops are there)
import mmext
from mmext.utils.ext_loader import load_ext
ext = load_ext('_ext', ['layer_norm_fwd', 'batched_linear_sum_assignment'])  # built and current
print(f'torch {torch.__version__}, mmengine {mmengine.__version__}, mmcv {mmcv.__version__}, '
      f'mmdet {mmdet.__version__}, mmseg {mmseg.__version__}, mmpretrain {mmpretrain.__version__}, '
      f'mmext {mmext.__version__} (ops: CPU{" + CUDA" if ext.with_cuda else ""})')
EOF
stamp_of >"$STAMP_FILE"
log "environment ready in $((SECONDS - start)) s"
