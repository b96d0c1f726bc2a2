"""Session-parallel mini-batches (Hidasi et al., "Session-based Recommendations with Recurrent
Neural Networks", ICLR 2016, Sec. 3.1.1 and Fig. 2).

The sessions are laid out side by side in ``batch_size`` *slots*.  Each slot walks one session
event by event; when its session has no next event the slot takes the next unused session.  A
step's mini-batch holds, per slot, one *input event* (an event that has a next event in its
session, which is the target).  A slot's hidden state must be reset exactly when its input event
is the first event of a session, so the reset mask is a pure function of the batch's events and
cannot go stale (a flaw Hidasi & Czapp, RecSys 2023, found in third-party ports).  When sessions
run out, slots go idle (event ``-1``) until the last session ends, so every event is used; the
official code shrinks the batch instead, which has the same effect on the computed loss.

This fits mmengine's Runner as a *batch sampler* over a dataset whose indices are input events:
:class:`SessionParallelBatchSampler` yields one list of ``batch_size`` event indices per step
(``-1`` = idle slot), the dataset's ``__getitems__`` turns it into one batch dict and
:func:`session_parallel_collate` hands it to the model as ``{'inputs': batch}``.  The session
order is a fresh permutation per epoch (seeded by the wrapped sampler's seed and epoch, so
resuming reproduces it) or, with ``shuffle=False``, the dataset's order (sessions by start
time).  Under distributed training
(``shuffle=True``) each process takes every ``world_size``-th session of the epoch's order.
Evaluation must run in one process: mmengine gathers equal-sized per-rank result lists, which
session-parallel evaluation does not produce.
"""
import heapq
from typing import Iterator, Optional

import numpy as np
from mmengine.dist import get_dist_info
from torch.utils.data import Sampler

from mmext.registry import DATA_SAMPLERS, FUNCTIONS

__all__ = ['session_parallel_schedule', 'SessionParallelBatchSampler', 'session_parallel_collate']


