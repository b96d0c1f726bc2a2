"""DualEncoderITC: ITC loss with momentum copies and queue, prediction, CLIP loss; and the import
paths from before its parts moved to their own packages."""
import pytest
import torch
from mmengine.structures import BaseDataElement

from mmext.models.multimodal import DualEncoderITC


def _model(loss=None, momentum=0.995):
    return DualEncoderITC(
        image_encoder=dict(
            type='VisionTransformer',
            arch=dict(embed_dims=32, num_layers=1, num_heads=2, feedforward_channels=64),
            img_size=16,
            patch_size=8,
            in_channels=1,
            out_type='cls_token'),
        text_encoder=dict(type='TextTransformer', embed_dims=16, num_layers=1, num_heads=2),
        tokenizer=dict(type='WordTokenizer', max_length=8),
        embed_dim=8,
        loss=loss,
        momentum=momentum,
        idx_key='image_id',
        class_names=[['zero', '0'], ['one', '1'], ['two', '2']],
        templates=['a {0}', 'the digit {1}'])


def _samples(n):
    return [
        BaseDataElement(text=f'the digit {i % 3}', image_id=i // 2, gt_label=torch.tensor([i % 3]))
        for i in range(n)
    ]


def test_dual_encoder_loss_predict_and_momentum():
    torch.manual_seed(0)
    model = _model(dict(type='ITCLoss', queue_size=5))
    model.init_weights()
    for online, ema in model._pairs.pairs:  # momentum copies start equal
        for p, p_m in zip(online.parameters(), ema.parameters()):
            assert torch.equal(p, p_m)
    x = torch.randn(4, 1, 16, 16)
    losses = model(x, _samples(4), mode='loss')
    losses['loss_itc'].backward()
    assert torch.isfinite(losses['loss_itc']) and model.image_proj.weight.grad is not None
    assert model.image_proj_m.weight.grad is None
    assert len(
        model.loss_itc.queue) == 4 and model.loss_itc.queue.get('idx').tolist() == [0, 0, 1, 1]
    out = model(x, _samples(4), mode='predict')
    assert out[0].pred_score.shape == (3, ) and out[0].text_feat.shape == (8, )
    torch.testing.assert_close(out[0].image_feat.norm(), torch.tensor(1.0))
    cls = model.class_embeddings()
    torch.testing.assert_close(cls.norm(dim=1), torch.ones(3))
    with pytest.raises(KeyError, match='caption string'):
        model(x, [BaseDataElement(image_id=0) for _ in range(4)], mode='loss')


def test_dual_encoder_with_clip_loss_has_no_momentum():
    model = _model(dict(type='CLIPLoss'))
    assert not model.use_momentum and not hasattr(model, 'image_encoder_m')
    loss = model(torch.randn(3, 1, 16, 16), _samples(3), mode='loss')['loss_itc']
    loss.backward()
    assert model.loss_itc.logit_scale.grad is not None


def test_old_import_paths_still_work():
    """``mmext.models.multimodal`` re-exports the parts that moved out of it (same objects)."""
    import mmext.models.losses as losses
    import mmext.models.multimodal as old
    import mmext.models.text_encoders as text_encoders
    import mmext.models.utils as model_utils
    for name in ('CLIPLoss', 'ITCLoss', 'FeatureQueue'):
        assert getattr(old, name) is getattr(losses, name)
    for name in ('TextTransformer', 'WordTokenizer'):
        assert getattr(old, name) is getattr(text_encoders, name)
    for name in ('AllGatherWithGrad', 'ScaleGrad', 'gather_features', 'gather_no_grad'):
        assert getattr(old, name) is getattr(model_utils, name)


def test_registry_names_unchanged():
    from mmext.models.losses import CLIPLoss, ITCLoss
    from mmext.models.text_encoders import TextTransformer, WordTokenizer
    from mmext.registry import MODELS, TASK_UTILS
    for name, cls in (('ITCLoss', ITCLoss), ('CLIPLoss', CLIPLoss),
                      ('DualEncoderITC', DualEncoderITC), ('TextTransformer', TextTransformer)):
        assert MODELS.get(f'mmext.{name}') is cls
    assert TASK_UTILS.get('mmext.WordTokenizer') is WordTokenizer
