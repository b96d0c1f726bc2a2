"""mmext's MaskFormer pixel decoders vs mmdet 3.3's on shared weights, and their input checks."""
import pytest
import torch
from conftest import IN_CHANNELS, C, feats
from mmdet.models.layers import PixelDecoder as MMDetPixelDecoder
from mmdet.models.layers import TransformerEncoderPixelDecoder as MMDetEncoderPixelDecoder
from mmengine.config import ConfigDict

from mmext.models.seg_heads import PixelDecoder, TransformerEncoderPixelDecoder

ENCODER = dict(
    num_layers=2,
    layer_cfg=dict(
        self_attn_cfg=dict(embed_dims=C, num_heads=4, dropout=0.0, batch_first=True),
        ffn_cfg=dict(embed_dims=C, feedforward_channels=48, num_fcs=2, ffn_drop=0.0)))
COMMON = dict(
    in_channels=IN_CHANNELS,
    feat_channels=C,
    out_channels=C,
    norm_cfg=dict(type='GN', num_groups=8),
    act_cfg=dict(type='ReLU'))


def _share(ref, ours):
    torch.manual_seed(0)
    with torch.no_grad():
        for p in ref.parameters():
            p.copy_(torch.randn_like(p) * 0.2)
    ours.load_state_dict(ref.state_dict(), strict=True)
    assert list(ours.state_dict()) == list(ref.state_dict())


def test_fpn_pixel_decoder_matches_mmdet():
    ref, ours = MMDetPixelDecoder(**COMMON), PixelDecoder(**COMMON)
    _share(ref, ours)
    x = feats(2)
    metas = [dict(batch_input_shape=(64, 64), img_shape=(64, 64))] * 2
    (a, ma), (b, mb) = ref(x, metas), ours(x, metas)
    assert b.shape == (2, C, 16, 16)
    torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-5)
    assert mb is x[-1] and ma is x[-1]  # the memory is the backbone's last level
    assert ours.memory_channels == IN_CHANNELS[-1]


def test_encoder_pixel_decoder_matches_mmdet_with_padding():
    pe = dict(num_feats=C // 2, normalize=True)
    ref = MMDetEncoderPixelDecoder(**COMMON, encoder=ConfigDict(ENCODER), positional_encoding=pe)
    ours = TransformerEncoderPixelDecoder(**COMMON, encoder=ENCODER, positional_encoding=pe)
    _share(ref, ours)
    x = feats(2, seed=1)
    # the second image is padded: its right/bottom memory cells must be masked in attention
    metas = [
        dict(batch_input_shape=(64, 64), img_shape=(64, 64)),
        dict(batch_input_shape=(64, 64), img_shape=(30, 30))
    ]
    (a, ma), (b, mb) = ref(x, metas), ours(x, metas)
    torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(mb, ma, atol=1e-5, rtol=1e-5)
    assert ours.memory_channels == C
    # padding changes the result (the mask is really used)
    b2, _ = ours(x, [metas[0], metas[0]])
    assert not torch.allclose(b2[1], b[1], atol=1e-4)


def test_pixel_decoder_rejects_bad_inputs():
    dec = PixelDecoder(**COMMON)
    with pytest.raises(ValueError, match='got 3 feature levels'):
        dec(feats(1)[:3])
    bad = feats(1)
    bad[1] = torch.zeros(1, 5, 8, 8)
    with pytest.raises(ValueError, match=r'level 1 must be \[B, 16, H, W\]'):
        dec(bad)
    with pytest.raises(ValueError, match='must equal feat_channels'):
        TransformerEncoderPixelDecoder(
            **dict(COMMON, feat_channels=16, norm_cfg=None), encoder=ENCODER)
