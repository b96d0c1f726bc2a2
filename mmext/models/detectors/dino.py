"""The DINO detector: Deformable DETR with contrastive denoising and mixed query selection.

DINO (Zhang et al., "DINO: DETR with Improved DeNoising Anchor Boxes for End-to-End Object
Detection", ICLR 2023, https://arxiv.org/abs/2203.03605) is two-stage Deformable DETR with box
refinement (:class:`DeformableDETR`, ``as_two_stage=True, with_box_refine=True``) and three
changes:

* **Contrastive denoising** (Sec. 3.3): in training, noised copies of the ground truths
  (positive: near, to reconstruct; negative: farther, to reject) are decoded in front of the
  matching queries, kept apart by an attention mask (:class:`CdnQueryGenerator`,
  DN-DETR, Li et al., CVPR 2022); their losses need no matching (:class:`DINOHead`).
* **Mixed query selection** (Sec. 3.4): the encoder's memory tokens become proposals
  (anchor + box delta, :meth:`gen_encoder_output_proposals`) scored by the extra class branch;
  the ``Q`` best by their *highest class* score give the decoder's initial anchor boxes
  (positional part), while the content queries stay learnt embeddings (``query_embedding``,
  ``[Q, C]``), not the selected encoder features, which are ambiguous.
* **Look forward twice** (Sec. 3.5): :class:`DinoTransformerDecoder` returns each layer's
  refined boxes with their graph, so a layer's box loss also updates the layer before it.

The encoder loss is DETR's Hungarian loss on the ``Q`` selected proposals with the real classes.

Config keys, submodule names and state-dict keys equal mmdet's ``DINO`` (mmdet 3.3.0), so mmdet
DINO configs run with ``type='mmext.DINO'`` and mmdet DINO checkpoints load unchanged.
"""
import warnings
from typing import Dict, Optional, Tuple

import torch
import torch.nn as nn
from mmdet.structures import OptSampleList
from mmdet.utils import ConfigType, OptConfigType
from torch import Tensor

from mmext.models.layers import (CdnQueryGenerator, DeformableDetrTransformerEncoder,
                                 DinoTransformerDecoder, MultiScaleDeformableAttention,
                                 SinePositionalEncoding)
from mmext.registry import MODELS

from .deformable_detr import DeformableDETR
from .detr import DETR, _build_or_default


