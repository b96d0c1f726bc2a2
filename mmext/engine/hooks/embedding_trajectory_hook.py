"""Embed a fixed probe subset of the validation set during training, for embedding trajectories.

Every ``interval`` epochs (or iterations, ``by_epoch=False``), once before training and once at
its end, :class:`EmbeddingTrajectoryHook` embeds the same probe samples with the model being
trained and writes them to ``<work_dir>/trajectory/iter_<iteration>.npz`` plus ``index.json``
(format: :mod:`mmext.engine.embedding_probe`).  ``tools/analysis/embedding_trajectory.py`` turns
them into frames: PCA, chained Procrustes alignment, k-NN outliers, a GIF.

The hook leaves training untouched: the model runs in eval mode under ``no_grad`` (every
module's training flag is restored), every random stream the run draws from -- the global ones
and the generators owned by the model and the datasets -- is put back afterwards
(:func:`mmext.engine.rng_state.preserved_rng_state`, as mmext's loops do for validation), and a
recommender's carried state (GRU4Rec) is restored.  A run with the hook trains exactly as one
without it.  Only rank 0 embeds and writes.
"""
import functools
import logging
import os.path as osp
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Dict, List, Optional, Union

from mmengine.dataset import pseudo_collate
from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.runner import IterBasedTrainLoop

from mmext.registry import DATASETS, FUNCTIONS, HOOKS

from ..embedding_probe import (INDEX_FILE, TRAJECTORY_DIR, EmbeddingProbe, read_index,
                               save_snapshot, snapshot_name, write_index)
from ..rng_state import preserved_rng_state

__all__ = ['EmbeddingTrajectoryHook']


