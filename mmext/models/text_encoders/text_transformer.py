"""A small pre-norm Transformer text encoder pooled at its ``[CLS]`` token.

The text side of CLIP/ALBEF-style dual encoders (Radford et al. 2021, Sec. 2.4; Li et al. 2021,
Sec. 3.1) at toy scale: token + learned position embeddings, ``L`` pre-norm encoder layers
(``x + MHSA(LN x)``, ``x + MLP(LN x)``) with the padding masked out of attention, a final
LayerNorm, and the ``[CLS]`` (first) token as the sentence representation.
"""
from typing import Optional

import torch
import torch.nn as nn
from mmengine.model import BaseModule
from torch import Tensor

from mmext.registry import MODELS

__all__ = ['TextTransformer']


@MODELS.register_module()
class TextTransformer(BaseModule):
    """Args:
        vocab_size: Number of token ids (``len(tokenizer)``).
        max_length: Longest sequence (size of the position embedding).
        embed_dims: Width ``C``.
        num_layers: Encoder layers.
        num_heads: Attention heads.
        feedforward_channels: MLP hidden width (default ``4 C``).
        dropout: Dropout in attention and MLP.
        init_cfg: mmengine init config.
    """

    def __init__(self,
                 vocab_size: int,
                 max_length: int = 16,
                 embed_dims: int = 128,
                 num_layers: int = 2,
                 num_heads: int = 4,
                 feedforward_channels: Optional[int] = None,
                 dropout: float = 0.0,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if embed_dims % num_heads:
            raise ValueError(f'TextTransformer embed_dims={embed_dims} is not divisible by '
                             f'num_heads={num_heads}')
        self.embed_dims = embed_dims
        self.max_length = max_length
        self.token_embed = nn.Embedding(vocab_size, embed_dims)
        self.pos_embed = nn.Parameter(torch.zeros(1, max_length, embed_dims))
        layer = nn.TransformerEncoderLayer(
            embed_dims,
            num_heads,
            feedforward_channels or 4 * embed_dims,
            dropout,
            activation='gelu',
            batch_first=True,
            norm_first=True)
        self.layers = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.ln = nn.LayerNorm(embed_dims)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.token_embed.weight, std=0.02)

    def forward(self, ids: Tensor, mask: Optional[Tensor] = None) -> Tensor:
        """``(B, L)`` ids and bool mask (True = token) -> ``(B, C)`` ``[CLS]`` features."""
        if ids.dim() != 2 or ids.shape[1] > self.max_length:
            raise ValueError(f'TextTransformer expects (B, L<= {self.max_length}) ids, got '
                             f'{tuple(ids.shape)}')
        x = self.token_embed(ids) + self.pos_embed[:, :ids.shape[1]]
        pad = None if mask is None else ~mask.bool()
        x = self.layers(x, src_key_padding_mask=pad)
        return self.ln(x[:, 0])
