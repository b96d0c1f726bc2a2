"""The deformable Transformer encoder/decoder of Deformable DETR.

Deformable DETR: Deformable Transformers for End-to-End Object Detection (Zhu et al., ICLR 2021,
https://arxiv.org/abs/2010.04159), Sec. 4.1 and appendix A.2-A.4.  DETR's post-norm layers with
the attention to image features replaced by multi-scale deformable attention (eq. 3,
:class:`MultiScaleDeformableAttention`), which samples a few points around a reference point on
each level of a feature pyramid:

    encoder:  x = LN(x + MSDeformAttn(q=x+p, ref=cell centres, v=x));     x = LN(x + FFN(x))
    decoder:  t = LN(t + SelfAttn(q=t+o, k=t+o, v=t))
              t = LN(t + MSDeformAttn(q=t+o, ref=p̂_q, v=m))              (m: encoder memory)
              t = LN(t + FFN(t))

Reference points are normalised to the *valid* (unpadded) part of each image and scaled to each
level's padded map by its valid ratio.  The encoder's are the centres of its own cells; the
decoder's come from the detector (a linear map of the object queries, or the top-k proposal
boxes of the two-stage variant).  With iterative bounding-box refinement (appendix A.4) each
decoder layer ``d`` refines the boxes of layer ``d - 1`` with the head's regression branch ``d``,
``b_d = σ(Δb_d + σ⁻¹(b_{d-1}))``, and the next layer samples around the refined box (gradients
stop at the references).  The decoder has no final norm.

Configs, parameter names and state-dict keys equal mmdet's ``DeformableDetrTransformerEncoder``/
``Decoder`` (mmdet 3.3.0): ``self_attn``/``cross_attn`` are our
:class:`MultiScaleDeformableAttention` (mmcv's keys), the decoder's ``self_attn.attn`` an
``nn.MultiheadAttention``, ``ffn.layers`` mmcv's ``FFN`` and ``norms.{0,1,2}`` the LayerNorms.
"""
from typing import Optional, Tuple, Union

import torch
import torch.nn as nn
from mmcv.cnn.bricks.transformer import FFN
from mmengine.model import BaseModule, ModuleList
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from mmext.registry import MODELS

from .detr_transformer import _DEFAULT_ATTN, _DEFAULT_FFN, DetrAttention, _check_num_layers, _norms
from .inverse_sigmoid import inverse_sigmoid
from .ms_deform_attn import MultiScaleDeformableAttention

__all__ = [
    'DeformableDetrTransformerEncoderLayer', 'DeformableDetrTransformerDecoderLayer',
    'DeformableDetrTransformerEncoder', 'DeformableDetrTransformerDecoder'
]


def _batch_first(cfg: Optional[dict], owner: str) -> dict:
    """The attention config with ``batch_first=True`` (the layers work on ``[B, N, C]``)."""
    cfg = dict(cfg if cfg is not None else _DEFAULT_ATTN)
    if not cfg.setdefault('batch_first', True):
        raise ValueError(f'{owner} works on batch-first [B, N, C] tensors; '
                         'batch_first must be True')
    return cfg


