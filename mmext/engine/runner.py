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
"""
import copy
from typing import Dict, Optional

import torch
import torch.nn as nn
from mmengine.dist import is_distributed
from mmengine.model import is_model_wrapper, revert_sync_batchnorm
from mmengine.runner import Runner as MMEngineRunner

from mmext.registry import MODEL_WRAPPERS, RUNNERS
from mmext.utils.dist import init_cpu_dist

from .checkpoint_guards import CheckpointGuardsMixin

__all__ = ['Runner']


@RUNNERS.register_module()
class Runner(CheckpointGuardsMixin, MMEngineRunner):
    """:class:`mmengine.runner.Runner` with CPU (gloo) distributed training."""

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
