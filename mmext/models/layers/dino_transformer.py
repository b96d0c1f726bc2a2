"""The Transformer decoder of DINO: anchor boxes as queries, look forward twice.

DINO (Zhang et al., "DINO: DETR with Improved DeNoising Anchor Boxes for End-to-End Object
Detection", ICLR 2023, https://arxiv.org/abs/2203.03605) decodes with Deformable DETR's layers
(:class:`DeformableDetrTransformerDecoderLayer`) and box refinement, and takes from DAB-DETR
(Liu et al., ICLR 2022) that each query *is* an anchor box ``b = (cx, cy, w, h)``: before every
layer, the positional query is computed from the current box,

    query_pos = MLP(PE(b)),      PE: sine encoding of the 4 coordinates, 2C channels

(``ref_point_head``, a 2-layer MLP to ``C`` channels), so the attention always looks around the
box that is being refined.  After layer ``d`` the head's regression branch ``d`` refines the box,
``b_d = σ(Δb_d + σ⁻¹(b_{d-1}))``; the next layer starts from ``b_d`` *detached*, but the box
returned for layer ``d`` keeps its graph.  The head predicts layer ``d + 1``'s box from
``b_d``, so layer ``d + 1``'s box loss also reaches the parameters that produced ``b_d``:
"look forward twice" (DINO Sec. 3.5), where Deformable DETR's detached references let each box
loss update one layer only.  Every layer's output goes through one shared final LayerNorm
(``norm``) before the head.

Configs, parameter names and state-dict keys equal ``mmdet.models.layers.DinoTransformerDecoder``
(mmdet 3.3.0).  mmdet encodes the boxes with 128 sine features per coordinate whatever the width;
here it is ``embed_dims // 2`` (the same for mmdet's 256), so narrower DINOs work too.
"""
from typing import Optional, Tuple

import torch
import torch.nn as nn
from mmdet.models.layers.transformer.utils import MLP, coordinate_to_encoding
from torch import Tensor

from mmext.registry import MODELS

from .deformable_detr_transformer import DeformableDetrTransformerDecoder, scale_references
from .inverse_sigmoid import inverse_sigmoid

__all__ = ['DinoTransformerDecoder']


@MODELS.register_module()
class DinoTransformerDecoder(DeformableDetrTransformerDecoder):
    """DINO's decoder (Zhang et al., 2023): Deformable DETR's decoder layers with positional
    queries from the anchor boxes, look-forward-twice references and a final LayerNorm.

    Takes :class:`DeformableDetrTransformerDecoder`'s arguments (``num_layers``, ``layer_cfg``,
    ``post_norm_cfg=None``, ``return_intermediate``).
    """

    def _init_layers(self) -> None:
        """Deformable DETR's layers, plus ``ref_point_head`` (box encoding ``[.., 2C]`` ->
        positional query ``[.., C]``) and the shared output ``norm``."""
        super()._init_layers()
        self.ref_point_head = MLP(self.embed_dims * 2, self.embed_dims, self.embed_dims, 2)
        self.norm = nn.LayerNorm(self.embed_dims)

    def forward(self,
                query: Tensor,
                value: Tensor,
                key_padding_mask: Optional[Tensor],
                self_attn_mask: Optional[Tensor],
                reference_points: Tensor,
                spatial_shapes: Tensor,
                level_start_index: Tensor,
                valid_ratios: Tensor,
                reg_branches: Optional[nn.ModuleList] = None,
                **kwargs) -> Tuple[Tensor, Tensor]:
        """Decode ``Q`` (denoising + matching) anchor-box queries.

        Args:
            query: ``[B, Q, C]`` content queries.
            value: ``[B, N, C]`` encoder memory.
            key_padding_mask: ``[B, N]`` True at padded memory cells, or None.
            self_attn_mask: ``[Q, Q]`` bool, True where query (row) may not attend to query
                (column): keeps denoising groups apart (:class:`CdnQueryGenerator`); None at
                inference.
            reference_points: ``[B, Q, 4]`` initial anchor boxes, sigmoid ``cxcywh``
                normalised to the valid image.
            spatial_shapes: ``[L, 2]`` ``(H_l, W_l)``.
            level_start_index: ``[L]`` offset of each level in ``N``.
            valid_ratios: ``[B, L, 2]`` valid ``(w, h)`` fraction of each level.
            reg_branches: The head's regression branches; branch ``d`` refines layer ``d``'s
                boxes. None: the boxes stay as given.

        Returns:
            With ``return_intermediate``: ``hidden_states [D, B, Q, C]`` (normed) and
            ``references [D + 1, B, Q, 4]``: the initial boxes and each layer's refined boxes,
            not detached (look forward twice).  Else the last layer's un-normed output
            ``[B, Q, C]`` and its (detached) boxes ``[B, Q, 4]``, as mmdet.
        """
        if reference_points.size(-1) != 4:
            raise ValueError(
                'DinoTransformerDecoder refines anchor boxes: reference_points '
                f'must be [B, Q, 4] (cx, cy, w, h), got {tuple(reference_points.shape)}')
        hidden_states, references = [], [reference_points]
        for layer_id, layer in enumerate(self.layers):
            level_boxes = scale_references(reference_points, valid_ratios)  # [B, Q, L, 4]
            # positional query from the box as seen on the first level's padded map
            query_pos = self.ref_point_head(
                coordinate_to_encoding(level_boxes[:, :, 0], num_feats=self.embed_dims // 2))
            query = layer(
                query,
                query_pos=query_pos,
                value=value,
                key_padding_mask=key_padding_mask,
                self_attn_mask=self_attn_mask,
                spatial_shapes=spatial_shapes,
                level_start_index=level_start_index,
                valid_ratios=valid_ratios,
                reference_points=level_boxes,
                **kwargs)
            refined = reference_points
            if reg_branches is not None:
                delta = reg_branches[layer_id](query)
                refined = (delta + inverse_sigmoid(reference_points, eps=1e-3)).sigmoid()
                reference_points = refined.detach()  # the next layer starts from b_d, detached
            if self.return_intermediate:
                hidden_states.append(self.norm(query))
                references.append(refined)  # with its graph: look forward twice
        if self.return_intermediate:
            return torch.stack(hidden_states), torch.stack(references)
        return query, reference_points
