"""Momentum copies: frozen deep copies and the EMA update theta_m <- m theta_m + (1-m) theta."""
import pytest
import torch
import torch.nn as nn

from mmext.models.multimodal import MomentumPairs, make_momentum_copy


def test_momentum_pairs_ema_formula():
    online = nn.Linear(3, 2)
    ema = make_momentum_copy(online)
    assert not any(p.requires_grad for p in ema.parameters())
    pairs = MomentumPairs([(online, ema)], momentum=0.9)
    with torch.no_grad():
        online.weight.add_(1.0)
    before = ema.weight.clone()
    pairs.update()
    torch.testing.assert_close(ema.weight, 0.9 * before + 0.1 * online.weight)
    pairs.copy_params()
    torch.testing.assert_close(ema.weight, online.weight)
    with pytest.raises(ValueError, match='momentum'):
        MomentumPairs([(online, ema)], momentum=1.5)
