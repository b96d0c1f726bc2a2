"""Loading mmext's compiled extension (``mmext._ext``) with errors that say how to fix it.

mmcv's loader only imports ``mmcv.*`` modules, so mmext has its own.  Two failure modes get a
message instead of an obscure ImportError or a wrong result:

* *missing*: mmext was installed without building its ops (``MMEXT_WITH_OPS=0``, no torch at
  build time, or an install with build isolation);
* *stale*: the C++/CUDA sources next to the package changed after the library was compiled
  (the fingerprint compiled into ``_ext.source_hash`` no longer matches them).
"""
import functools
import importlib
import os
import os.path as osp
import warnings
from types import ModuleType
from typing import Sequence, Tuple

REBUILD_HINT = ('rebuild it from the mmext checkout with `bash tools/setup_env.sh` or '
                '`pip install --no-deps --no-build-isolation -e .` (add FORCE_CUDA=1 for the '
                'CUDA kernels on a machine without a GPU)')


class ExtensionError(ImportError):
    """mmext's compiled extension is missing, stale or lacks a requested function."""


@functools.lru_cache(maxsize=None)
def _import(name: str) -> ModuleType:
    try:
        module = importlib.import_module(f'mmext.{name}')
    except ImportError as e:
        raise ExtensionError(f'mmext.{name}, the compiled ops of mmext, cannot be imported '
                             f'({e}); {REBUILD_HINT}') from e
    from mmext.ops.source_hash import csrc_dir, source_hash
    if osp.isdir(csrc_dir()) and os.getenv('MMEXT_SKIP_STALE_CHECK', '0') != '1':
        built, current = getattr(module, 'source_hash', 'unknown'), source_hash()
        if built != current:
            raise ExtensionError(
                f'mmext.{name} at {module.__file__} was compiled from other sources than those '
                f'in {csrc_dir()} (fingerprint {built} vs {current}), so its kernels are stale; '
                f'{REBUILD_HINT}. MMEXT_SKIP_STALE_CHECK=1 skips this check.')
    return module


def load_ext(name: str = '_ext', funcs: Sequence[str] = ()) -> ModuleType:
    """Import ``mmext.<name>`` and check that it provides ``funcs``."""
    module = _import(name)
    missing = [f for f in funcs if not hasattr(module, f)]
    if missing:
        raise ExtensionError(f'mmext.{name} has no {missing}: it was built from an older mmext; '
                             f'{REBUILD_HINT}')
    return module


@functools.lru_cache(maxsize=None)
def ext_available(name: str = '_ext', funcs: Tuple[str, ...] = ()) -> bool:
    """Whether ``mmext.<name>`` loads, is current and has ``funcs``: optional fast paths ask
    this and fall back to torch otherwise.  A library that exists but is stale or partial is
    reported once with a warning that says how to rebuild it; a plain missing one is silent."""
    try:
        load_ext(name, funcs)
    except ExtensionError as e:
        if ext_built(name):
            warnings.warn(
                f'{e} Falling back to the slower torch implementations meanwhile.', stacklevel=2)
        return False
    return True


def ext_built(name: str = '_ext') -> bool:
    """Whether a compiled ``mmext.<name>`` is importable at all (current or not)."""
    try:
        importlib.import_module(f'mmext.{name}')
    except ImportError:
        return False
    return True
