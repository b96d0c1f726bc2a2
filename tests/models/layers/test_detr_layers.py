"""Parity of mmext's SinePositionalEncoding and DETR Transformer with mmdet 3.3.0's.

The Transformer modules exchange state dicts with mmdet's in both directions (the keys must be
identical) and must give equal outputs in eval mode on inputs with padding masks.
"""
import math

import pytest
import torch
from mmdet.models.layers import SinePositionalEncoding as MMDetSinePE
from mmdet.models.layers.transformer import DetrTransformerDecoder as MMDetDecoder
from mmdet.models.layers.transformer import DetrTransformerEncoder as MMDetEncoder

from mmext.models.layers import (DetrTransformerDecoder, DetrTransformerEncoder,
                                 SinePositionalEncoding)
from mmext.registry import MODELS

C, HEADS = 32, 4
ATTN = dict(embed_dims=C, num_heads=HEADS, dropout=0.1, batch_first=True)
FFN_CFG = dict(
    embed_dims=C,
    feedforward_channels=64,
    num_fcs=2,
    ffn_drop=0.1,
    act_cfg=dict(type='ReLU', inplace=True))
ENC = dict(num_layers=2, layer_cfg=dict(self_attn_cfg=ATTN, ffn_cfg=FFN_CFG))
DEC = dict(
    num_layers=3,
    layer_cfg=dict(self_attn_cfg=ATTN, cross_attn_cfg=ATTN, ffn_cfg=FFN_CFG),
    return_intermediate=True)


def padding_mask(b=2, h=6, w=7) -> torch.Tensor:
    mask = torch.zeros(b, h, w, dtype=torch.bool)
    mask[1, 4:, :] = True  # second image: 4 valid rows, 5 valid columns
    mask[1, :, 5:] = True
    return mask


@pytest.mark.parametrize('kwargs', [
    dict(num_feats=16),
    dict(num_feats=16, normalize=True),
    dict(num_feats=8, normalize=True, temperature=20, offset=-0.5, scale=math.pi, eps=1e-4)
])
def test_sine_positional_encoding_matches_mmdet(kwargs):
    ours, ref = SinePositionalEncoding(**kwargs), MMDetSinePE(**kwargs)
    mask = padding_mask()
    torch.testing.assert_close(ours(mask), ref(mask), rtol=0, atol=1e-6)
    feat = torch.randn(2, 3, 6, 7)
    torch.testing.assert_close(ours(None, input=feat), ref(None, input=feat), rtol=0, atol=1e-6)
    assert ours(mask).shape == (2, 2 * kwargs['num_feats'], 6, 7)


def test_sine_positional_encoding_padding_does_not_shift_valid_cells():
    pe = SinePositionalEncoding(num_feats=8, normalize=True)
    small = pe(torch.zeros(1, 4, 5, dtype=torch.bool))
    padded = pe(padding_mask())[1:, :, :4, :5]
    torch.testing.assert_close(padded, small)


def test_sine_positional_encoding_bad_args():
    with pytest.raises(ValueError, match='num_feats'):
        SinePositionalEncoding(num_feats=7)
    with pytest.raises(ValueError, match='mask or an input'):
        SinePositionalEncoding(num_feats=8)(None)
    assert isinstance(
        MODELS.build(dict(type='SinePositionalEncoding', num_feats=8)), SinePositionalEncoding)


def _swap_weights(ours: torch.nn.Module, ref: torch.nn.Module) -> None:
    """Random weights from mmdet's module into ours, then back (keys must match exactly)."""
    assert list(ours.state_dict()) == list(ref.state_dict())
    with torch.no_grad():
        for p in ref.parameters():
            p.copy_(torch.randn_like(p) * 0.2)
    ours.load_state_dict(ref.state_dict(), strict=True)
    ref.load_state_dict(ours.state_dict(), strict=True)
    ours.eval()
    ref.eval()


def test_encoder_matches_mmdet():
    torch.manual_seed(0)
    ours, ref = DetrTransformerEncoder(**ENC), MMDetEncoder(**ENC)
    _swap_weights(ours, ref)
    x, pos = torch.randn(2, 42, C), torch.randn(2, 42, C)
    mask = padding_mask().flatten(1)
    with torch.no_grad():
        torch.testing.assert_close(ours(x, pos, mask), ref(x, pos, mask), rtol=0, atol=1e-5)
        torch.testing.assert_close(ours(x, pos, None), ref(x, pos, None), rtol=0, atol=1e-5)


def test_decoder_matches_mmdet_and_returns_every_layer():
    torch.manual_seed(1)
    ours, ref = DetrTransformerDecoder(**DEC), MMDetDecoder(**DEC)
    _swap_weights(ours, ref)
    query, query_pos = torch.zeros(2, 5, C), torch.randn(2, 5, C)
    memory, mem_pos = torch.randn(2, 42, C), torch.randn(2, 42, C)
    mask = padding_mask().flatten(1)
    with torch.no_grad():
        out = ours(query, memory, memory, query_pos, mem_pos, mask)
        expected = ref(
            query=query,
            key=memory,
            value=memory,
            query_pos=query_pos,
            key_pos=mem_pos,
            key_padding_mask=mask)
    assert out.shape == (3, 2, 5, C)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)


def test_decoder_last_layer_only_and_gradients():
    torch.manual_seed(2)
    cfg = dict(DEC, return_intermediate=False)
    ours, ref = DetrTransformerDecoder(**cfg), MMDetDecoder(**cfg)
    _swap_weights(ours, ref)
    args = (torch.zeros(1, 4, C), torch.randn(1, 9, C), torch.randn(1, 4, C), torch.randn(1, 9, C))
    out = ours(args[0], args[1], args[1], args[2], args[3], None)
    expected = ref(
        query=args[0],
        key=args[1],
        value=args[1],
        query_pos=args[2],
        key_pos=args[3],
        key_padding_mask=None)
    assert out.shape == (1, 1, 4, C)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)
    out.square().sum().backward()
    expected.square().sum().backward()
    for (name, p), q in zip(ours.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-5, msg=name)


def test_attention_rejects_sequence_first():
    with pytest.raises(ValueError, match='batch_first'):
        DetrTransformerEncoder(
            num_layers=1,
            layer_cfg=dict(self_attn_cfg=dict(ATTN, batch_first=False), ffn_cfg=FFN_CFG))


def test_encoder_checkpointing_keeps_outputs():
    torch.manual_seed(3)
    plain, ckpt = DetrTransformerEncoder(**ENC), DetrTransformerEncoder(**dict(ENC, num_cp=2))
    ckpt.load_state_dict(plain.state_dict())
    for m in (plain, ckpt):  # training mode without dropout
        m.train()
        for mod in m.modules():
            if isinstance(mod, torch.nn.Dropout):
                mod.p = 0.
    for mod in list(plain.modules()) + list(ckpt.modules()):
        if isinstance(mod, torch.nn.MultiheadAttention):
            mod.dropout = 0.
    x = torch.randn(2, 10, C)
    torch.testing.assert_close(ckpt(x, None, None), plain(x, None, None))


@pytest.mark.parametrize('stack,cfg', [(DetrTransformerEncoder, ENC),
                                       (DetrTransformerDecoder, DEC)])
@pytest.mark.parametrize('num_layers', [0, -1, 2.0])
def test_stacks_reject_bad_num_layers(stack, cfg, num_layers):
    with pytest.raises(ValueError, match=rf'{stack.__name__}: num_layers must be an int >= 1'):
        stack(**dict(cfg, num_layers=num_layers))
