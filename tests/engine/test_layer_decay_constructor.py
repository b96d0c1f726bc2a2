"""mmext.LayerDecayOptimWrapperConstructor: per-parameter lr and weight decay equal mmpretrain's
LearningRateDecayOptimWrapperConstructor on a ViT classifier; grouping; errors."""
import copy
import logging

import pytest
import torch
import torch.nn as nn
from mmengine.logging import MMLogger
from mmengine.optim import build_optim_wrapper

from mmext.engine.optimizers import LayerDecayOptimWrapperConstructor
from mmext.registry import MODELS

ARCH = dict(embed_dims=32, num_layers=4, num_heads=2, feedforward_channels=64)
PARAMWISE = dict(
    layer_decay_rate=0.6,
    norm_decay_mult=0.,
    bias_decay_mult=0.5,
    flat_decay_mult=0.25,
    custom_keys={
        '.cls_token': dict(decay_mult=0.),
        '.pos_embed': dict(decay_mult=0.)
    })
OPTIM = dict(optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05))


@pytest.fixture(autouse=True)
def quiet_logger():
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)
    yield
    logger.setLevel(level)


def classifier(backbone_type='mmext.VisionTransformer', frozen_stages=-1):
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS as PRETRAIN_MODELS
    cfg = dict(
        type='mmpretrain.ImageClassifier',
        backbone=dict(
            type=backbone_type,
            arch=copy.deepcopy(ARCH),
            img_size=32,
            patch_size=8,
            frozen_stages=frozen_stages),
        head=dict(type='mmpretrain.LinearClsHead', num_classes=5, in_channels=32))
    # ImageClassifier builds its default (unscoped) data preprocessor in the current scope,
    # which earlier tests' runners may have left at 'mmext'.
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return PRETRAIN_MODELS.build(cfg)


def per_param(optimizer, model):
    names = {id(p): n for n, p in model.named_parameters()}
    out = {}
    for group in optimizer.param_groups:
        for p in group['params']:
            out[names[id(p)]] = (group['lr'], group.get('weight_decay'))
    return out


@pytest.mark.parametrize('backbone_type',
                         ['mmext.VisionTransformer', 'mmpretrain.VisionTransformer'])
def test_matches_mmpretrain(backbone_type):
    from mmpretrain.engine.optimizers import \
        LearningRateDecayOptimWrapperConstructor as RefConstructor
    model = classifier(backbone_type)
    ours = build_optim_wrapper(
        model,
        dict(
            OPTIM,
            constructor='mmext.LayerDecayOptimWrapperConstructor',
            paramwise_cfg=copy.deepcopy(PARAMWISE)))
    ref = RefConstructor(dict(OPTIM), copy.deepcopy(PARAMWISE))(model)
    got, want = per_param(ours.optimizer, model), per_param(ref.optimizer, model)
    assert set(got) == set(want) == {n for n, _ in model.named_parameters()}
    for name in want:
        assert got[name][0] == pytest.approx(want[name][0], rel=1e-12), name
        assert got[name][1] == pytest.approx(want[name][1], rel=1e-12), name
    # far fewer groups than mmpretrain's one per tensor
    assert len(ours.optimizer.param_groups) < len(ref.optimizer.param_groups) / 2
    # the decay itself: head at base lr, embeddings at rate ** (L + 1)
    assert got['head.fc.weight'][0] == pytest.approx(1e-3)
    assert got['backbone.pos_embed'][0] == pytest.approx(1e-3 * 0.6**5)
    assert got['backbone.layers.2.attn.qkv.weight'][0] == pytest.approx(1e-3 * 0.6**2)
    assert got['backbone.pos_embed'][1] == 0 and got['backbone.ln1.weight'][1] == 0


def test_frozen_parameters_are_left_out_and_one_step_runs():
    model = classifier(frozen_stages=2)
    wrapper = LayerDecayOptimWrapperConstructor(dict(OPTIM), dict(PARAMWISE))(model)
    in_groups = {id(p) for g in wrapper.optimizer.param_groups for p in g['params']}
    for name, p in model.named_parameters():
        assert (id(p) in in_groups) == p.requires_grad, name
    before = model.backbone.layers[3].attn.qkv.weight.detach().clone()
    inputs = torch.randn(2, 3, 32, 32)
    loss = model(inputs, mode='tensor').sum()
    wrapper.update_params(loss)
    assert not torch.equal(before, model.backbone.layers[3].attn.qkv.weight)


def test_backbone_fallback_for_models_without_depths():

    class Wrapper(nn.Module):

        def __init__(self):
            super().__init__()
            self.backbone = MODELS.build(
                dict(type='VisionTransformer', arch=ARCH, img_size=32, patch_size=8))
            self.fc = nn.Linear(32, 3)

    model = Wrapper()
    groups = LayerDecayOptimWrapperConstructor(dict(OPTIM),
                                               dict(layer_decay_rate=0.5)).param_groups(model)
    lr = {n: g['lr'] for g in groups for n in g['param_names']}
    assert lr['fc.weight'] == pytest.approx(1e-3)
    assert lr['backbone.patch_embed.projection.weight'] == pytest.approx(1e-3 * 0.5**5)


def test_errors_name_the_problem():
    with pytest.raises(KeyError, match='layer_decay'):
        LayerDecayOptimWrapperConstructor(dict(OPTIM), dict(layer_decay=0.5))
    with pytest.raises(ValueError, match='layer_decay_rate'):
        LayerDecayOptimWrapperConstructor(dict(OPTIM), dict(layer_decay_rate=1.5))
    with pytest.raises(TypeError, match='get_layer_depth'):
        LayerDecayOptimWrapperConstructor(dict(OPTIM), {})(nn.Linear(2, 2))
