"""mmengine's Runner, made to train distributed on CPU-only machines as well.

Registered as ``Runner`` in the mmext scope, so every config with ``default_scope = 'mmext'`` (and
every run of ``tools/train.py``) uses it.  With a GPU it behaves exactly like mmengine's Runner.
Without one, three things of mmengine's assume CUDA and are replaced:

* process-group creation (``torch.cuda.set_device`` before ``init_process_group``): gloo instead;
* DDP wrapping (``device_ids=[LOCAL_RANK]``): CPU modules need ``device_ids=None``;
* SyncBN layers (no CPU kernel): reverted to plain BatchNorm, statistics stay per process.

Loading, resuming and saving checkpoints come from :class:`CheckpointGuardsMixin`
(``checkpoint_guards.py``): checkpoints of another model are refused, auto-resume skips
incomplete checkpoints, saves are atomic.

A resumed run continues the uninterrupted one exactly (issue #21): every checkpoint also holds
the run's random streams (``meta['rng_state']``, :mod:`.rng_state`) and, for a mid-epoch one, the
batches of the epoch already trained (``meta['batches_done_in_epoch']``); the train loops of
:mod:`.loops`, swapped in for mmengine's, put them back and continue the epoch.

The message hub logs into :class:`.history_buffer.GrowingHistoryBuffer`: mmengine's buffers
copy their whole history on every update, which makes long runs slow down step by step.

The model is checked against the data the run actually uses by :class:`DataChecksMixin`
(``data_checks.py``): a recommender's item count, a detector's number of classes.

Only rank 0 writes the test metrics' ``<timestamp>.json``: mmengine's ``LoggerHook`` dumps it
from every rank into the same file, and two ranks whose logs differ in length (their ``time``
values) leave a file with trailing bytes of the longer one (``JSONDecodeError: Extra data``,
seen in ``tools/dist_test.sh`` with 2 ranks).
"""
import copy
import inspect
import types
from typing import Dict, Iterable, Optional, Union

import torch
import torch.nn as nn
from mmengine.dist import is_distributed, is_main_process
from mmengine.hooks import Hook, LoggerHook
from mmengine.model import is_model_wrapper, revert_sync_batchnorm
from mmengine.runner import BaseLoop
from mmengine.runner import EpochBasedTrainLoop as MMEngineEpochBasedTrainLoop
from mmengine.runner import IterBasedTrainLoop as MMEngineIterBasedTrainLoop
from mmengine.runner import Runner as MMEngineRunner

from mmext.registry import LOOPS, MODEL_WRAPPERS, RUNNERS
from mmext.utils.dist import init_cpu_dist

from .checkpoint_guards import CheckpointGuardsMixin
from .data_checks import TRAIN_DATASET, DataChecksMixin
from .history_buffer import use_growing_history_buffers
from .log_filters import ForeignNoticeFilter
from .loops import MID_EPOCH_KEY, EpochBasedTrainLoop, IterBasedTrainLoop
from .rng_state import capture_rng_state

__all__ = ['Runner', 'TRAIN_DATASET']

#: checkpoint ``meta`` key of the random streams (:func:`.rng_state.capture_rng_state`)
RNG_STATE_KEY = 'rng_state'
#: mmengine's train loops and the mmext ones that replace them
_EXACT_LOOPS = {
    MMEngineEpochBasedTrainLoop: EpochBasedTrainLoop,
    MMEngineIterBasedTrainLoop: IterBasedTrainLoop
}


def _log_test_epoch(hook: LoggerHook, runner, metrics: Optional[Dict[str, float]] = None) -> None:
    """``LoggerHook.after_test_epoch`` without its JSON dump: the log line only."""
    _, log_str = runner.log_processor.get_log_after_epoch(
        runner, len(runner.test_dataloader), 'test', with_non_scalar=True)
    runner.logger.info(log_str)


def leave_test_json_to_rank0(hooks: Iterable[Hook]) -> None:
    """On ranks other than 0, stop each ``LoggerHook`` from writing the test metrics' JSON file
    that rank 0 writes too (the module docstring says why)."""
    if is_main_process():
        return
    for hook in hooks:
        if isinstance(hook, LoggerHook):
            hook.after_test_epoch = types.MethodType(_log_test_epoch, hook)


