"""A toy regression model, dataset and hooks for runner-level tests (resume, DDP on CPU).

Imported by configs through ``custom_imports = dict(imports=['toy_model'])`` with this folder on
PYTHONPATH, so torchrun workers can build it too.  Nothing here is part of mmext.
"""
import os.path as osp
from typing import Dict, List

import torch
import torch.nn as nn
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.registry import DATASETS, HOOKS, MODELS
from torch.utils.data import Dataset


@MODELS.register_module(force=True)
class ToyRegressor(BaseModel):
    """Conv + SyncBN + linear: SyncBN has no CPU kernel, so a CPU DDP run must revert it."""

    def __init__(self, sync_bn: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, 4, 3, padding=1)
        self.bn = nn.SyncBatchNorm(4) if sync_bn else nn.BatchNorm1d(4)
        self.fc = nn.Linear(4 * 8, 1)

    def forward(self, inputs, targets=None, mode: str = 'loss'):
        x = torch.stack(inputs) if isinstance(inputs, list) else inputs
        out = self.fc(torch.relu(self.bn(self.conv(x.unsqueeze(1)))).flatten(1)).squeeze(1)
        if mode == 'loss':
            y = torch.stack(targets) if isinstance(targets, list) else targets
            return dict(loss=((out - y)**2).mean())
        return out


@DATASETS.register_module(force=True)
class ToyDataset(Dataset):
    """A fixed random regression problem: 64 samples of 8 features."""
    metainfo = dict(classes=('value', ))

    def __init__(self, length: int = 64) -> None:
        gen = torch.Generator().manual_seed(1234)
        self.x = torch.randn(length, 8, generator=gen)
        self.y = self.x.sum(1) + 0.1 * torch.randn(length, generator=gen)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> Dict[str, torch.Tensor]:
        return dict(inputs=self.x[i], targets=self.y[i])


@HOOKS.register_module(force=True)
class RecordLossHook(Hook):
    """Keeps every training loss; optionally writes them (and the parameters) at the end."""

    def __init__(self, out_dir: str = '') -> None:
        self.out_dir = out_dir
        self.losses: List[float] = []

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        self.losses.append(outputs['loss'].item())

    def after_train(self, runner) -> None:
        if self.out_dir:
            model = runner.model.module if hasattr(runner.model, 'module') else runner.model
            torch.save(
                dict(
                    losses=self.losses,
                    params=model.state_dict(),
                    world_size=runner.world_size,
                    wrapper=type(runner.model).__name__),
                osp.join(self.out_dir, f'rank{runner.rank}.pth'))
