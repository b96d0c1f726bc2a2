"""mmengine's train loops, made to resume exactly (issue #21, "Resume exactness").

Registered as ``EpochBasedTrainLoop`` and ``IterBasedTrainLoop`` in the mmext scope, so configs
with ``default_scope = 'mmext'`` get them; :class:`mmext.engine.Runner` also swaps them in for
``train_cfg = dict(by_epoch=...)`` and for mmengine's classes.  Three changes:

* **validation does not move the random streams**: ``val_loop.run()`` inside training runs
  under :func:`~mmext.engine.rng_state.preserved_rng_state`.  A checkpoint is written before the
  validation that follows it, and a resumed run does not repeat that validation, so otherwise
  the two runs would continue from different streams (creating a DataLoader iterator alone draws
  a number from torch's generator).  It also makes training independent of ``val_interval``.
* **the random streams saved in the checkpoint are put back** (``runner.resumed_rng_state``,
  see :meth:`mmext.engine.Runner.resume`) at the point where the uninterrupted run was when it
  saved: at the start of the epoch (before ``before_train_epoch``) for an epoch-boundary
  checkpoint, right before the first batch is read for a mid-epoch one.
* **an epoch-based run resumed from a mid-epoch checkpoint** (``CheckpointHook(by_epoch=False)``
  in an epoch loop) **continues the epoch** instead of restarting it: the batches the epoch
  already trained are skipped in the batch sampler, i.e. their indices are drawn and dropped
  without reading any data.  mmengine restarts the epoch, training those batches twice.
"""
import itertools
import logging
from typing import Any, Iterator, List, Optional

import torch
from mmengine.logging import print_log
from mmengine.runner import EpochBasedTrainLoop as MMEngineEpochBasedTrainLoop
from mmengine.runner import IterBasedTrainLoop as MMEngineIterBasedTrainLoop
from torch.utils.data import DataLoader, IterableDataset

from mmext.registry import LOOPS

from .rng_state import preserved_rng_state, restore_rng_state

__all__ = ['EpochBasedTrainLoop', 'IterBasedTrainLoop', 'MID_EPOCH_KEY']

#: checkpoint ``meta`` key: batches of the current epoch already trained (mid-epoch checkpoints)
MID_EPOCH_KEY = 'batches_done_in_epoch'


class _SkipBatches:
    """A batch sampler without its first ``skip`` batches (indices drawn and dropped)."""

    def __init__(self, batch_sampler: Any, skip: int) -> None:
        self.batch_sampler, self.skip = batch_sampler, skip

    def __iter__(self) -> Iterator[List[int]]:
        return itertools.islice(iter(self.batch_sampler), self.skip, None)

    def __len__(self) -> int:
        return max(len(self.batch_sampler) - self.skip, 0)


def _rest_of_epoch(loader: DataLoader, skip: int) -> Optional[DataLoader]:
    """A DataLoader for ``loader``'s epoch without its first ``skip`` batches, or None if the
    loader has no batch sampler to skip in (iterable dataset, ``batch_size=None``)."""
    if loader.batch_sampler is None or isinstance(loader.dataset, IterableDataset):
        return None
    return DataLoader(
        loader.dataset,
        batch_sampler=_SkipBatches(loader.batch_sampler, skip),
        num_workers=loader.num_workers,
        collate_fn=loader.collate_fn,
        pin_memory=loader.pin_memory,
        timeout=loader.timeout,
        worker_init_fn=loader.worker_init_fn,
        multiprocessing_context=loader.multiprocessing_context,
        generator=loader.generator,
        prefetch_factor=loader.prefetch_factor,
        persistent_workers=False,
        pin_memory_device=loader.pin_memory_device)


def _restore(loop: Any) -> None:
    """Put back the random streams of the checkpoint being resumed, once."""
    runner = loop.runner
    state = getattr(runner, 'resumed_rng_state', None)
    if state is None:
        return
    runner.resumed_rng_state = None
    missed = restore_rng_state(state, runner.model, loop.dataloader)
    if missed:
        print_log(
            'Resume: random streams not restored (not in the checkpoint or not in this run): '
            f'{", ".join(missed)}; the run is not an exact continuation',
            logger='current',
            level=logging.WARNING)


def _validate(loop: Any) -> None:
    with preserved_rng_state(loop.runner.model, loop.dataloader):
        loop.runner.val_loop.run()


@LOOPS.register_module()
class EpochBasedTrainLoop(MMEngineEpochBasedTrainLoop):
    """mmengine's ``EpochBasedTrainLoop`` that resumes exactly (see module doc)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: batches of the current epoch trained before the resumed checkpoint was saved
        self.resumed_batches = 0
        self._epoch_start_iter = 0

    @property
    def epoch_start_iter(self) -> int:
        """The iteration the current epoch started at."""
        return self._epoch_start_iter

    def run(self) -> torch.nn.Module:
        """mmengine's loop, with validation under :func:`preserved_rng_state`."""
        self.runner.call_hook('before_train')
        while self._epoch < self._max_epochs and not self.stop_training:
            self.run_epoch()
            self._decide_current_val_interval()
            if (self.runner.val_loop is not None and self._epoch >= self.val_begin
                    and (self._epoch % self.val_interval == 0 or self._epoch == self._max_epochs)):
                _validate(self)
        self.runner.call_hook('after_train')
        return self.runner.model

    def run_epoch(self) -> None:
        """Iterate one epoch, or the rest of it after a mid-epoch resume."""
        skip, self.resumed_batches = self.resumed_batches, 0
        if not skip:
            _restore(self)  # epoch-boundary checkpoint: saved after the previous epoch
        self._epoch_start_iter = self._iter - skip
        self.runner.call_hook('before_train_epoch')
        self.runner.model.train()
        loader = self.dataloader
        if skip:
            loader = _rest_of_epoch(self.dataloader, skip)
            if loader is None:  # cannot skip indices only: read and drop the batches
                print_log(
                    f'Resume: reading and dropping {skip} batches to reach the checkpoint',
                    logger='current',
                    level=logging.WARNING)
                loader = itertools.islice(self.dataloader, skip, None)
        batches = iter(loader)
        if skip:
            _restore(self)  # mid-epoch checkpoint: saved right before the next batch was read
        for idx, data_batch in enumerate(batches, start=skip):
            self.run_iter(idx, data_batch)
        self.runner.call_hook('after_train_epoch')
        self._epoch += 1


@LOOPS.register_module()
class IterBasedTrainLoop(MMEngineIterBasedTrainLoop):
    """mmengine's ``IterBasedTrainLoop`` that resumes exactly (see module doc).

    mmengine already advances the dataloader past the trained iterations on resume (reading the
    data); the random streams are put back after that, and validation leaves them alone.
    """

    def run(self) -> None:
        self.runner.call_hook('before_train')
        self.runner.call_hook('before_train_epoch')
        if self._iter > 0:
            print_log(
                f'Advance dataloader {self._iter} steps to skip data '
                'that has already been trained',
                logger='current',
                level=logging.WARNING)
            for _ in range(self._iter):
                next(self.dataloader_iterator)
        _restore(self)
        while self._iter < self._max_iters and not self.stop_training:
            self.runner.model.train()
            data_batch = next(self.dataloader_iterator)
            self.run_iter(data_batch)
            self._decide_current_val_interval()
            if (self.runner.val_loop is not None and self._iter >= self.val_begin
                    and (self._iter % self.val_interval == 0 or self._iter == self._max_iters)):
                _validate(self)
        self.runner.call_hook('after_train_epoch')
        self.runner.call_hook('after_train')
        return self.runner.model
