"""The post-norm Transformer encoder/decoder of DETR.

DETR: End-to-End Object Detection with Transformers (Carion et al., ECCV 2020,
https://arxiv.org/abs/2005.12872), Sec. 3.2 and Fig. 10.  Each layer is the post-norm layer of
Vaswani et al. (2017) with one change: the positional encodings are added to the *queries and
keys* of every attention, never to its values nor to the residual stream:

    encoder:  x = LN(x + SelfAttn(q=x+p, k=x+p, v=x));         x = LN(x + FFN(x))
    decoder:  t = LN(t + SelfAttn(q=t+o, k=t+o, v=t))           (o: learnt object queries)
              t = LN(t + CrossAttn(q=t+o, k=m+p, v=m))          (m: encoder memory)
              t = LN(t + FFN(t))

The decoder applies one more LayerNorm shared by all layers to the output of every layer, so that
the auxiliary decoding losses (Sec. 3.2, "Auxiliary decoding losses") see normalised features;
it returns the outputs of all layers stacked as ``[num_layers, B, Q, C]``.

Configs, parameters and state-dict keys equal mmdet's ``DetrTransformerEncoder``/``Decoder``
(mmdet 3.3.0): ``self_attn.attn.*`` is an ``nn.MultiheadAttention``, ``ffn.layers.*`` mmcv's
``FFN`` and ``norms.{0,1,2}`` the LayerNorms, so mmdet DETR checkpoints load unchanged.
"""
from typing import Optional

import torch
import torch.nn as nn
from mmcv.cnn import build_norm_layer
from mmcv.cnn.bricks.drop import build_dropout
from mmcv.cnn.bricks.transformer import FFN
from mmengine.model import BaseModule, ModuleList
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from mmext.registry import MODELS


def _add_pos(x: Tensor, pos: Optional[Tensor]) -> Tensor:
    return x if pos is None else x + pos


