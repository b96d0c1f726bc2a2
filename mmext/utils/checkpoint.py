"""Loading mmengine checkpoints with torch's weights-only unpickler (torch >= 2.6).

Since torch 2.6 ``torch.load`` defaults to ``weights_only=True``, which refuses every global that
is not on an allow-list.  A checkpoint written by mmengine's Runner holds a few such globals:
numpy arrays and scalars (inside the message hub), mmengine's ``HistoryBuffer`` and, because a
``HistoryBuffer`` pickles its statistics methods by reference, ``getattr(HistoryBuffer, 'min')``
and friends.  So mmengine 0.10.7 cannot load its own checkpoints (``load_from`` and ``--resume``
fail) on torch 2.14.

The fix here keeps ``weights_only=True`` and allow-lists exactly those types.  ``builtins.getattr``
is not allowed as such — a checkpoint could otherwise reach arbitrary attributes — but bound to
:func:`_history_buffer_method`, which only resolves HistoryBuffer's own statistics methods.  Any
other pickled object is refused by :class:`UnsafeCheckpointError` naming its type, before anything
from the file runs.

A file that torch cannot read because it is incomplete (an interrupted save or copy) raises
:class:`CorruptCheckpointError` naming the file and its size, instead of torch's anonymous
``PytorchStreamReader failed reading zip archive``.
"""
import inspect
import os
import os.path as osp
import pickle
import zipfile
from typing import Any, Callable, List, Optional, Tuple, Union

import numpy as np
import torch
from mmengine.logging import HistoryBuffer
from mmengine.runner import CheckpointLoader

__all__ = [
    'CorruptCheckpointError', 'UnsafeCheckpointError', 'mmengine_safe_globals',
    'allow_mmengine_checkpoint_types', 'load_local_checkpoint', 'setup_safe_checkpoint_loading'
]

SafeGlobal = Union[Callable, Tuple[Callable, str]]


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint holds a pickled object that mmengine never writes."""


class CorruptCheckpointError(RuntimeError):
    """A checkpoint file is incomplete (truncated) or not a torch checkpoint at all."""


# HistoryBuffer registers these four itself; others come through HistoryBuffer.register_statistics.
_BUILTIN_STATISTICS = frozenset({'min', 'max', 'current', 'mean'})


def _history_buffer_method(obj: Any, name: str) -> Callable:
    """Stand-in for ``builtins.getattr`` during unpickling: only ``HistoryBuffer.<statistic>``."""
    allowed = _BUILTIN_STATISTICS | set(HistoryBuffer._statistics_methods)
    method = inspect.getattr_static(obj, name, None) if obj is HistoryBuffer else None
    if not (name in allowed and inspect.isfunction(method)
            and method.__qualname__ == f'HistoryBuffer.{name}'):
        raise UnsafeCheckpointError(
            f'checkpoint asks for getattr({getattr(obj, "__qualname__", type(obj).__name__)}, '
            f'{name!r}); only the statistics methods of mmengine HistoryBuffer are allowed')
    return method


def mmengine_safe_globals() -> List[SafeGlobal]:
    """The globals that checkpoints written by mmengine's Runner contain, and nothing else."""
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy < 2
        from numpy.core import multiarray

    numpy_globals: List[SafeGlobal] = [
        np.ndarray, np.dtype, multiarray._reconstruct, multiarray.scalar
    ]
    # Checkpoints written under numpy 1.x name the same functions under numpy.core.
    numpy_globals += [(multiarray._reconstruct, 'numpy.core.multiarray._reconstruct'),
                      (multiarray.scalar, 'numpy.core.multiarray.scalar')]
    # numpy 2 may pickle a dtype through its class (numpy.dtypes.Float64DType, ...).
    numpy_globals += sorted({type(np.dtype(c)) for c in '?bhilqBHILQefdgFDGUSV'}, key=str)
    return numpy_globals + [HistoryBuffer, (_history_buffer_method, 'builtins.getattr')]


def allow_mmengine_checkpoint_types() -> None:
    """Add :func:`mmengine_safe_globals` to torch's weights-only allow-list (idempotent)."""
    torch.serialization.add_safe_globals(mmengine_safe_globals())


def _foreign_globals(filename: str) -> List[str]:
    try:
        return torch.serialization.get_unsafe_globals_in_checkpoint(filename)
    except Exception:  # legacy (non-zip) format: torch cannot list them; its message must do
        return []


_ZIP_MAGIC = b'PK\x03\x04'


def _damage(filename: str) -> Optional[str]:
    """Why the file cannot be a complete torch checkpoint, or None if its container is intact.

    Only called after ``torch.load`` failed, so the full read costs nothing on the normal path.
    """
    with open(filename, 'rb') as f:
        head = f.read(len(_ZIP_MAGIC))
    if not head:
        return 'the file is empty'
    if head != _ZIP_MAGIC:
        # legacy (pre-1.6) pickles are not checked here; a prefix of the zip magic is a stub
        return 'it ends inside the zip header' if _ZIP_MAGIC.startswith(head) else None
    try:
        with zipfile.ZipFile(filename) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        return f'its zip archive is cut short ({err})'
    return f'archive member {bad} is corrupt' if bad else None


def load_local_checkpoint(filename: str, map_location: Optional[Any] = None) -> Any:
    """Load a local checkpoint with ``weights_only=True`` and the mmengine allow-list."""
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    try:
        return torch.load(filename, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError) as err:
        damage = _damage(filename)
        if damage is not None:
            raise CorruptCheckpointError(
                f'{filename} is not a complete checkpoint ({os.path.getsize(filename)} bytes; '
                f'{damage}): it was probably cut short by an interrupted save or copy. '
                f'torch says: {str(err).splitlines()[0] if str(err) else type(err).__name__}'
            ) from err
        if not isinstance(err, pickle.UnpicklingError):
            raise

        foreign = _foreign_globals(filename)
        what = f'foreign pickled type(s) {", ".join(foreign)}' if foreign else str(err)
        raise UnsafeCheckpointError(
            f'Refusing to load {filename}: it holds {what}. mmext loads checkpoints with '
            'weights_only=True and allows only what mmengine writes (tensors, numpy arrays and '
            'scalars, HistoryBuffer). If you trust the file, re-save its state_dict with '
            'torch.load(path, weights_only=False) in a separate step.') from err


def setup_safe_checkpoint_loading() -> None:
    """Make mmengine's loader for local paths use :func:`load_local_checkpoint`."""
    allow_mmengine_checkpoint_types()
    CheckpointLoader.register_scheme(prefixes='', loader=load_local_checkpoint, force=True)
