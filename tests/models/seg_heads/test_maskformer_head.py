"""Behaviour of mmext.MaskFormerHead beyond parity: targets, padding, errors, checkpoints."""
import copy

import pytest
import torch
from conftest import IMG, feats, head_cfg, seg_samples
from mmengine.structures import InstanceData, PixelData
from mmseg.structures import SegDataSample

from mmext.models.seg_heads import MaskFormerHead, convert_legacy_keys
from mmext.registry import MODELS


def _head(num_classes=5, **kw):
    torch.manual_seed(0)
    cfg = head_cfg(num_classes)
    cfg.update(kw)
    return MaskFormerHead(**cfg)


def test_semantic_targets_exclude_ignored_pixels():
    head = _head(4)
    seg = torch.tensor([[[0, 0, 3, 255], [3, 3, 255, 255]]])
    t = head._semantic_targets(seg)
    assert t.labels.tolist() == [0, 3]
    assert t.masks.shape == (2, 2, 4)
    assert not t.masks[:, seg[0] == 255].any()  # ignored pixels are in no target mask
    assert t.masks.sum().item() == (seg != 255).sum().item()


def test_forward_shapes_and_all_layer_outputs():
    head = _head(5)
    cls, masks = head(feats(2), None)  # mmseg's EncoderDecoder._forward passes no samples
    assert cls.shape == (3, 2, 10, 6)  # [layers, batch, queries, classes + no-object]
    assert masks.shape == (3, 2, 10, IMG // 4, IMG // 4)
    assert head.out_channels == 5 and head.num_classes == 5


def test_loss_is_finite_and_reaches_all_parameters():
    head = _head(5)
    losses = head.loss(feats(2), seg_samples(5, batch=2), {})
    assert set(losses) == {
        f'{p}loss_{n}'
        for p in ('', 'd0.', 'd1.')
        for n in ('cls', 'mask', 'dice')
    }
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    no_grad = [n for n, p in head.named_parameters() if p.grad is None]
    assert not no_grad


def test_images_without_targets_and_padding():
    head = _head(5)
    samples = seg_samples(5, batch=2)
    for s in samples:
        s.gt_sem_seg.data[:] = 255  # every pixel ignored: no target segment at all
    losses = head.loss(feats(2), samples, {})
    assert losses['loss_mask'].item() == 0 and losses['loss_dice'].item() == 0
    assert losses['loss_cls'].item() > 0  # every query learns "no object"
    sum(losses.values()).backward()


def test_padding_mask_changes_predictions():
    head = _head(5).eval()
    x = feats(1)
    full = [dict(img_shape=(IMG, IMG), pad_shape=(IMG, IMG))]
    padded = [dict(img_shape=(24, 24), pad_shape=(IMG, IMG))]
    with torch.no_grad():
        a = head(x, full)[1]
        b = head(x, padded)[1]
    assert not torch.allclose(a, b)


def test_bad_inputs_raise_clear_errors():
    head = _head(3)
    samples = seg_samples(3, batch=1)
    samples[0].gt_sem_seg.data[0, 0, 0] = 7
    with pytest.raises(ValueError, match=r'labels \[7\] outside \[0, 3\)'):
        head.loss(feats(1), samples, {})
    x = feats(1)
    x[0] = x[0].clone()
    x[0][0, 0, 0, 0] = float('nan')
    with pytest.raises(ValueError, match='NaN or inf'):
        head.loss(x, seg_samples(3, batch=1), {})
    with pytest.raises(KeyError, match='neither gt_instances nor gt_sem_seg'):
        head.loss(feats(1), [SegDataSample(metainfo=dict(img_shape=(IMG, IMG)))], {})
    with pytest.raises(ValueError, match='class_weight has 3 entries'):
        _head(3, loss_cls=dict(type='mmdet.CrossEntropyLoss', class_weight=[1.0, 1.0, 0.1]))
    with pytest.raises(ValueError, match='MaskPseudoSampler'):
        _head(3, train_cfg=dict(sampler=dict(type='mmdet.RandomSampler')))
    with pytest.raises(ValueError, match='must equal num_classes'):
        _head(5, num_things_classes=2, num_stuff_classes=1)
    with pytest.raises(TypeError, match='unexpected config keys'):
        _head(3, not_a_key=1)


def test_default_class_weight_and_split():
    cfg = head_cfg(4)
    cfg['loss_cls'] = dict(type='mmdet.CrossEntropyLoss', use_sigmoid=False)
    head = MaskFormerHead(**cfg)
    assert head.class_weight == [1.0] * 4 + [0.1]
    assert (head.num_things_classes, head.num_stuff_classes) == (4, 0)
    pan = MaskFormerHead(**head_cfg(None, panoptic=(3, 2)))
    assert (pan.num_classes, pan.num_things_classes, pan.num_stuff_classes) == (5, 3, 2)


def test_panoptic_targets_split_things_and_stuff():
    head = MaskFormerHead(**head_cfg(None, panoptic=(2, 2)))
    masks = torch.zeros(1, 4, 4, dtype=torch.bool)
    masks[0, :2, :2] = True
    sem = torch.tensor([[[255, 255, 2, 2], [255, 255, 3, 3], [0, 2, 2, 2], [3, 3, 3, 255]]])
    t = head._panoptic_targets(InstanceData(labels=torch.tensor([1]), masks=masks), sem)
    assert t.labels.tolist() == [1, 2, 3]  # thing first, then one segment per stuff class
    assert torch.equal(t.masks[1], sem[0] == 2) and torch.equal(t.masks[0], masks[0])


def test_legacy_keys_and_our_keys_both_load():
    head = _head(3)
    sd = head.state_dict()
    legacy = {k.replace('predictor.', ''): v.clone() for k, v in sd.items()}
    other = _head(3)
    other.load_state_dict(legacy, strict=True)  # mmdet/mmseg layout
    other.load_state_dict(sd, strict=True)  # our layout
    nested = convert_legacy_keys({
        'decode_head.cls_embed.weight': 1,
        'backbone.x': 2
    }, 'decode_head.')
    assert nested == {'decode_head.predictor.cls_embed.weight': 1, 'backbone.x': 2}


def test_builds_from_registry_with_toolbox_style_config():
    cfg = head_cfg(4)
    cfg['type'] = 'mmext.MaskFormerHead'
    head = MODELS.build(copy.deepcopy(cfg))
    assert isinstance(head, MaskFormerHead)
    assert type(head.assigner).__module__.startswith('mmext')
    assert type(head.loss_dice).__module__.startswith('mmext')


def test_predict_semantic_uses_img_shape():
    head = _head(5).eval()
    metas = [dict(img_shape=(IMG, IMG), ori_shape=(IMG, IMG), pad_shape=(IMG, IMG))]
    with torch.no_grad():
        seg = head.predict(feats(1), metas, {})
    assert seg.shape == (1, 5, IMG, IMG)
    # softmax(classes without no-object) x sigmoid(masks) summed over queries: in [0, Q]
    assert seg.min() >= 0 and seg.max() <= 10
    assert isinstance(PixelData(data=seg[0]), PixelData)


def test_converter_round_trip_into_toolbox_head(tmp_path):
    """tools/model_converters/maskformer_keys.py: an mmext checkpoint loads into mmseg's head."""
    import sys
    from pathlib import Path

    from mmengine.config import ConfigDict
    from mmengine.registry import DefaultScope
    from mmseg.models.decode_heads import MaskFormerHead as MMSegMaskFormerHead
    root = Path(__file__).resolve().parents[3]
    sys.path.insert(0, str(root / 'tools' / 'model_converters'))
    try:
        import maskformer_keys
    finally:
        sys.path.pop(0)
    ours = _head(4)
    src = {f'decode_head.{k}': v for k, v in ours.state_dict().items()}
    torch.save(dict(state_dict=src, meta={}), tmp_path / 'ours.pth')
    maskformer_keys.main([str(tmp_path / 'ours.pth'), str(tmp_path / 'tb.pth'), '--to', 'toolbox'])
    tb = torch.load(tmp_path / 'tb.pth', weights_only=False)['state_dict']
    with DefaultScope.overwrite_default_scope('mmseg'):
        ref = MMSegMaskFormerHead(**ConfigDict(head_cfg(4, ours=False)))
    ref.load_state_dict({k[len('decode_head.'):]: v for k, v in tb.items()}, strict=True)
    back = maskformer_keys.convert(tb, 'mmext')
    assert list(back) == list(src)