@MODELS.register_module()
class DetrAttention(BaseModule):
    """Multi-head attention with positional encodings added to queries/keys and a residual.

    ``out = query + drop(MHA(query + query_pos, key + key_pos, value))`` on batch-first
    ``[B, N, C]`` tensors.  The attention itself is ``nn.MultiheadAttention`` (as ``self.attn``,
    the key mmdet checkpoints use), which dispatches to fused scaled-dot-product kernels.

    Args:
        embed_dims: Channels ``C``.
        num_heads: Attention heads.
        attn_drop: Dropout on attention weights.
        proj_drop: Dropout on the attention output (before the residual add).
        dropout: If given, both ``attn_drop`` and the residual-branch dropout (DETR's
            ``dropout=0.1``; mmcv's meaning of this key).
        dropout_layer: mmcv dropout config on the residual branch (``Dropout``/``DropPath``).
        batch_first: Must be True (kept so mmdet configs are accepted).
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 attn_drop: float = 0.,
                 proj_drop: float = 0.,
                 dropout: Optional[float] = None,
                 dropout_layer: Optional[dict] = None,
                 batch_first: bool = True,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if not batch_first:
            raise ValueError('DETR layers work on batch-first [B, N, C] tensors; '
                             'batch_first must be True')
        if dropout is not None:
            attn_drop = dropout
            dropout_layer = dict(type='Dropout', drop_prob=dropout)
        self.embed_dims = embed_dims
        self.num_heads = num_heads
        self.batch_first = batch_first
        self.attn = nn.MultiheadAttention(
            embed_dims, num_heads, dropout=attn_drop, batch_first=True)
        self.proj_drop = nn.Dropout(proj_drop)
        self.dropout_layer = build_dropout(dropout_layer) if dropout_layer else nn.Identity()

    def forward(self,
                query: Tensor,
                key: Optional[Tensor] = None,
                value: Optional[Tensor] = None,
                query_pos: Optional[Tensor] = None,
                key_pos: Optional[Tensor] = None,
                attn_mask: Optional[Tensor] = None,
                key_padding_mask: Optional[Tensor] = None) -> Tensor:
        """``key`` defaults to ``query`` and ``value`` to ``key``; ``key_pos`` defaults to
        ``query_pos`` when it fits the key (self-attention).  ``key_padding_mask [B, N_k]`` is True
        (non-zero) at padded keys."""
        key = query if key is None else key
        value = key if value is None else value
        if key_pos is None and query_pos is not None and query_pos.shape == key.shape:
            key_pos = query_pos
        if key_padding_mask is not None:
            key_padding_mask = key_padding_mask.bool()
        out = self.attn(
            _add_pos(query, query_pos),
            _add_pos(key, key_pos),
            value,
            attn_mask=attn_mask,
            key_padding_mask=key_padding_mask,
            need_weights=False)[0]
        return query + self.dropout_layer(self.proj_drop(out))


def _norms(norm_cfg: dict, embed_dims: int, num: int) -> ModuleList:
    return ModuleList([build_norm_layer(norm_cfg, embed_dims)[1] for _ in range(num)])


_DEFAULT_ATTN = dict(embed_dims=256, num_heads=8, dropout=0.0)
_DEFAULT_FFN = dict(
    embed_dims=256,
    feedforward_channels=1024,
    num_fcs=2,
    ffn_drop=0.,
    act_cfg=dict(type='ReLU', inplace=True))


@MODELS.register_module()
class DetrTransformerEncoderLayer(BaseModule):
    """Post-norm encoder layer: self-attention -> add & LN -> FFN (with residual) -> LN.

    Args:
        self_attn_cfg: :class:`DetrAttention` options.
        ffn_cfg: mmcv ``FFN`` options (its residual add is the layer's second residual).
        norm_cfg: Norm config of the two norms. Defaults to LayerNorm.
    """

    def __init__(self,
                 self_attn_cfg: Optional[dict] = None,
                 ffn_cfg: Optional[dict] = None,
                 norm_cfg: dict = dict(type='LN'),
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.self_attn = DetrAttention(**dict(self_attn_cfg or _DEFAULT_ATTN))
        self.embed_dims = self.self_attn.embed_dims
        self.ffn = FFN(**dict(ffn_cfg or _DEFAULT_FFN))
        self.norms = _norms(norm_cfg, self.embed_dims, 2)

    def forward(self, query: Tensor, query_pos: Optional[Tensor],
                key_padding_mask: Optional[Tensor], **kwargs) -> Tensor:
        """``query``/``query_pos``: ``[B, N, C]``; ``key_padding_mask``: ``[B, N]`` or None."""
        query = self.norms[0](
            self.self_attn(
                query,
                query_pos=query_pos,
                key_pos=query_pos,
                key_padding_mask=key_padding_mask,
                **kwargs))
        return self.norms[1](self.ffn(query))


@MODELS.register_module()
class DetrTransformerDecoderLayer(BaseModule):
    """Post-norm decoder layer: self-attn -> add & LN -> cross-attn -> add & LN -> FFN -> LN.

    Args:
        self_attn_cfg: :class:`DetrAttention` options of the query self-attention.
        cross_attn_cfg: :class:`DetrAttention` options of the attention to the memory.
        ffn_cfg: mmcv ``FFN`` options.
        norm_cfg: Norm config of the three norms. Defaults to LayerNorm.
    """

    def __init__(self,
                 self_attn_cfg: Optional[dict] = None,
                 cross_attn_cfg: Optional[dict] = None,
                 ffn_cfg: Optional[dict] = None,
                 norm_cfg: dict = dict(type='LN'),
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.self_attn = DetrAttention(**dict(self_attn_cfg or _DEFAULT_ATTN))
        self.cross_attn = DetrAttention(**dict(cross_attn_cfg or _DEFAULT_ATTN))
        self.embed_dims = self.self_attn.embed_dims
        self.ffn = FFN(**dict(ffn_cfg or _DEFAULT_FFN))
        self.norms = _norms(norm_cfg, self.embed_dims, 3)

    def forward(self,
                query: Tensor,
                key: Optional[Tensor] = None,
                value: Optional[Tensor] = None,
                query_pos: Optional[Tensor] = None,
                key_pos: Optional[Tensor] = None,
                self_attn_mask: Optional[Tensor] = None,
                cross_attn_mask: Optional[Tensor] = None,
                key_padding_mask: Optional[Tensor] = None,
                **kwargs) -> Tensor:
        """``query [B, Q, C]`` attends to itself, then to ``key``/``value [B, N, C]``
        (``key_padding_mask [B, N]`` marks padded memory cells)."""
        query = self.norms[0](
            self.self_attn(query, query_pos=query_pos, key_pos=query_pos, attn_mask=self_attn_mask))
        query = self.norms[1](
            self.cross_attn(
                query,
                key,
                value,
                query_pos=query_pos,
                key_pos=key_pos,
                attn_mask=cross_attn_mask,
                key_padding_mask=key_padding_mask))
        return self.norms[2](self.ffn(query))


def _check_num_layers(owner: str, num_layers: int) -> None:
    # the stacks read embed_dims from their first layer and DETR needs at least one of each
    if not isinstance(num_layers, int) or num_layers < 1:
        raise ValueError(f'{owner}: num_layers must be an int >= 1, got {num_layers!r}')


@MODELS.register_module()
class DetrTransformerEncoder(BaseModule):
    """A stack of ``num_layers`` identical-config :class:`DetrTransformerEncoderLayer`.

    Args:
        num_layers: Number of layers (6 in DETR).
        layer_cfg: Options of every layer.
        num_cp: Recompute the first ``num_cp`` layers in backward (activation checkpointing,
            ``torch.utils.checkpoint``) to save memory while training. Defaults to -1 (none).
    """

    def __init__(self,
                 num_layers: int,
                 layer_cfg: dict,
                 num_cp: int = -1,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        _check_num_layers('DetrTransformerEncoder', num_layers)
        if num_cp > num_layers:
            raise ValueError(f'num_cp={num_cp} exceeds num_layers={num_layers}')
        self.num_layers = num_layers
        self.num_cp = num_cp
        self.layers = ModuleList(
            [DetrTransformerEncoderLayer(**dict(layer_cfg)) for _ in range(num_layers)])
        self.embed_dims = self.layers[0].embed_dims

    def forward(self, query: Tensor, query_pos: Optional[Tensor],
                key_padding_mask: Optional[Tensor], **kwargs) -> Tensor:
        """``[B, N, C]`` features -> ``[B, N, C]`` memory."""
        for i, layer in enumerate(self.layers):
            if self.training and i < self.num_cp:
                query = checkpoint(
                    layer, query, query_pos, key_padding_mask, use_reentrant=False, **kwargs)
            else:
                query = layer(query, query_pos, key_padding_mask, **kwargs)
        return query


@MODELS.register_module()
class DetrTransformerDecoder(BaseModule):
    """A stack of :class:`DetrTransformerDecoderLayer` with a shared final norm.

    Args:
        num_layers: Number of layers (6 in DETR).
        layer_cfg: Options of every layer.
        post_norm_cfg: The norm applied to each returned output. Defaults to LayerNorm;
            None for no norm.
        return_intermediate: Return every layer's (normed) output, ``[num_layers, B, Q, C]``, for
            the auxiliary losses; otherwise only the last one, ``[1, B, Q, C]``.
    """

    def __init__(self,
                 num_layers: int,
                 layer_cfg: dict,
                 post_norm_cfg: Optional[dict] = dict(type='LN'),
                 return_intermediate: bool = True,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        _check_num_layers('DetrTransformerDecoder', num_layers)
        self.num_layers = num_layers
        self.return_intermediate = return_intermediate
        self.layers = ModuleList(
            [DetrTransformerDecoderLayer(**dict(layer_cfg)) for _ in range(num_layers)])
        self.embed_dims = self.layers[0].embed_dims
        self.post_norm = (
            build_norm_layer(post_norm_cfg, self.embed_dims)[1]
            if post_norm_cfg is not None else nn.Identity())

    def forward(self, query: Tensor, key: Tensor, value: Tensor, query_pos: Optional[Tensor],
                key_pos: Optional[Tensor], key_padding_mask: Optional[Tensor], **kwargs) -> Tensor:
        """Decode ``query [B, Q, C]`` against the memory ``key``/``value [B, N, C]``."""
        outputs = []
        for layer in self.layers:
            query = layer(
                query,
                key=key,
                value=value,
                query_pos=query_pos,
                key_pos=key_pos,
                key_padding_mask=key_padding_mask,
                **kwargs)
            if self.return_intermediate:
                outputs.append(self.post_norm(query))
        if self.return_intermediate:
            return torch.stack(outputs)
        return self.post_norm(query).unsqueeze(0)