@MODELS.register_module()
class DeformableDetrTransformerEncoderLayer(BaseModule):
    """Post-norm encoder layer: deformable self-attention -> add & LN -> FFN -> add & LN.

    Args:
        self_attn_cfg: :class:`MultiScaleDeformableAttention` options.
        ffn_cfg: mmcv ``FFN`` options (its residual add is the layer's second residual).
        norm_cfg: Norm config of the two norms. Defaults to LayerNorm.
        init_cfg: Initialisation config.
    """

    def __init__(self,
                 self_attn_cfg: Optional[dict] = None,
                 ffn_cfg: Optional[dict] = None,
                 norm_cfg: dict = dict(type='LN'),
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.self_attn = MultiScaleDeformableAttention(**_batch_first(self_attn_cfg,
                                                                      type(self).__name__))
        self.embed_dims = self.self_attn.embed_dims
        self.ffn = FFN(**dict(ffn_cfg or _DEFAULT_FFN))
        self.norms = _norms(norm_cfg, self.embed_dims, 2)

    def forward(self, query: Tensor, query_pos: Optional[Tensor],
                key_padding_mask: Optional[Tensor], **kwargs) -> Tensor:
        """``query``/``query_pos``: ``[B, N, C]`` flattened multi-level features and their
        positional + level embeddings; ``key_padding_mask``: ``[B, N]`` or None; ``kwargs``:
        ``reference_points [B, N, L, 2]``, ``spatial_shapes``, ``level_start_index`` of
        :class:`MultiScaleDeformableAttention`."""
        query = self.norms[0](
            self.self_attn(
                query=query,
                value=query,
                query_pos=query_pos,
                key_padding_mask=key_padding_mask,
                **kwargs))
        return self.norms[1](self.ffn(query))


@MODELS.register_module()
class DeformableDetrTransformerDecoderLayer(BaseModule):
    """Post-norm decoder layer: self-attn -> add & LN -> deformable cross-attn -> add & LN ->
    FFN -> add & LN.

    Args:
        self_attn_cfg: :class:`DetrAttention` options of the query self-attention.
        cross_attn_cfg: :class:`MultiScaleDeformableAttention` options of the attention to the
            encoder memory.
        ffn_cfg: mmcv ``FFN`` options.
        norm_cfg: Norm config of the three norms. Defaults to LayerNorm.
        init_cfg: Initialisation config.
    """

    def __init__(self,
                 self_attn_cfg: Optional[dict] = None,
                 cross_attn_cfg: Optional[dict] = None,
                 ffn_cfg: Optional[dict] = None,
                 norm_cfg: dict = dict(type='LN'),
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        owner = type(self).__name__
        self.self_attn = DetrAttention(**_batch_first(self_attn_cfg, owner))
        self.cross_attn = MultiScaleDeformableAttention(**_batch_first(cross_attn_cfg, owner))
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
        """``query``/``query_pos [B, Q, C]`` attend to each other (``self_attn_mask [Q, Q]``,
        True = blocked), then sample the memory ``value [B, N, C]`` (``key_padding_mask
        [B, N]``) around ``kwargs['reference_points'] [B, Q, L, 2 or 4]``.  ``key``, ``key_pos``
        and ``cross_attn_mask`` are unused by deformable attention (mmdet's signature)."""
        query = self.norms[0](
            self.self_attn(query, query_pos=query_pos, key_pos=query_pos, attn_mask=self_attn_mask))
        query = self.norms[1](
            self.cross_attn(
                query=query,
                key=key,
                value=value,
                query_pos=query_pos,
                key_padding_mask=key_padding_mask,
                **kwargs))
        return self.norms[2](self.ffn(query))


def scale_references(reference_points: Tensor, valid_ratios: Tensor) -> Tensor:
    """Image-normalised references -> each level's padded-map coordinates.

    Args:
        reference_points: ``[B, Q, 2]`` points or ``[B, Q, 4]`` boxes, normalised to the valid
            part of each image.
        valid_ratios: ``[B, L, 2]`` valid ``(w, h)`` fraction of each level's map.

    Returns:
        ``[B, Q, L, 2 or 4]``: coordinates (and box sizes) times the valid ratios.
    """
    if reference_points.size(-1) == 4:
        valid_ratios = torch.cat([valid_ratios, valid_ratios], -1)
    elif reference_points.size(-1) != 2:
        raise ValueError('reference_points must end in 2 (x, y) or 4 (cx, cy, w, h) '
                         f'coordinates, got {reference_points.size(-1)}')
    return reference_points[:, :, None] * valid_ratios[:, None]


@MODELS.register_module()
class DeformableDetrTransformerEncoder(BaseModule):
    """A stack of ``num_layers`` identical-config :class:`DeformableDetrTransformerEncoderLayer`.

    Args:
        num_layers: Number of layers (6 in Deformable DETR).
        layer_cfg: Options of every layer.
        num_cp: Recompute the first ``num_cp`` layers in backward (activation checkpointing,
            ``torch.utils.checkpoint``) to save memory while training. Defaults to -1 (none).
        init_cfg: Initialisation config.
    """

    def __init__(self,
                 num_layers: int,
                 layer_cfg: dict,
                 num_cp: int = -1,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        _check_num_layers(type(self).__name__, num_layers)
        if num_cp > num_layers:
            raise ValueError(f'num_cp={num_cp} exceeds num_layers={num_layers}')
        self.num_layers = num_layers
        self.layer_cfg = layer_cfg
        self.num_cp = num_cp
        self._init_layers()

    def _init_layers(self) -> None:
        """Build ``self.layers`` and set ``self.embed_dims`` (a hook for subclasses)."""
        self.layers = ModuleList([
            DeformableDetrTransformerEncoderLayer(**dict(self.layer_cfg))
            for _ in range(self.num_layers)
        ])
        self.embed_dims = self.layers[0].embed_dims

    def forward(self, query: Tensor, query_pos: Tensor, key_padding_mask: Optional[Tensor],
                spatial_shapes: Tensor, level_start_index: Tensor, valid_ratios: Tensor,
                **kwargs) -> Tensor:
        """Encode the flattened pyramid.

        Args:
            query: ``[B, N, C]`` features of all levels, ``N = Σ_l H_l W_l``.
            query_pos: ``[B, N, C]`` positional + level embeddings.
            key_padding_mask: ``[B, N]`` True at padded cells, or None.
            spatial_shapes: ``[L, 2]`` ``(H_l, W_l)``.
            level_start_index: ``[L]`` offset of each level in ``N``.
            valid_ratios: ``[B, L, 2]`` valid ``(w, h)`` fraction of each level.

        Returns:
            ``[B, N, C]`` memory.
        """
        reference_points = self.get_encoder_reference_points(
            spatial_shapes, valid_ratios, device=query.device)
        layer_kwargs = dict(
            spatial_shapes=spatial_shapes,
            level_start_index=level_start_index,
            valid_ratios=valid_ratios,
            reference_points=reference_points,
            **kwargs)
        for i, layer in enumerate(self.layers):
            if self.training and i < self.num_cp:
                query = checkpoint(
                    layer, query, query_pos, key_padding_mask, use_reentrant=False, **layer_kwargs)
            else:
                query = layer(query, query_pos, key_padding_mask, **layer_kwargs)
        return query

    @staticmethod
    def get_encoder_reference_points(spatial_shapes: Tensor, valid_ratios: Tensor,
                                     device: Union[torch.device, str]) -> Tensor:
        """Every cell's centre as the reference point on every level.

        The centre of cell ``(i, j)`` of level ``l`` is ``((j + 0.5) / (r_w W_l),
        (i + 0.5) / (r_h H_l))`` in valid-image coordinates, then scaled by each level's valid
        ratios so that it points at the same image location on every map.

        Args:
            spatial_shapes: ``[L, 2]`` ``(H_l, W_l)``.
            valid_ratios: ``[B, L, 2]`` ``(r_w, r_h)``.
            device: Device of the result.

        Returns:
            ``[B, N, L, 2]`` ``(x, y)`` reference points.
        """
        points = []
        for lvl, (h, w) in enumerate(spatial_shapes.tolist()):
            ref_y, ref_x = torch.meshgrid(
                torch.linspace(0.5, h - 0.5, h, dtype=torch.float32, device=device),
                torch.linspace(0.5, w - 0.5, w, dtype=torch.float32, device=device),
                indexing='ij')
            ref_y = ref_y.reshape(-1)[None] / (valid_ratios[:, None, lvl, 1] * h)
            ref_x = ref_x.reshape(-1)[None] / (valid_ratios[:, None, lvl, 0] * w)
            points.append(torch.stack((ref_x, ref_y), -1))
        return scale_references(torch.cat(points, 1), valid_ratios)


@MODELS.register_module()
class DeformableDetrTransformerDecoder(BaseModule):
    """A stack of :class:`DeformableDetrTransformerDecoderLayer` with optional iterative box
    refinement (Zhu et al., 2021, appendix A.4).

    Args:
        num_layers: Number of layers (6 in Deformable DETR).
        layer_cfg: Options of every layer.
        post_norm_cfg: Must be None: this decoder has no final norm (kept so mmdet configs,
            which set ``post_norm_cfg=None``, are accepted).
        return_intermediate: Return every layer's output and references (for the auxiliary
            losses), otherwise only the last ones. Defaults to True.
        init_cfg: Initialisation config.
    """

    def __init__(self,
                 num_layers: int,
                 layer_cfg: dict,
                 post_norm_cfg: Optional[dict] = None,
                 return_intermediate: bool = True,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        _check_num_layers(type(self).__name__, num_layers)
        if post_norm_cfg is not None:
            raise ValueError(f'{type(self).__name__} has no post norm; post_norm_cfg must be None')
        self.num_layers = num_layers
        self.layer_cfg = layer_cfg
        self.post_norm_cfg = post_norm_cfg
        self.return_intermediate = return_intermediate
        self._init_layers()

    def _init_layers(self) -> None:
        """Build ``self.layers`` and set ``self.embed_dims`` (a hook for subclasses)."""
        self.layers = ModuleList([
            DeformableDetrTransformerDecoderLayer(**dict(self.layer_cfg))
            for _ in range(self.num_layers)
        ])
        self.embed_dims = self.layers[0].embed_dims

    def forward(self,
                query: Tensor,
                query_pos: Tensor,
                value: Tensor,
                key_padding_mask: Optional[Tensor],
                reference_points: Tensor,
                spatial_shapes: Tensor,
                level_start_index: Tensor,
                valid_ratios: Tensor,
                reg_branches: Optional[nn.ModuleList] = None,
                **kwargs) -> Tuple[Tensor, Tensor]:
        """Decode the queries against the memory.

        Args:
            query: ``[B, Q, C]`` decoder input.
            query_pos: ``[B, Q, C]`` positional queries, added to queries/keys of every
                attention.
            value: ``[B, N, C]`` encoder memory.
            key_padding_mask: ``[B, N]`` True at padded memory cells, or None.
            reference_points: ``[B, Q, 2]`` points ``(x, y)`` or ``[B, Q, 4]`` boxes
                ``(cx, cy, w, h)`` normalised to the valid image.
            spatial_shapes: ``[L, 2]`` ``(H_l, W_l)``.
            level_start_index: ``[L]`` offset of each level in ``N``.
            valid_ratios: ``[B, L, 2]`` valid ``(w, h)`` fraction of each level.
            reg_branches: With iterative refinement, the head's regression branches; branch
                ``d`` maps layer ``d``'s output ``[B, Q, C]`` to a box delta ``[B, Q, 4]`` in
                logit space. None: the references stay fixed.

        Returns:
            ``hidden_states [D, B, Q, C]`` and ``references [D, B, Q, 2 or 4]``, the references
            after each layer (detached), with ``D = num_layers`` when ``return_intermediate``,
            else ``[B, Q, C]`` and ``[B, Q, 2 or 4]`` of the last layer.
        """
        hidden_states, references = [], []
        for layer_id, layer in enumerate(self.layers):
            query = layer(
                query,
                query_pos=query_pos,
                value=value,
                key_padding_mask=key_padding_mask,
                spatial_shapes=spatial_shapes,
                level_start_index=level_start_index,
                valid_ratios=valid_ratios,
                reference_points=scale_references(reference_points, valid_ratios),
                **kwargs)
            if reg_branches is not None:
                reference_points = self.refine(reference_points,
                                               reg_branches[layer_id](query)).detach()
            if self.return_intermediate:
                hidden_states.append(query)
                references.append(reference_points)
        if self.return_intermediate:
            return torch.stack(hidden_states), torch.stack(references)
        return query, reference_points

    @staticmethod
    def refine(reference_points: Tensor, delta: Tensor) -> Tensor:
        """``σ(Δ + σ⁻¹(b))``: boxes refined in logit space.

        A 2-d reference point refines the centre; the box size is then the delta's own
        ``σ(Δ_wh)``, so the result is always a ``[B, Q, 4]`` box.
        """
        if reference_points.size(-1) == 4:
            return (delta + inverse_sigmoid(reference_points)).sigmoid()
        return torch.cat([delta[..., :2] + inverse_sigmoid(reference_points), delta[..., 2:]],
                         -1).sigmoid()
