"""ITCAlphaWarmupHook: ALBEF's alpha * min(1, i / len(loader)) ramp, set before every iteration."""
from types import SimpleNamespace

import pytest
import torch.nn as nn

from mmext.engine.hooks import ITCAlphaWarmupHook
from mmext.models.losses import ITCLoss


def _runner(iters_per_epoch=4):
    model = nn.Module()
    model.loss_itc = ITCLoss(8, alpha=0.4)
    return SimpleNamespace(model=model, train_dataloader=[None] * iters_per_epoch, iter=0)


def test_ramps_over_one_epoch_then_holds():
    runner = _runner(4)
    hook = ITCAlphaWarmupHook('loss_itc')
    hook.before_train(runner)
    seen = []
    for it in range(7):
        runner.iter = it
        hook.before_train_iter(runner, it)
        seen.append(runner.model.loss_itc.alpha)
    assert seen == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4, 0.4, 0.4])


def test_explicit_alpha_and_length():
    runner = _runner()
    hook = ITCAlphaWarmupHook('loss_itc', alpha=0.2, warmup_iters=2)
    hook.before_train(runner)
    runner.iter = 1
    hook.before_train_iter(runner, 1)
    assert runner.model.loss_itc.alpha == pytest.approx(0.1)


def test_bad_module_name_raises():
    runner = _runner()
    with pytest.raises(AttributeError, match="no module 'head'"):
        ITCAlphaWarmupHook('head').before_train(runner)
    with pytest.raises(ValueError, match='alpha'):
        ITCAlphaWarmupHook(alpha=2.0)
