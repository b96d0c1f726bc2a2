"""Build a config's model and test dataloader outside a Runner, as ``mmext.Runner`` builds them.

Shared by the tools that run a model without training it (``tools/analysis/get_flops.py``,
``tools/analysis/benchmark.py``).  Two things the Runner does that ``MODELS.build(cfg.model)``
alone would miss are done here: the top-level ``data_preprocessor`` of mmpretrain-style configs
is merged into the model, and ``model.dataset='train_dataloader'`` (recommenders: the item
count comes from the training data) is replaced by the train dataloader's dataset config.
"""
import copy
from contextlib import contextmanager
from typing import Any, Dict, Iterator, Optional

import torch.nn as nn
from mmengine.config import Config
from mmengine.registry import MODELS, DefaultScope
from mmengine.runner import Runner, load_checkpoint
from torch.utils.data import DataLoader

from mmext.engine.data_checks import TRAIN_DATASET


def load_config(path: str, cfg_options: Optional[Dict[str, Any]] = None) -> Config:
    """``Config.fromfile`` (inheritance, ``mmdet::`` bases) with ``--cfg-options`` applied."""
    cfg = Config.fromfile(path)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if 'model' not in cfg:
        raise KeyError(f'{path}: no `model` key')
    return cfg


@contextmanager
def config_scope(cfg: Config) -> Iterator[None]:
    """The config's ``default_scope`` for the registries, for the duration of the block (a
    scoped override: callers such as tests keep their own default scope)."""
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope', 'mmext')):
        yield


def model_config(cfg: Config) -> Dict[str, Any]:
    """``cfg.model`` as the Runner would build it (see the module docstring)."""
    model = copy.deepcopy(cfg.model)
    if cfg.get('data_preprocessor') is not None:
        model.setdefault('data_preprocessor', copy.deepcopy(cfg.data_preprocessor))
    if model.get('dataset') == TRAIN_DATASET:
        train = (cfg.get('train_dataloader') or {}).get('dataset')
        if train is None:
            raise ValueError(f"model.dataset='{TRAIN_DATASET}' takes the item count from "
                             'train_dataloader.dataset, but the config has none')
        model['dataset'] = copy.deepcopy(train)
    return model


def build_model(cfg: Config, checkpoint: Optional[str] = None, device: str = 'cpu') -> nn.Module:
    """The config's model in eval mode on ``device``, with ``checkpoint``'s weights if given.

    Call inside :func:`config_scope`.
    """
    model = MODELS.build(model_config(cfg))
    if checkpoint is not None:
        load_checkpoint(model, checkpoint, map_location='cpu', logger='current')
    return model.to(device).eval()


def build_test_dataloader(cfg: Config) -> DataLoader:
    """The config's ``test_dataloader`` (``val_dataloader`` when it has none).

    Call inside :func:`config_scope`.
    """
    loader = cfg.get('test_dataloader') or cfg.get('val_dataloader')
    if not loader or 'dataset' not in loader:
        raise KeyError('the config has no test_dataloader (nor val_dataloader) with a dataset')
    return Runner.build_dataloader(copy.deepcopy(loader), seed=None)