@HOOKS.register_module()
class EmbeddingTrajectoryHook(Hook):
    """Write embedding snapshots of a fixed probe set during training.

    Args:
        interval: Snapshot every ``interval`` epochs (``by_epoch=True``) or iterations.
        by_epoch: Count ``interval`` in epochs (``EpochBasedTrainLoop`` only) or iterations.
        before_train: Also embed the untrained model (iteration 0). Defaults to True.
        save_last: Also embed after the last epoch/iteration when it is not a multiple of
            ``interval``. Defaults to True.
        probe_size: Number of probe samples (all when the dataset is smaller).
        seed: Seed of the probe's draw (``numpy.random.default_rng``; no global stream moves).
        embedding: What to embed: ``'auto'``, ``'classifier'``, ``'vit_cls_token'``,
            ``'sasrec'``, ``'gru4rec'``, ``'itc'``, ``dict(type='module', module='backbone.ln1',
            pool='cls')`` or ``dict(type='method', method='image_features')``; see
            :mod:`mmext.engine.embedding_probe`.
        split: Which of the run's dataloaders the probe comes from when ``dataset`` is None:
            ``'val'`` (default) or ``'test'``.
        dataset: A dataset config to draw the probe from instead.
        collate_fn: Its collate function config (default: mmengine's ``pseudo_collate``).
        batch_size: Probe samples per forward pass.
        label_key: Data-sample field holding the class, for the colours.
        thumbnail_size: Side of the stored input thumbnails (0: none).
        out_dir: Where to write; default ``<work_dir>/trajectory``.
    """

    priority = 'LOW'

    def __init__(self,
                 interval: int = 1,
                 by_epoch: bool = True,
                 before_train: bool = True,
                 save_last: bool = True,
                 probe_size: int = 256,
                 seed: int = 0,
                 embedding: Union[str, dict] = 'auto',
                 split: str = 'val',
                 dataset: Optional[dict] = None,
                 collate_fn: Optional[dict] = None,
                 batch_size: int = 64,
                 label_key: str = 'gt_label',
                 thumbnail_size: int = 32,
                 out_dir: Optional[str] = None) -> None:
        if not isinstance(interval, int) or interval < 1:
            raise ValueError(f'EmbeddingTrajectoryHook interval must be an int >= 1, got '
                             f'{interval!r}')
        if not isinstance(probe_size, int) or probe_size < 1:
            raise ValueError(f'EmbeddingTrajectoryHook probe_size must be an int >= 1, got '
                             f'{probe_size!r}')
        if split not in ('val', 'test'):
            raise ValueError(f"EmbeddingTrajectoryHook split must be 'val' or 'test', got "
                             f'{split!r}')
        self.interval, self.by_epoch = interval, by_epoch
        self.embed_before_train, self.save_last = before_train, save_last
        self.probe_size, self.seed, self.embedding = probe_size, seed, embedding
        self.split, self.dataset_cfg, self.collate_cfg = split, dataset, collate_fn
        self.batch_size, self.label_key = batch_size, label_key
        self.thumbnail_size, self.out_dir = thumbnail_size, out_dir
        self.probe: Optional[EmbeddingProbe] = None
        self._loader: Any = None
        self._entries: List[Dict[str, Any]] = []
        self._description: Dict[str, Any] = {}

    # ------------------------------------------------------------------ set-up
    @staticmethod
    def _model(runner):
        return runner.model.module if is_model_wrapper(runner.model) else runner.model

    def _build_probe(self, runner) -> EmbeddingProbe:
        if self.dataset_cfg is not None:
            dataset = DATASETS.build(self.dataset_cfg)
            if self.collate_cfg is None:
                collate = pseudo_collate
            else:
                cfg = dict(self.collate_cfg)
                collate = FUNCTIONS.get(cfg.pop('type'))
                if cfg:
                    collate = functools.partial(collate, **cfg)
            loader = SimpleNamespace(dataset=dataset, generator=None)
        else:
            loop = runner.val_loop if self.split == 'val' else runner.test_loop
            if loop is None:
                raise ValueError(f'EmbeddingTrajectoryHook: the run has no {self.split} '
                                 'dataloader to draw the probe from; set split= or dataset=')
            loader = loop.dataloader
            dataset, collate = loader.dataset, loader.collate_fn
        self._loader = loader
        return EmbeddingProbe(
            dataset,
            collate,
            embedding=self.embedding,
            size=self.probe_size,
            seed=self.seed,
            batch_size=self.batch_size,
            label_key=self.label_key,
            thumbnail_size=self.thumbnail_size)

    def _directory(self, runner) -> str:
        return self.out_dir or osp.join(runner.work_dir, TRAJECTORY_DIR)

    def before_train(self, runner) -> None:
        if self.by_epoch and isinstance(runner.train_loop, IterBasedTrainLoop):
            raise ValueError('EmbeddingTrajectoryHook(by_epoch=True) in an iteration-based '
                             'train loop: set by_epoch=False and interval in iterations')
        if not is_main_process():
            return
        directory = Path(self._directory(runner))
        directory.mkdir(parents=True, exist_ok=True)
        model = self._model(runner)
        # Building a dataloader or a dataset can draw from the global streams.
        with preserved_rng_state(model, runner.train_dataloader):
            self.probe = self._build_probe(runner)
            self._description = self.probe.describe(model)
        old = read_index(directory)
        self._entries = []
        if old is not None and runner.iter > 0:  # resumed: keep what precedes the checkpoint
            if old.get('probe', {}).get('indices') != self._description['indices']:
                raise ValueError(f'EmbeddingTrajectoryHook: {directory / INDEX_FILE} was written '
                                 'for other probe samples; resume with the same probe_size, '
                                 'seed and dataset, or set out_dir')
            self._entries = [e for e in old['snapshots'] if e['iter'] <= runner.iter]
        elif old is not None:  # a new run in the same work dir: its snapshots replace the old
            for entry in old['snapshots']:
                (directory / entry['file']).unlink(missing_ok=True)
        write_index(directory, self._description, self._entries)
        if self.embed_before_train and runner.iter == 0:
            self._snapshot(runner, iteration=0, epoch=0)

    # ------------------------------------------------------------------ triggers
    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch: Any = None,
                         outputs: Optional[dict] = None) -> None:
        if self.by_epoch:
            return
        if self.every_n_train_iters(runner, self.interval) or (self.save_last
                                                               and self.is_last_train_iter(runner)):
            self._snapshot(runner, iteration=runner.iter + 1, epoch=self._epochs_done(runner))

    def after_train_epoch(self, runner) -> None:
        if not self.by_epoch:
            return
        if self.every_n_epochs(runner, self.interval) or (self.save_last
                                                          and self.is_last_train_epoch(runner)):
            self._snapshot(runner, iteration=runner.iter, epoch=runner.epoch + 1)

    @staticmethod
    def _epochs_done(runner) -> float:
        """Epochs trained after the current iteration, fractional within an epoch."""
        try:
            per_epoch = len(runner.train_dataloader)
        except TypeError:  # an iterable dataset without a length
            return float(runner.epoch)
        return (runner.iter + 1) / per_epoch if per_epoch else float(runner.epoch)

    # ------------------------------------------------------------------ the snapshot
    def _snapshot(self, runner, iteration: int, epoch: float) -> None:
        if not is_main_process() or self.probe is None:
            return
        start = time.perf_counter()
        model = self._model(runner)
        # no stream the run draws from may move: the global ones, the model's and the train
        # data's generators, and those of the probe's dataset
        with preserved_rng_state(model, runner.train_dataloader), \
                preserved_rng_state(None, self._loader):
            result = self.probe.embed(model)
        directory = Path(self._directory(runner))
        name = snapshot_name(iteration)
        save_snapshot(directory / name, result, iteration, epoch)
        self._entries = [e for e in self._entries if e['iter'] != iteration]
        self._entries.append(dict(file=name, iter=int(iteration), epoch=float(epoch)))
        write_index(directory, self._description, self._entries)
        print_log(
            f'EmbeddingTrajectoryHook: {len(result.indices)} probe samples embedded at '
            f'iteration {iteration} -> {directory / name} ({time.perf_counter() - start:.2f} s)',
            logger='current',
            level=logging.INFO)