@RUNNERS.register_module()
class Runner(CheckpointGuardsMixin, DataChecksMixin, MMEngineRunner):
    """:class:`mmengine.runner.Runner` with CPU (gloo) distributed training."""

    def build_logger(self, *args, **kwargs):
        logger = super().build_logger(*args, **kwargs)
        logger.addFilter(ForeignNoticeFilter())  # mmengine's own FileClient deprecation notices
        return logger

    def build_message_hub(self, message_hub: Optional[Dict] = None):
        """mmengine's message hub, logging into amortised-growth buffers
        (:mod:`.history_buffer`: mmengine's copy the whole history on every update)."""
        return use_growing_history_buffers(super().build_message_hub(message_hub))

    def register_hooks(self, default_hooks=None, custom_hooks=None) -> None:
        super().register_hooks(default_hooks, custom_hooks)
        leave_test_json_to_rank0(self._hooks)

    @staticmethod
    def _cpu_only() -> bool:
        return not torch.cuda.is_available()

    def setup_env(self, env_cfg: Dict) -> None:
        if self.distributed and not is_distributed() and self._cpu_only():
            init_cpu_dist(self.launcher, **env_cfg.get('dist_cfg', {}))
        super().setup_env(env_cfg)  # skips init_dist once a group exists

    def wrap_model(self, model_wrapper_cfg: Optional[Dict], model: nn.Module) -> nn.Module:
        if not (self.distributed and self._cpu_only()) or is_model_wrapper(model):
            return super().wrap_model(model_wrapper_cfg, model)
        if self.cfg.get('sync_bn') is not None:
            self.logger.warning('sync_bn is ignored: SyncBatchNorm has no CPU implementation')
        model = revert_sync_batchnorm(model)
        cfg = copy.deepcopy(model_wrapper_cfg) if model_wrapper_cfg else dict(
            broadcast_buffers=False,
            find_unused_parameters=self.cfg.get('find_unused_parameters', False))
        cfg.setdefault('type', 'MMDistributedDataParallel')
        wrapper_cls = MODEL_WRAPPERS.get(cfg['type'])
        default_args = dict(module=model)
        if issubclass(wrapper_cls, torch.nn.parallel.DistributedDataParallel):
            default_args['device_ids'] = None  # CPU module: DDP must not pin a device
        return MODEL_WRAPPERS.build(cfg, default_args=default_args)

    # ---------------------------------------------------------------- exact resume
    @staticmethod
    def _exact_loop_cfg(loop: Dict) -> Dict:
        """mmengine's epoch/iteration loop config -> the same config for mmext's loop."""
        cfg = copy.deepcopy(loop)
        if 'type' not in cfg:
            if 'by_epoch' not in cfg:
                return cfg  # mmengine raises its own error
            by_epoch = cfg.pop('by_epoch')
            cfg['type'] = EpochBasedTrainLoop if by_epoch else IterBasedTrainLoop
            return cfg
        loop_type = cfg['type']
        cls = LOOPS.get(loop_type) if isinstance(loop_type, str) else loop_type
        if cls in _EXACT_LOOPS:
            cfg['type'] = _EXACT_LOOPS[cls]
        return cfg

    def save_checkpoint(self, out_dir: str, filename: str, *args, **kwargs) -> None:
        """Also store the random streams and, mid-epoch, the batches of the epoch trained."""
        params = inspect.signature(MMEngineRunner.save_checkpoint).bind(
            self, out_dir, filename, *args, **kwargs).arguments
        params.pop('self')
        meta = dict(params.get('meta') or {})
        loop = self._train_loop if isinstance(self._train_loop, BaseLoop) else None
        meta[RNG_STATE_KEY] = capture_rng_state(self.model, getattr(loop, 'dataloader', None))
        if isinstance(loop, EpochBasedTrainLoop) and not params.get('by_epoch', True):
            # called from after_train_iter: the current batch is trained, _iter not yet counted
            meta[MID_EPOCH_KEY] = loop.iter + 1 - loop.epoch_start_iter
        params['meta'] = meta
        super().save_checkpoint(**params)

    def load_checkpoint(self, filename: str, *args, **kwargs):
        checkpoint = super().load_checkpoint(filename, *args, **kwargs)
        self._loaded_meta = checkpoint.get('meta', {}) if isinstance(checkpoint, dict) else {}
        return checkpoint

    def resume(self, filename: str, *args, **kwargs) -> None:
        """mmengine's resume; the random streams and the mid-epoch position are handed to the
        train loop, which puts them back where the uninterrupted run was (:mod:`.loops`)."""
        self._loaded_meta = {}
        super().resume(filename, *args, **kwargs)
        meta = self._loaded_meta or {}
        self.resumed_rng_state = meta.get(RNG_STATE_KEY)
        loop = self.train_loop
        if not isinstance(loop, (EpochBasedTrainLoop, IterBasedTrainLoop)):
            self.logger.warning(f'{type(loop).__name__} is not an mmext train loop: the resumed '
                                'run does not restore the random streams of the checkpoint')
        elif self.resumed_rng_state is None:
            self.logger.warning(f'{filename} holds no random-stream state (saved by an older '
                                'mmext or another runner): the resumed run draws other random '
                                'numbers than the uninterrupted one')
        elif self.world_size > 1:
            self.logger.warning('Distributed resume: every rank restores the random streams '
                                'rank 0 had when it saved')
        if isinstance(loop, EpochBasedTrainLoop):
            done = meta.get(MID_EPOCH_KEY)
            if done is None:  # older checkpoint: infer from the iteration count
                done = loop.iter - loop.epoch * len(loop.dataloader)
                done = done if 0 < done < len(loop.dataloader) else 0
            loop.resumed_batches = int(done)
            if done:
                self.logger.info(f'Resuming inside epoch {loop.epoch + 1}: its first {done} '
                                 'batches are trained already and skipped')
                model = self.model.module if is_model_wrapper(self.model) else self.model
                if hasattr(model, 'reset_state'):  # e.g. GRU4Rec's session-parallel slots
                    self.logger.warning(
                        f'{type(model).__name__} carries state between batches that the '
                        'checkpoint does not hold: the rest of this epoch is not an exact '
                        'continuation (epoch checkpoints are)')

    def build_train_loop(self, loop: Union[BaseLoop, Dict]) -> BaseLoop:
        if isinstance(loop, dict):
            loop = self._exact_loop_cfg(loop)
        loop = super().build_train_loop(loop)
        self.check_loop_data(loop, 'train_dataloader')
        return loop

    def build_val_loop(self, loop: Union[BaseLoop, Dict]) -> BaseLoop:
        loop = super().build_val_loop(loop)
        self.check_loop_data(loop, 'val_dataloader')
        return loop

    def build_test_loop(self, loop: Union[BaseLoop, Dict]) -> BaseLoop:
        loop = super().build_test_loop(loop)
        self.check_loop_data(loop, 'test_dataloader')
        return loop
