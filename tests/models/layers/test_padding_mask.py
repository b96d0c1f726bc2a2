"""The one padding-mask helper that DETR and MaskFormer (head and pixel decoder) share."""
import torch
import torch.nn.functional as F
from mmdet.structures import DetDataSample

from mmext.models import layers
from mmext.models.detectors import DETR
from mmext.models.layers import batch_input_shape, padding_mask
from mmext.models.seg_heads import maskformer_head, transformer_encoder_pixel_decoder


def _reference(img_shapes, batch_hw, feat_hw):
    """mmdet's DETR rule: ones over the batch shape, zeros over each image, nearest resize."""
    masks = torch.ones(len(img_shapes), *batch_hw)
    for i, (h, w) in enumerate(img_shapes):
        masks[i, :h, :w] = 0
    return F.interpolate(masks[:, None], size=feat_hw).to(torch.bool)[:, 0]


def test_one_helper_serves_detr_and_maskformer():
    assert maskformer_head.padding_mask is layers.padding_mask
    assert maskformer_head.batch_input_shape is layers.batch_input_shape
    assert transformer_encoder_pixel_decoder.padding_mask is layers.padding_mask


def test_mmdet_metas_and_detr():
    shapes = [(64, 48), (50, 64), (64, 64)]
    metas = [dict(img_shape=s, batch_input_shape=(64, 64)) for s in shapes]
    for feat_hw in ((8, 8), (3, 5), (64, 64)):
        expected = _reference(shapes, (64, 64), feat_hw)
        assert torch.equal(padding_mask(metas, feat_hw, torch.device('cpu')), expected)
        samples = [DetDataSample(metainfo=m) for m in metas]
        feat = torch.zeros(3, 4, *feat_hw)
        assert torch.equal(DETR.padding_mask(feat, samples), expected)
    # nothing padded: DETR (and none_if_unpadded) skip the mask; the plain call gives all False
    full = [dict(img_shape=(64, 64), batch_input_shape=(64, 64))] * 2
    assert DETR.padding_mask(torch.zeros(2, 4, 8, 8), [DetDataSample(metainfo=m) for m in full]) \
        is None
    assert padding_mask(full, (8, 8), torch.device('cpu'), none_if_unpadded=True) is None
    assert not padding_mask(full, (8, 8), torch.device('cpu')).any()
    assert DETR.padding_mask(torch.zeros(2, 4, 8, 8), None) is None


def test_mmseg_metas_use_pad_shape_then_img_shape():
    metas = [
        dict(img_shape=(30, 40), pad_shape=(32, 48)),
        dict(img_shape=(32, 20), pad_shape=(32, 48))
    ]
    assert batch_input_shape(metas) == (32, 48)
    assert torch.equal(
        padding_mask(metas, (4, 6), torch.device('cpu')),
        _reference([(30, 40), (32, 20)], (32, 48), (4, 6)))
    assert batch_input_shape([dict(img_shape=(30, 40)), dict(img_shape=(32, 20))]) == (32, 40)
