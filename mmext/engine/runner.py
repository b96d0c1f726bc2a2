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

It also ties a recommender to the data the run actually uses (model/dataset part):

* ``model.dataset='train_dataloader'``: the model takes its item count (and GRU4Rec its item
  popularity) from the train dataloader's dataset config *as the Runner has it*, i.e. after
  ``--cfg-options`` (a ``{{_base_.train_dataset}}`` copy is frozen when the base file is parsed,
  so ``train_dataloader.dataset.ann_file=OWN.inter`` would not reach it);
* every train/val/test loop refuses to start when the model's ``num_items`` differs from its
  dataset's ``metainfo['num_items']``, naming both numbers and both data files.
"""
import copy
from typing import Any, Dict, Optional, Union

import torch
import torch.nn as nn
from mmengine.dist import is_distributed
from mmengine.model import is_model_wrapper, revert_sync_batchnorm
from mmengine.runner import BaseLoop
from mmengine.runner import Runner as MMEngineRunner
from torch.utils.data import DataLoader

from mmext.registry import MODEL_WRAPPERS, RUNNERS
from mmext.utils.dist import init_cpu_dist

from .checkpoint_guards import CheckpointGuardsMixin
from .log_filters import ForeignNoticeFilter

__all__ = ['Runner', 'TRAIN_DATASET']

#: ``model.dataset`` value meaning "the dataset of ``train_dataloader``"
TRAIN_DATASET = 'train_dataloader'


@RUNNERS.register_module()
class Runner(CheckpointGuardsMixin, MMEngineRunner):
    """:class:`mmengine.runner.Runner` with CPU (gloo) distributed training."""

    def build_logger(self, *args, **kwargs):
        logger = super().build_logger(*args, **kwargs)
        logger.addFilter(ForeignNoticeFilter())  # mmengine's own FileClient deprecation notices
        return logger

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

    # ---------------------------------------------------------------- model <-> dataset
    def build_model(self, model: Union[nn.Module, Dict]) -> nn.Module:
        if isinstance(model, dict) and model.get('dataset') == TRAIN_DATASET:
            model = copy.deepcopy(model)
            model['dataset'] = self._train_dataset_for_model()
        return super().build_model(model)

    def _train_dataset_for_model(self) -> Any:
        """The train dataloader's dataset: built if the Runner got a DataLoader, else its config
        (a deep copy: the model builds its own instance)."""
        loader = self._train_dataloader
        if isinstance(loader, DataLoader):
            return loader.dataset
        if not isinstance(loader, dict) or loader.get('dataset') is None:
            raise ValueError(f"model.dataset='{TRAIN_DATASET}' takes the item count from "
                             'train_dataloader.dataset, but this run has no train_dataloader; '
                             'give the model num_items or a dataset config instead')
        return copy.deepcopy(loader['dataset'])

    @staticmethod
    def _data_file(meta: Dict[str, Any]) -> str:
        return str(meta.get('data_file') or meta.get('path') or '<unknown file>')

    def _check_item_count(self, loop: BaseLoop, name: str) -> None:
        """Refuse a loop whose dataset has another item count than the model's table."""
        model = self.model.module if is_model_wrapper(self.model) else self.model
        num_items = getattr(model, 'num_items', None)
        dataset = getattr(getattr(loop, 'dataloader', None), 'dataset', None)
        meta = getattr(dataset, 'metainfo', None)
        if not isinstance(num_items, int) or not isinstance(meta, dict) \
                or 'num_items' not in meta or meta['num_items'] == num_items:
            return
        source = self.cfg.get('model', {}).get('dataset') if self.cfg else None
        where = (f"the model's dataset ({source.get('ann_file') or source.get('data_path')})"
                 if isinstance(source, dict) else 'the model config')
        raise ValueError(
            f'{type(model).__name__} has num_items={num_items} (from {where}) but the '
            f"{name} dataset ({self._data_file(meta)}) has {meta['num_items']} items: set "
            f"model.dataset='{TRAIN_DATASET}' to take the count from the data this run reads")

    def build_train_loop(self, loop: Union[BaseLoop, Dict]) -> BaseLoop:
        loop = super().build_train_loop(loop)
        self._check_item_count(loop, 'train_dataloader')
        return loop

    def build_val_loop(self, loop: Union[BaseLoop, Dict]) -> BaseLoop:
        loop = super().build_val_loop(loop)
        self._check_item_count(loop, 'val_dataloader')
        return loop

    def build_test_loop(self, loop: Union[BaseLoop, Dict]) -> BaseLoop:
        loop = super().build_test_loop(loop)
        self._check_item_count(loop, 'test_dataloader')
        return loop
