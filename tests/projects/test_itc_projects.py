"""The mmpretrain project configs that use mmext's ITC: they load in mmpretrain's scope, their
mmext parts resolve through mmpretrain's registries, and the buildable one trains a step."""
import importlib.util
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope

from mmext.models.losses import ITCLoss
from mmext.models.multimodal import DualEncoderITC

ROOT = Path(__file__).resolve().parents[2]
HAS_TRANSFORMERS = importlib.util.find_spec('transformers') is not None


def test_blip_retrieval_config_uses_mmext_itc():
    from mmpretrain.registry import HOOKS, MODELS
    cfg = Config.fromfile(str(ROOT / 'projects/mmpretrain/blip-base_8xb32_retrieval_mmext-itc.py'))
    assert cfg.custom_imports.imports == ['mmext'] and cfg.default_scope == 'mmpretrain'
    assert cfg.model.type == 'BlipRetrieval'
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        head = MODELS.build(cfg.model.head)  # through mmpretrain's registry, like BlipRetrieval
        hook = HOOKS.build(cfg.custom_hooks[0])
    assert type(head) is ITCLoss and head.queue.size == 57600 and head.alpha == 0.4
    assert type(hook).__module__ == 'mmext.engine.hooks.itc_alpha_warmup_hook'
    assert hook.module_name == 'head'


@pytest.mark.skipif(not HAS_TRANSFORMERS, reason="mmpretrain's BlipRetrieval needs transformers")
def test_blip_retrieval_builds_with_mmext_head(tmp_path):  # pragma: no cover - optional extra
    from mmpretrain.registry import MODELS
    vocab = tmp_path / 'vocab'
    vocab.mkdir()
    words = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]', 'a', 'digit', 'seven', 'one']
    (vocab / 'vocab.txt').write_text('\n'.join(words) + '\n')
    cfg = Config.fromfile(str(ROOT / 'projects/mmpretrain/blip-base_8xb32_retrieval_mmext-itc.py'))
    m = cfg.model
    m.tokenizer.name_or_path = str(vocab)
    m.vision_backbone.update(
        arch=dict(embed_dims=32, num_layers=1, num_heads=2, feedforward_channels=64),
        img_size=32,
        patch_size=16)
    m.text_backbone.med_config.update(
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        vocab_size=16,
        encoder_width=32)
    m.vision_neck.update(in_features=32, out_features=16)
    m.text_neck.update(in_features=32, out_features=16)
    m.head.update(embed_dim=16, queue_size=8)
    m.multimodal_head.hidden_size = 32
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(m)
    assert isinstance(model.head, ITCLoss) and model.head.temp is model.temp


def _digits_batch(cfg, n):
    from mmext.registry import DATASETS
    ds = DATASETS.build(cfg.train_dataloader.dataset)
    return pseudo_collate([ds[i] for i in range(n)])


def test_mmpretrain_scope_dual_encoder_trains_a_step():
    cfg = Config.fromfile(str(ROOT / 'projects/mmpretrain/itc_mmpretrain-vit_digits_mmext.py'))
    assert cfg.default_scope == 'mmpretrain'
    from mmpretrain.models import VisionTransformer as MMPretrainViT
    from mmpretrain.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(cfg.model)
    assert isinstance(model, DualEncoderITC) and isinstance(model.image_encoder, MMPretrainViT)
    model.init_weights()
    model.train()
    optim = build_optim_wrapper(model, cfg.optim_wrapper)
    before = model.image_encoder.cls_token.detach().clone()
    losses = model.train_step(_digits_batch(cfg, 8), optim)
    assert torch.isfinite(losses['loss_itc'])
    assert not torch.equal(model.image_encoder.cls_token, before)
    assert len(model.loss_itc.queue) == 8