def session_parallel_schedule(offsets: np.ndarray, order: np.ndarray,
                              batch_size: int) -> np.ndarray:
    """The input-event index of every (step, slot), ``-1`` where a slot is idle.

    Args:
        offsets: ``(S + 1,)`` start offsets of S contiguous sessions in the event array.
        order: the order in which slots take sessions (a permutation of ``range(S)``).
        batch_size: number of slots.

    Returns:
        ``(steps, batch_size)`` int64 array.  A session of length L contributes its first L - 1
        events (each predicts its successor) to consecutive steps of one slot; a slot takes its
        next session at the step after its current one ends, in ``order``.
    """
    if batch_size < 1:
        raise ValueError(f'batch_size must be >= 1, got {batch_size}')
    lengths = np.diff(offsets)[order] - 1  # input events per session
    if (lengths < 1).any():
        bad = np.asarray(order)[lengths < 1][:5]
        raise ValueError(f'sessions {bad.tolist()} have fewer than 2 events; filter them first')
    slots = np.empty(len(order), dtype=np.int64)
    starts = np.empty(len(order), dtype=np.int64)
    # Slots free up in step order; ties go to the lower slot, as the official iterator does.
    free = [(0, k) for k in range(min(batch_size, len(order)))]
    heapq.heapify(free)
    for n, length in enumerate(lengths.tolist()):
        t, k = heapq.heappop(free)
        slots[n], starts[n] = k, t
        heapq.heappush(free, (t + length, k))
    steps = int((starts + lengths).max()) if len(order) else 0
    sched = np.full((steps, batch_size), -1, dtype=np.int64)
    # Vectorised fill: event e of session n sits at (starts[n] + e, slots[n]).
    rep = np.repeat(np.arange(len(order)), lengths)
    within = np.arange(len(rep)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    sched[starts[rep] + within, slots[rep]] = offsets[:-1][np.asarray(order)[rep]] + within
    return sched


@DATA_SAMPLERS.register_module()
class SessionParallelBatchSampler(Sampler):
    """Batch sampler yielding session-parallel steps (or groups of steps) of a
    :class:`SessionDataset`.

    Args:
        sampler: the sampler mmengine builds from ``train_dataloader.sampler``; only its ``seed``
            and ``epoch`` are used (mmengine's ``DistSamplerSeedHook`` sets the epoch through
            ``batch_sampler.sampler``).
        batch_size: number of slots (``train_dataloader.batch_size``).
        shuffle: a new session order each epoch; ``False`` keeps the dataset's order.
        drop_idle: skip steps where fewer than ``min_active`` slots are busy (the tail).
        min_active: see ``drop_idle``.
        group_steps: for evaluation: yield *groups* of consecutive steps (a list of step lists),
            each ending at a step that scores at least one target, and drop the trailing steps
            that score none.  mmengine's val/test loops cannot take an iteration without
            predictions, which leave-one-out splits (one scored event per sequence) would
            otherwise produce.

    Dataset indices are the dataset's *input events*; the yielded lists index its event array
    (``dataset.offsets`` sessions), so ``dataset.__getitems__`` must accept them.
    """

    def __init__(self,
                 sampler: Sampler,
                 batch_size: int,
                 shuffle: bool = True,
                 drop_idle: bool = False,
                 min_active: int = 1,
                 group_steps: bool = False,
                 dataset: Optional[object] = None) -> None:
        self.sampler = sampler
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.drop_idle, self.min_active = drop_idle, min_active
        self.group_steps = group_steps
        self.dataset = dataset if dataset is not None else getattr(sampler, 'dataset', None)
        if self.dataset is None or not hasattr(self.dataset, 'offsets'):
            raise TypeError('SessionParallelBatchSampler needs a session dataset (with '
                            '`offsets`); wrap a sampler built on it or pass dataset=')
        self._cache_key: Optional[tuple] = None
        self._schedule: Optional[np.ndarray] = None
        self._groups: Optional[np.ndarray] = None

    def _epoch_seed(self) -> tuple:
        seed = getattr(self.sampler, 'seed', 0)
        return (0 if seed is None else int(seed), int(getattr(self.sampler, 'epoch', 0)))

    def schedule(self) -> np.ndarray:
        """The current epoch's ``(steps, batch_size)`` schedule (cached per epoch)."""
        key = self._epoch_seed()
        if key != self._cache_key:
            n = self.dataset.num_sessions
            order = (
                np.random.default_rng(list(key)).permutation(n) if self.shuffle else np.arange(n))
            rank, world_size = get_dist_info()
            if world_size > 1 and self.shuffle:  # training: each process its share of sessions
                order = order[rank::world_size]
            sched = session_parallel_schedule(self.dataset.offsets, order, self.batch_size)
            if self.drop_idle:
                sched = sched[(sched >= 0).sum(1) >= self.min_active]
            self._cache_key, self._schedule = key, sched
            if self.group_steps:
                scored = np.asarray(getattr(self.dataset, 'evaluate_mask'))
                has = ((sched >= 0) & scored[sched.clip(min=0)]).any(1)
                self._groups = np.flatnonzero(has) + 1  # end (exclusive) of each group
        return self._schedule

    def __iter__(self) -> Iterator[list]:
        sched = self.schedule()
        if not self.group_steps:
            for row in sched:
                yield row.tolist()
            return
        start = 0
        for end in self._groups.tolist():
            yield sched[start:end].tolist()
            start = end

    def __len__(self) -> int:
        sched = self.schedule()
        return len(self._groups) if self.group_steps else len(sched)


@FUNCTIONS.register_module()
def session_parallel_collate(batch: dict) -> dict:
    """The dataset's ``__getitems__`` already built the batch dict: wrap it as ``{'inputs':
    batch}`` for ``model(**data)`` (the recommender contract, as :func:`sequence_collate`)."""
    if not isinstance(batch, dict):
        raise TypeError('session_parallel_collate expects the batch dict built by '
                        'SessionDataset.__getitems__; use SessionParallelBatchSampler as the '
                        f'batch_sampler (got {type(batch).__name__})')
    return dict(inputs=batch)
