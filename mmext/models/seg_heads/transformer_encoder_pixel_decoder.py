"""Transformer-encoder pixel decoder of MaskFormer.

MaskFormer (Cheng et al., NeurIPS 2021, Sec. 4 "Pixel decoder" and appendix A.1): for the
ResNet-backed models a DETR Transformer encoder (Carion et al., ECCV 2020, Sec. 3.2; 6 layers)
first runs on the coarsest backbone level (projected to ``feat_channels`` by a 1x1 conv, with
mask-aware sine positional encodings), and its output serves twice: as the memory the transformer
predictor attends to, and (after a 3x3 conv) as the top of the FPN pixel decoder.

Parameter names equal mmdet 3.3's ``TransformerEncoderPixelDecoder`` (``encoder_in_proj``,
``encoder``, ``encoder_out_proj`` plus the FPN's), so its checkpoints load unchanged.
"""
from typing import List, Optional, Sequence, Tuple

import torch.nn as nn
from mmcv.cnn import Conv2d, ConvModule
from torch import Tensor

from mmext.models.layers import DetrTransformerEncoder, SinePositionalEncoding, padding_mask
from mmext.registry import MODELS

from .pixel_decoder import PixelDecoder

__all__ = ['TransformerEncoderPixelDecoder']


@MODELS.register_module()
class TransformerEncoderPixelDecoder(PixelDecoder):
    """Pixel decoder with a Transformer encoder on the coarsest level (MaskFormer, Sec. 4).

    Args:
        in_channels, feat_channels, out_channels, norm_cfg, act_cfg: As :class:`PixelDecoder`.
        encoder: :class:`~mmext.models.layers.DetrTransformerEncoder` options; its
            ``embed_dims`` must equal ``feat_channels``.
        positional_encoding: :class:`~mmext.models.layers.SinePositionalEncoding` options.
    """

    def __init__(self,
                 in_channels: Sequence[int],
                 feat_channels: int,
                 out_channels: int,
                 norm_cfg: Optional[dict] = dict(type='GN', num_groups=32),
                 act_cfg: Optional[dict] = dict(type='ReLU'),
                 encoder: Optional[dict] = None,
                 positional_encoding: dict = dict(num_feats=128, normalize=True),
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(
            in_channels,
            feat_channels,
            out_channels,
            norm_cfg=norm_cfg,
            act_cfg=act_cfg,
            init_cfg=init_cfg)
        if encoder is None:
            raise ValueError('TransformerEncoderPixelDecoder needs an encoder config')
        self.encoder = DetrTransformerEncoder(**dict(encoder))
        if self.encoder.embed_dims != feat_channels:
            raise ValueError(f'TransformerEncoderPixelDecoder: encoder embed_dims '
                             f'({self.encoder.embed_dims}) must equal feat_channels '
                             f'({feat_channels})')
        pe = dict(positional_encoding)
        pe.pop('type', None)
        self.positional_encoding = SinePositionalEncoding(**pe)
        self.encoder_in_proj = Conv2d(self.in_channels[-1], feat_channels, 1)
        self.encoder_out_proj = ConvModule(
            feat_channels,
            feat_channels,
            3,
            padding=1,
            bias=norm_cfg is None,
            norm_cfg=norm_cfg,
            act_cfg=act_cfg)

    def _top_conv(self, norm_cfg, act_cfg, bias) -> None:
        return None  # the encoder output (through encoder_out_proj) tops the FPN instead

    @property
    def memory_channels(self) -> int:
        return self.feat_channels

    def init_weights(self) -> None:
        """Caffe2-Xavier on the convs, Xavier-uniform on the encoder's matrices."""
        super().init_weights()
        for p in self.encoder.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def forward(self,
                feats: Sequence[Tensor],
                batch_img_metas: Optional[List[dict]] = None) -> Tuple[Tensor, Tensor]:
        """Returns ``(mask_features [B, out_channels, H/4, W/4], memory [B, feat_channels, h, w])``.

        ``batch_img_metas`` give the padding mask (``img_shape`` inside the padded batch); without
        them no cell is treated as padding.
        """
        self._check(feats)
        top = feats[-1]
        B, _, h, w = top.shape
        if batch_img_metas:
            mask = padding_mask(batch_img_metas, (h, w), top.device)
        else:
            mask = top.new_zeros(B, h, w, dtype=bool)
        pos = self.positional_encoding(mask).flatten(2).transpose(1, 2)  # [B, hw, C]
        src = self.encoder_in_proj(top).flatten(2).transpose(1, 2)
        memory = self.encoder(query=src, query_pos=pos, key_padding_mask=mask.flatten(1))
        memory = memory.transpose(1, 2).reshape(B, self.feat_channels, h, w)
        return self.fuse(self.encoder_out_proj(memory), feats), memory
