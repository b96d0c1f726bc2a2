"""Transformer predictor of MaskFormer: queries -> class logits and binary-mask logits.

MaskFormer (Cheng et al., "Per-Pixel Classification is Not All You Need for Semantic
Segmentation", NeurIPS 2021, Sec. 3.3 and Fig. 2): ``N`` learned queries go through a DETR
Transformer decoder (Carion et al., ECCV 2020) that attends to the pixel decoder's memory and
yields per-segment embeddings ``Q`` (``C_Q x N``).  Each of them predicts

* a class distribution over ``K + 1`` classes (the extra one is "no object", ∅) by a linear layer;
* a mask embedding ``E_mask`` (``C_E``) by a 2-hidden-layer MLP, whose dot product with the
  per-pixel embeddings gives the binary-mask logits (Sec. 3.3):
  ``m_i[h, w] = sigmoid(E_mask[:, i]^T E_pixel[:, h, w])``.

Every decoder layer's output gets the same two heads, for the auxiliary losses (Sec. 3.3, as in
DETR), so the outputs are ``[L, B, N, K+1]`` and ``[L, B, N, H, W]`` logits.

Parameter names (``query_embed``, ``transformer_decoder``, ``decoder_input_proj``, ``cls_embed``,
``mask_embed.{0,2,4}``) equal those mmdet 3.3's ``MaskFormerHead`` keeps at head level.
"""
from typing import Optional, Tuple

import torch
import torch.nn as nn
from mmcv.cnn import Conv2d
from mmengine.model import BaseModule, caffe2_xavier_init
from torch import Tensor

from mmext.models.layers import DetrTransformerDecoder, SinePositionalEncoding
from mmext.registry import MODELS

__all__ = ['MaskFormerTransformerPredictor']


@MODELS.register_module()
class MaskFormerTransformerPredictor(BaseModule):
    """Learned queries + DETR decoder + class head + mask-embedding MLP (MaskFormer, Sec. 3.3).

    Args:
        num_classes: ``K`` (the class head has ``K + 1`` outputs).
        num_queries: ``N``.
        feat_channels: Width of the class/mask heads (the decoder's ``embed_dims``).
        mask_channels: ``C_E``, channels of the mask features and of the mask embeddings.
        memory_channels: Channels of the memory from the pixel decoder.
        transformer_decoder: :class:`~mmext.models.layers.DetrTransformerDecoder` options.
        positional_encoding: Sine positional encoding of the memory.
        enforce_input_project: 1x1-project the memory even when its width already fits.
    """

    def __init__(self,
                 num_classes: int,
                 num_queries: int,
                 feat_channels: int,
                 mask_channels: int,
                 memory_channels: int,
                 transformer_decoder: dict,
                 positional_encoding: dict = dict(num_feats=128, normalize=True),
                 enforce_input_project: bool = False,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.num_classes = num_classes
        self.num_queries = num_queries
        self.transformer_decoder = DetrTransformerDecoder(**dict(transformer_decoder))
        embed_dims = self.transformer_decoder.embed_dims
        if embed_dims != feat_channels:
            raise ValueError(f'MaskFormerTransformerPredictor: transformer_decoder embed_dims '
                             f'({embed_dims}) must equal feat_channels ({feat_channels})')
        if embed_dims != mask_channels:
            # the queries (mask_channels wide, mmdet's layout) are the decoder's query_pos
            raise ValueError(f'MaskFormerTransformerPredictor: out_channels ({mask_channels}) '
                             f'must equal the decoder embed_dims ({embed_dims})')
        if memory_channels != embed_dims or enforce_input_project:
            self.decoder_input_proj = Conv2d(memory_channels, embed_dims, 1)
        else:
            self.decoder_input_proj = nn.Identity()
        pe = dict(positional_encoding)
        pe.pop('type', None)
        self.decoder_pe = SinePositionalEncoding(**pe)
        self.query_embed = nn.Embedding(num_queries, mask_channels)
        self.cls_embed = nn.Linear(feat_channels, num_classes + 1)
        self.mask_embed = nn.Sequential(
            nn.Linear(feat_channels, feat_channels), nn.ReLU(inplace=True),
            nn.Linear(feat_channels, feat_channels), nn.ReLU(inplace=True),
            nn.Linear(feat_channels, mask_channels))

    def init_weights(self) -> None:
        """Caffe2-Xavier on the input projection, Xavier-uniform on the decoder's matrices."""
        super().init_weights()
        if isinstance(self.decoder_input_proj, nn.Conv2d):
            caffe2_xavier_init(self.decoder_input_proj, bias=0)
        for p in self.transformer_decoder.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def forward(self, mask_features: Tensor, memory: Tensor,
                memory_padding: Tensor) -> Tuple[Tensor, Tensor]:
        """Decode the queries against ``memory [B, C_m, h, w]``.

        Args:
            mask_features: ``[B, C_E, H, W]`` per-pixel embeddings.
            memory: ``[B, C_m, h, w]`` the decoder attends to.
            memory_padding: ``[B, h, w]`` bool, True at padded cells.

        Returns:
            ``cls_logits [L, B, N, K+1]`` and ``mask_logits [L, B, N, H, W]``.
        """
        B = memory.shape[0]
        pos = self.decoder_pe(memory_padding).flatten(2).transpose(1, 2)  # [B, hw, C]
        memory = self.decoder_input_proj(memory).flatten(2).transpose(1, 2)
        query_pos = self.query_embed.weight.unsqueeze(0).expand(B, -1, -1)
        hidden = self.transformer_decoder(
            query=torch.zeros_like(query_pos),
            key=memory,
            value=memory,
            query_pos=query_pos,
            key_pos=pos,
            key_padding_mask=memory_padding.flatten(1))  # [L, B, N, C]
        cls_logits = self.cls_embed(hidden)
        mask_logits = torch.einsum('lbnc,bchw->lbnhw', self.mask_embed(hidden), mask_features)
        return cls_logits, mask_logits