@MODELS.register_module()
class DINO(DeformableDETR):
    """DINO (Zhang et al., 2023) with mmext's Transformer, query generator and head.

    Args:
        dn_cfg: :class:`CdnQueryGenerator` options (``label_noise_scale``,
            ``box_noise_scale``, ``group_cfg``); ``num_classes``, ``embed_dims`` and
            ``num_matching_queries`` come from the head, the Transformer and ``num_queries``.
        *args, **kwargs: :class:`DeformableDETR` options; ``as_two_stage`` and
            ``with_box_refine`` must be True.
    """

    def __init__(self, *args, dn_cfg: OptConfigType = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if not (self.as_two_stage and self.with_box_refine):
            raise ValueError('DINO needs as_two_stage=True and with_box_refine=True (its queries '
                             'are refined anchor boxes selected from the encoder)')
        dn_cfg = dict(dn_cfg or {})
        set_here = [k for k in ('num_classes', 'embed_dims', 'num_matching_queries') if k in dn_cfg]
        if set_here:
            raise ValueError(f'dn_cfg must not set {set_here}: they follow from the head, the '
                             'Transformer and num_queries')
        if not dn_cfg:
            warnings.warn('DINO: no dn_cfg, using CdnQueryGenerator defaults')
        self.dn_query_generator = CdnQueryGenerator(
            num_classes=self.bbox_head.num_classes,
            embed_dims=self.embed_dims,
            num_matching_queries=self.num_queries,
            **dn_cfg)

    def _init_layers(self, positional_encoding: ConfigType, encoder: ConfigType,
                     decoder: ConfigType) -> None:
        """Positional encoding, deformable encoder, DINO decoder, the ``Q`` learnt content
        queries, level embeddings and the proposal projection, in mmdet's registration order."""
        self.positional_encoding = _build_or_default(positional_encoding, SinePositionalEncoding)
        self.encoder = _build_or_default(encoder, DeformableDetrTransformerEncoder)
        self.decoder = _build_or_default(decoder, DinoTransformerDecoder)
        self.embed_dims = self.encoder.embed_dims
        # content queries only: the positional part comes from the selected proposals
        self.query_embedding = nn.Embedding(self.num_queries, self.embed_dims)
        self.level_embed = nn.Parameter(torch.empty(self.num_feature_levels, self.embed_dims))
        nn.init.normal_(self.level_embed)
        self.memory_trans_fc = nn.Linear(self.embed_dims, self.embed_dims)
        self.memory_trans_norm = nn.LayerNorm(self.embed_dims)

    def init_weights(self) -> None:
        """DETR's init (submodules, Xavier-uniform Transformer matrices), the deformable
        attentions' grid init, Xavier-uniform proposal projection and content queries, N(0, 1)
        level embeddings, as mmdet's."""
        DETR.init_weights(self)
        for m in self.modules():
            if isinstance(m, MultiScaleDeformableAttention):
                m.init_weights()
        nn.init.xavier_uniform_(self.memory_trans_fc.weight)
        nn.init.xavier_uniform_(self.query_embedding.weight)
        nn.init.normal_(self.level_embed)

    # ------------------------------------------------------------------------------------------
    # Transformer: pre_transformer -> forward_encoder -> pre_decoder -> forward_decoder
    # ------------------------------------------------------------------------------------------
    def forward_transformer(self,
                            img_feats: Tuple[Tensor, ...],
                            batch_data_samples: OptSampleList = None) -> Dict:
        """Neck maps -> the head's inputs: ``hidden_states [D, B, Q', C]``, ``references``
        (``D + 1`` tensors ``[B, Q', 4]``) and, in training, the selected proposals'
        ``enc_outputs_class``/``enc_outputs_coord`` and ``dn_meta`` (``Q' = D_dn + Q`` in
        training, ``Q`` at inference)."""
        encoder_inputs, decoder_inputs = self.pre_transformer(img_feats, batch_data_samples)
        encoder_outputs = self.forward_encoder(**encoder_inputs)
        query_inputs, head_inputs = self.pre_decoder(
            **encoder_outputs, batch_data_samples=batch_data_samples)
        decoder_inputs.update(query_inputs)
        head_inputs.update(self.forward_decoder(**decoder_inputs))
        return head_inputs

    def pre_decoder(self,
                    memory: Tensor,
                    memory_mask: Optional[Tensor],
                    spatial_shapes: Tensor,
                    batch_data_samples: OptSampleList = None) -> Tuple[Dict, Dict]:
        """Mixed query selection, plus the denoising queries in training.

        Args:
            memory: ``[B, N, C]`` encoder output.
            memory_mask: ``[B, N]`` True at padded cells, or None.
            spatial_shapes: ``[L, 2]`` ``(H_l, W_l)``.
            batch_data_samples: Ground truths for the denoising queries (training only).

        Returns:
            The decoder's inputs: ``query [B, Q', C]`` (denoising label embeddings, then the
            learnt content queries), ``memory``, ``reference_points [B, Q', 4]`` (sigmoid
            ``cxcywh``: noised ground truths, then the top-``Q`` proposals, detached) and
            ``dn_mask [Q', Q']`` (None at inference); and, in training, the head's
            ``enc_outputs_class [B, Q, K]``/``enc_outputs_coord [B, Q, 4]`` (the selected
            proposals, with their graph) and ``dn_meta``.
        """
        batch_size = memory.size(0)
        output_memory, output_proposals = self.gen_encoder_output_proposals(
            memory, memory_mask, spatial_shapes)
        branch = self.decoder.num_layers  # the extra branch pair scores the proposals
        enc_outputs_class = self.bbox_head.cls_branches[branch](output_memory)  # [B, N, K]
        enc_outputs_coord_unact = self.bbox_head.reg_branches[branch](
            output_memory) + output_proposals  # [B, N, 4], logit space

        # the Q proposals with the highest score of any class (Deformable DETR: class 0)
        topk = torch.topk(enc_outputs_class.max(-1)[0], k=self.num_queries, dim=1)[1]
        topk_score = torch.gather(enc_outputs_class, 1,
                                  topk[..., None].expand(-1, -1, enc_outputs_class.size(-1)))
        topk_coords_unact = torch.gather(enc_outputs_coord_unact, 1, topk[...,
                                                                          None].expand(-1, -1, 4))
        topk_coords = topk_coords_unact.sigmoid()  # for the encoder loss, with its graph
        topk_coords_unact = topk_coords_unact.detach()  # the decoder's anchors: no gradient

        query = self.query_embedding.weight[None].expand(batch_size, -1, -1)
        if self.training:
            dn_label_query, dn_bbox_query, dn_mask, dn_meta = self.dn_query_generator(
                batch_data_samples)
            query = torch.cat([dn_label_query, query], dim=1)
            reference_points = torch.cat([dn_bbox_query, topk_coords_unact], dim=1)
        else:
            reference_points = topk_coords_unact
            dn_mask, dn_meta = None, None
        decoder_inputs = dict(
            query=query,
            memory=memory,
            reference_points=reference_points.sigmoid(),
            dn_mask=dn_mask)
        head_inputs = dict(
            enc_outputs_class=topk_score, enc_outputs_coord=topk_coords,
            dn_meta=dn_meta) if self.training else dict()
        return decoder_inputs, head_inputs

    def forward_decoder(self,
                        query: Tensor,
                        memory: Tensor,
                        memory_mask: Optional[Tensor],
                        reference_points: Tensor,
                        spatial_shapes: Tensor,
                        level_start_index: Tensor,
                        valid_ratios: Tensor,
                        dn_mask: Optional[Tensor] = None) -> Dict:
        """The DINO decoder, refining with the head's box branches: ``hidden_states
        [D, B, Q', C]`` and ``references`` (the initial boxes and each layer's, ``D + 1``
        tensors ``[B, Q', 4]``)."""
        hidden_states, references = self.decoder(
            query=query,
            value=memory,
            key_padding_mask=memory_mask,
            self_attn_mask=dn_mask,
            reference_points=reference_points,
            spatial_shapes=spatial_shapes,
            level_start_index=level_start_index,
            valid_ratios=valid_ratios,
            reg_branches=self.bbox_head.reg_branches)
        if self.training and query.size(1) == self.num_queries:
            # no ground truth in the batch, so no denoising query: keep the label embedding in
            # the graph (with a zero gradient), or DDP would find it unused
            hidden_states = hidden_states + \
                self.dn_query_generator.label_embedding.weight[0, 0] * 0.0
        return dict(hidden_states=hidden_states, references=list(references))
