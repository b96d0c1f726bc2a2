"""A log history that grows in amortised constant time, for the Runner's message hub.

mmengine's ``HistoryBuffer.update`` stores each logged value with ``np.append``, which copies the
whole history: a run logging ``k`` scalars per iteration spends time proportional to the number
of iterations so far on every iteration, i.e. quadratic in the run length.  Measured on this
project's 2-core VM (``tools/benchmark/bench_history_buffer.py``, docs/benchmarks.md, "Runner
overhead"): 3.3 µs per update at 10 entries, 11.7 µs at 15,000, 74 µs at 200,000; this buffer
takes 1.7-3.4 µs at all of them.

:class:`GrowingHistoryBuffer` keeps mmengine's interface and results (``data``, the statistics,
``max_length``, the dtype promotion of ``np.append``) over a capacity-doubling array.  It pickles
and deep-copies *as a plain* ``HistoryBuffer``, so checkpoints stay loadable without mmext.
:func:`use_growing_history_buffers` makes a message hub store its scalars in it: every buffer
put into its ``log_scalars`` (new keys, resumed checkpoints) is converted on insertion.
"""
from collections import OrderedDict
from typing import Any, Union

import numpy as np
from mmengine.logging import HistoryBuffer, MessageHub

__all__ = ['GrowingHistoryBuffer', 'use_growing_history_buffers']


class GrowingHistoryBuffer(HistoryBuffer):
    """``HistoryBuffer`` over a capacity-doubling array: ``update`` is amortised O(1).

    The live history is ``_buf[_start:_end]``; ``_log_history`` and ``_count_history`` are views
    of it, so every inherited statistic reads the same values as mmengine's buffer would.
    The inherited ``__init__`` assigns both histories through the setters below.
    """

    # The parent reads and assigns these attributes; both go to the backing arrays.
    @property
    def _log_history(self) -> np.ndarray:
        return self._log_buf[self._start:self._end]

    @_log_history.setter
    def _log_history(self, value: np.ndarray) -> None:
        self._log_buf = np.array(value)
        self._start, self._end = 0, len(self._log_buf)

    @property
    def _count_history(self) -> np.ndarray:
        return self._count_buf[self._start:self._end]

    @_count_history.setter
    def _count_history(self, value: np.ndarray) -> None:
        self._count_buf = np.array(value)

    def _reserve(self, log_dtype: np.dtype, count_dtype: np.dtype) -> None:
        """Room for one more entry at ``_end`` with the given dtypes: the live part is moved
        to the front of arrays twice its size (or just retyped) when needed."""
        n = self._end - self._start
        full = self._end >= len(self._log_buf)
        if not full and log_dtype == self._log_buf.dtype and count_dtype == self._count_buf.dtype:
            return
        capacity = max(2 * n, 16) if full else len(self._log_buf)
        log_buf = np.empty(capacity, dtype=log_dtype)
        count_buf = np.empty(capacity, dtype=count_dtype)
        log_buf[:n] = self._log_buf[self._start:self._end]
        count_buf[:n] = self._count_buf[self._start:self._end]
        self._log_buf, self._count_buf, self._start, self._end = log_buf, count_buf, 0, n

    def update(self, log_val: Union[int, float], count: int = 1) -> None:
        """Append ``log_val`` (and its ``count``); the oldest entry is dropped beyond
        ``max_length``.  Same checks and dtypes as mmengine's ``update``."""
        if (not isinstance(log_val, (int, float)) or not isinstance(count, (int, float))):
            raise TypeError(f'log_val must be int or float but got {type(log_val)}, count must '
                            f'be int but got {type(count)}')
        self._reserve(
            np.result_type(self._log_buf.dtype, type(log_val)),
            np.result_type(self._count_buf.dtype, type(count)))
        self._log_buf[self._end] = log_val
        self._count_buf[self._end] = count
        self._end += 1
        if self._end - self._start > self.max_length:
            self._start = self._end - self.max_length

    def __reduce__(self) -> Any:
        # A plain HistoryBuffer with the live history: no mmext needed to load a checkpoint.
        return (HistoryBuffer, (self._log_history.copy(), self._count_history.copy(),
                                self.max_length))


class _GrowingScalars(OrderedDict):
    """A message hub's ``log_scalars`` that converts each HistoryBuffer put into it."""

    def __setitem__(self, key: str, value: Any) -> None:
        if type(value) is HistoryBuffer:
            log, count = value.data
            value = GrowingHistoryBuffer(log, count, value.max_length)
        super().__setitem__(key, value)


def use_growing_history_buffers(hub: MessageHub) -> MessageHub:
    """Make ``hub`` keep its log scalars in :class:`GrowingHistoryBuffer` from now on (its
    existing ones included); idempotent.  Returns ``hub``."""
    if not isinstance(hub._log_scalars, _GrowingScalars):
        scalars = _GrowingScalars()
        for key, value in hub._log_scalars.items():
            scalars[key] = value
        hub._log_scalars = scalars
    return hub
