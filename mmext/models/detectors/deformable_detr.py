"""The Deformable DETR detector: multi-scale features -> deformable Transformer -> per-layer head.

Deformable DETR: Deformable Transformers for End-to-End Object Detection (Zhu et al., ICLR 2021,
https://arxiv.org/abs/2010.04159), Sec. 4.1 and appendix A.2-A.4.  The forward pass has the
four stages of mmdet's DETR-like detectors:

1. :meth:`pre_transformer`: the ``L`` neck maps ``[B, C, H_l, W_l]`` are flattened and
   concatenated into ``N = Σ_l H_l W_l`` tokens; each gets the sine encoding of its cell plus a
   learnt embedding of its level (``level_embed``, A.2); the padding masks give each level's valid
   ratios.
2. :meth:`forward_encoder`: the deformable encoder turns them into the memory ``[B, N, C]``.
3. :meth:`pre_decoder`: the decoder's queries and reference points.  Plain: ``num_queries``
   learnt embeddings of ``2C`` channels, split into a positional query and a query; the
   reference point is ``σ(Linear(positional query))`` (Sec. 4.1).  Two-stage (A.4): every memory
   cell is an encoder proposal, a box centred on the cell with side ``0.05 · 2^l``
   (:meth:`gen_encoder_output_proposals`), scored by the extra class branch and refined by the
   extra box branch of the head; the top ``num_queries`` by foreground score become the
   decoder's reference boxes, and their sine embedding the queries.
4. :meth:`forward_decoder`: the deformable decoder, refining its references with the head's box
   branches when ``with_box_refine`` (A.4).

The head maps every decoder layer to classes and boxes relative to that layer's references and
computes the Hungarian losses (plus the encoder-proposal loss of the two-stage variant).

Config keys, submodule names and state-dict keys are mmdet's ``DeformableDETR`` (mmdet 3.3.0), so
mmdet configs run with ``type='mmext.DeformableDETR'`` and mmdet checkpoints load unchanged.
The one extension: the proposals' sine embedding has ``embed_dims / 2`` frequencies per
coordinate (mmdet hard-codes 128, i.e. ``embed_dims = 256``), so the two-stage variant also
works at other widths; at 256 it is mmdet's.
"""
import copy
import math
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn as nn
from mmdet.structures import OptSampleList, SampleList
from mmdet.utils import ConfigType, OptConfigType
from torch import Tensor

from mmext.models.layers import (DeformableDetrTransformerDecoder, DeformableDetrTransformerEncoder,
                                 MultiScaleDeformableAttention, SinePositionalEncoding)
from mmext.registry import MODELS

from .detr import DETR, _build_or_default


@MODELS.register_module()
class DeformableDETR(DETR):
    """Deformable DETR (Zhu et al., 2021), with iterative box refinement and the two-stage
    variant.

    Args:
        decoder: :class:`DeformableDetrTransformerDecoder` options (``num_layers``, ...).
        bbox_head: Head config (``DeformableDETRHead``); must not set ``share_pred_layer``,
            ``num_pred_layer`` or ``as_two_stage``, which follow from the options below.
        with_box_refine: Each decoder layer refines the previous layer's boxes with its own
            box branch (A.4). Defaults to False.
        as_two_stage: Take the decoder's queries and reference boxes from the top-scoring
            encoder proposals (A.4). Defaults to False.
        num_feature_levels: Number of neck maps ``L`` (and rows of ``level_embed``).
            Defaults to 4.
        *args, **kwargs: :class:`DETR` options (``backbone``, ``neck``, ``encoder``,
            ``positional_encoding``, ``num_queries``, ``train_cfg``, ``test_cfg``,
            ``data_preprocessor``, ``init_cfg``).
    """

    def __init__(self,
                 *args,
                 decoder: OptConfigType = None,
                 bbox_head: OptConfigType = None,
                 with_box_refine: bool = False,
                 as_two_stage: bool = False,
                 num_feature_levels: int = 4,
                 **kwargs) -> None:
        self.with_box_refine = with_box_refine
        self.as_two_stage = as_two_stage
        self.num_feature_levels = num_feature_levels
        if decoder is None:
            raise ValueError(f'{type(self).__name__} needs a `decoder` config')
        if bbox_head is not None:
            set_here = [
                k for k in ('share_pred_layer', 'num_pred_layer', 'as_two_stage') if k in bbox_head
            ]
            if set_here:
                raise ValueError(f'bbox_head must not set {set_here}: the detector sets them '
                                 'from with_box_refine, as_two_stage and the decoder depth')
            bbox_head = dict(
                copy.deepcopy(bbox_head),
                # one branch pair per decoder layer, shared unless refining, plus one for the
                # encoder proposals
                share_pred_layer=not with_box_refine,
                num_pred_layer=decoder['num_layers'] + int(as_two_stage),
                as_two_stage=as_two_stage)
        super().__init__(*args, decoder=decoder, bbox_head=bbox_head, **kwargs)

    def _init_layers(self, positional_encoding: ConfigType, encoder: ConfigType,
                     decoder: ConfigType) -> None:
        """Positional encoding, deformable Transformer, level embeddings and the query (plain)
        or proposal (two-stage) layers, in mmdet's registration order."""
        self.positional_encoding = _build_or_default(positional_encoding, SinePositionalEncoding)
        self.encoder = _build_or_default(encoder, DeformableDetrTransformerEncoder)
        self.decoder = _build_or_default(decoder, DeformableDetrTransformerDecoder)
        self.embed_dims = self.encoder.embed_dims
        if not self.as_two_stage:
            # positional query and query of each object, split in pre_decoder
            self.query_embedding = nn.Embedding(self.num_queries, 2 * self.embed_dims)
        self.level_embed = nn.Parameter(torch.empty(self.num_feature_levels, self.embed_dims))
        nn.init.normal_(self.level_embed)
        if self.as_two_stage:
            self.memory_trans_fc = nn.Linear(self.embed_dims, self.embed_dims)
            self.memory_trans_norm = nn.LayerNorm(self.embed_dims)
            self.pos_trans_fc = nn.Linear(2 * self.embed_dims, 2 * self.embed_dims)
            self.pos_trans_norm = nn.LayerNorm(2 * self.embed_dims)
        else:
            self.reference_points_fc = nn.Linear(self.embed_dims, 2)

    def init_weights(self) -> None:
        """DETR's init (submodules, Xavier-uniform Transformer matrices), then the deformable
        attentions' own grid init, Xavier-uniform query/proposal projections and N(0, 1) level
        embeddings, as the official code."""
        super().init_weights()
        for m in self.modules():
            if isinstance(m, MultiScaleDeformableAttention):
                m.init_weights()
        if self.as_two_stage:
            nn.init.xavier_uniform_(self.memory_trans_fc.weight)
            nn.init.xavier_uniform_(self.pos_trans_fc.weight)
        else:
            nn.init.xavier_uniform_(self.reference_points_fc.weight)
            nn.init.zeros_(self.reference_points_fc.bias)
        nn.init.normal_(self.level_embed)

    # ------------------------------------------------------------------------------------------
    # BaseDetector interface
    # ------------------------------------------------------------------------------------------
    def loss(self, batch_inputs: Tensor, batch_data_samples: SampleList) -> Dict[str, Tensor]:
        head_inputs = self.forward_transformer(self.extract_feat(batch_inputs), batch_data_samples)
        return self.bbox_head.loss(**head_inputs, batch_data_samples=batch_data_samples)

    def predict(self,
                batch_inputs: Tensor,
                batch_data_samples: SampleList,
                rescale: bool = True) -> SampleList:
        head_inputs = self.forward_transformer(self.extract_feat(batch_inputs), batch_data_samples)
        results = self.bbox_head.predict(
            **head_inputs, rescale=rescale, batch_data_samples=batch_data_samples)
        return self.add_pred_to_datasample(batch_data_samples, results)

    def _forward(self,
                 batch_inputs: Tensor,
                 batch_data_samples: OptSampleList = None) -> Tuple[Tensor, Tensor]:
        head_inputs = self.forward_transformer(self.extract_feat(batch_inputs), batch_data_samples)
        return self.bbox_head(head_inputs['hidden_states'], head_inputs['references'])

    # ------------------------------------------------------------------------------------------
    # Transformer: pre_transformer -> forward_encoder -> pre_decoder -> forward_decoder
    # ------------------------------------------------------------------------------------------
    def forward_transformer(self,
                            img_feats: Tuple[Tensor, ...],
                            batch_data_samples: OptSampleList = None) -> Dict:
        """Neck maps -> the head's inputs: ``hidden_states [D, B, Q, C]``, ``references``
        (``D + 1`` tensors) and, in training, ``enc_outputs_class``/``enc_outputs_coord``."""
        encoder_inputs, decoder_inputs = self.pre_transformer(img_feats, batch_data_samples)
        encoder_outputs = self.forward_encoder(**encoder_inputs)
        query_inputs, head_inputs = self.pre_decoder(**encoder_outputs)
        decoder_inputs.update(query_inputs)
        head_inputs.update(self.forward_decoder(**decoder_inputs))
        return head_inputs

    def pre_transformer(self,
                        mlvl_feats: Tuple[Tensor, ...],
                        batch_data_samples: OptSampleList = None) -> Tuple[Dict, Dict]:
        """Flatten the pyramid (Sec. 4.1 and A.2).

        Args:
            mlvl_feats: ``L`` maps ``[B, C, H_l, W_l]``.
            batch_data_samples: For the padding masks (none when no image is padded).

        Returns:
            The encoder's inputs: ``feat``/``feat_pos`` ``[B, N, C]`` (positional + level
            embedding), ``feat_mask [B, N]`` or None, ``spatial_shapes [L, 2]``,
            ``level_start_index [L]``, ``valid_ratios [B, L, 2]``; and the decoder's:
            ``memory_mask`` and the same three shape tensors.
        """
        if len(mlvl_feats) != self.num_feature_levels:
            raise ValueError(f'{type(self).__name__} has num_feature_levels='
                             f'{self.num_feature_levels} but the neck gives {len(mlvl_feats)} '
                             'maps')
        batch_size = mlvl_feats[0].size(0)
        masks = [self.padding_mask(feat, batch_data_samples) for feat in mlvl_feats]
        feats, pos_embeds, flat_masks, shapes = [], [], [], []
        for lvl, (feat, mask) in enumerate(zip(mlvl_feats, masks)):
            pos = self.positional_encoding(mask, input=feat)
            # [B, C, H, W] -> [B, H*W, C]
            feats.append(feat.flatten(2).transpose(1, 2))
            pos_embeds.append(pos.flatten(2).transpose(1, 2) + self.level_embed[lvl].view(1, 1, -1))
            flat_masks.append(None if mask is None else mask.flatten(1))
            shapes.append(feat.shape[-2:])
        feat_flatten = torch.cat(feats, 1)
        pos_flatten = torch.cat(pos_embeds, 1)
        mask_flatten = None if flat_masks[0] is None else torch.cat(flat_masks, 1)
        spatial_shapes = torch.as_tensor(shapes, dtype=torch.long, device=feat_flatten.device)
        level_start_index = torch.cat((spatial_shapes.new_zeros(
            (1, )), spatial_shapes.prod(1).cumsum(0)[:-1]))
        if masks[0] is None:
            valid_ratios = mlvl_feats[0].new_ones(batch_size, len(mlvl_feats), 2)
        else:
            valid_ratios = torch.stack([self.get_valid_ratio(m) for m in masks], 1)
        shape_info = dict(
            spatial_shapes=spatial_shapes,
            level_start_index=level_start_index,
            valid_ratios=valid_ratios)
        encoder_inputs = dict(
            feat=feat_flatten, feat_mask=mask_flatten, feat_pos=pos_flatten, **shape_info)
        decoder_inputs = dict(memory_mask=mask_flatten, **shape_info)
        return encoder_inputs, decoder_inputs

    def forward_encoder(self, feat: Tensor, feat_mask: Optional[Tensor], feat_pos: Tensor,
                        spatial_shapes: Tensor, level_start_index: Tensor,
                        valid_ratios: Tensor) -> Dict:
        """The deformable encoder: ``memory [B, N, C]``, with ``memory_mask`` and
        ``spatial_shapes`` for :meth:`pre_decoder`."""
        memory = self.encoder(
            query=feat,
            query_pos=feat_pos,
            key_padding_mask=feat_mask,
            spatial_shapes=spatial_shapes,
            level_start_index=level_start_index,
            valid_ratios=valid_ratios)
        return dict(memory=memory, memory_mask=feat_mask, spatial_shapes=spatial_shapes)

    def pre_decoder(self, memory: Tensor, memory_mask: Optional[Tensor],
                    spatial_shapes: Tensor) -> Tuple[Dict, Dict]:
        """The decoder's queries and initial references.

        Returns:
            The decoder's inputs ``query``/``query_pos [B, Q, C]``, ``memory`` and
            ``reference_points`` (``[B, Q, 2]`` points, or ``[B, Q, 4]`` boxes in the two-stage
            variant); and, in training, the head's ``enc_outputs_class [B, N, K]`` and
            ``enc_outputs_coord [B, N, 4]`` (None unless two-stage).
        """
        batch_size, _, c = memory.shape
        if self.as_two_stage:
            output_memory, output_proposals = self.gen_encoder_output_proposals(
                memory, memory_mask, spatial_shapes)
            # the extra branch pair (index num_layers) scores and refines the proposals
            proposal_branch = self.decoder.num_layers
            enc_outputs_class = self.bbox_head.cls_branches[proposal_branch](output_memory)
            enc_outputs_coord_unact = self.bbox_head.reg_branches[proposal_branch](
                output_memory) + output_proposals
            enc_outputs_coord = enc_outputs_coord_unact.sigmoid()
            # class 0 is "foreground" here (the proposal loss relabels every object as 0)
            topk = torch.topk(enc_outputs_class[..., 0], self.num_queries, dim=1)[1]
            topk_coords_unact = torch.gather(enc_outputs_coord_unact, 1,
                                             topk.unsqueeze(-1).repeat(1, 1, 4)).detach()
            reference_points = topk_coords_unact.sigmoid()
            pos_trans_out = self.pos_trans_norm(
                self.pos_trans_fc(
                    self.get_proposal_pos_embed(topk_coords_unact, num_pos_feats=c // 2)))
            query_pos, query = torch.split(pos_trans_out, c, dim=2)
        else:
            enc_outputs_class, enc_outputs_coord = None, None
            query_pos, query = torch.split(self.query_embedding.weight, c, dim=1)
            query_pos = query_pos.unsqueeze(0).expand(batch_size, -1, -1)
            query = query.unsqueeze(0).expand(batch_size, -1, -1)
            reference_points = self.reference_points_fc(query_pos).sigmoid()
        decoder_inputs = dict(
            query=query, query_pos=query_pos, memory=memory, reference_points=reference_points)
        head_inputs = dict(
            enc_outputs_class=enc_outputs_class,
            enc_outputs_coord=enc_outputs_coord) if self.training else dict()
        return decoder_inputs, head_inputs

    def forward_decoder(self, query: Tensor, query_pos: Tensor, memory: Tensor,
                        memory_mask: Optional[Tensor], reference_points: Tensor,
                        spatial_shapes: Tensor, level_start_index: Tensor,
                        valid_ratios: Tensor) -> Dict:
        """The deformable decoder: ``hidden_states [D, B, Q, C]`` and ``references``, the
        initial reference followed by the ``D`` references after each layer."""
        hidden_states, inter_references = self.decoder(
            query=query,
            value=memory,
            query_pos=query_pos,
            key_padding_mask=memory_mask,
            reference_points=reference_points,
            spatial_shapes=spatial_shapes,
            level_start_index=level_start_index,
            valid_ratios=valid_ratios,
            reg_branches=self.bbox_head.reg_branches if self.with_box_refine else None)
        references: List[Tensor] = [reference_points, *inter_references]
        return dict(hidden_states=hidden_states, references=references)

    # ------------------------------------------------------------------------------------------
    # helpers
    # ------------------------------------------------------------------------------------------
    @staticmethod
    def get_valid_ratio(mask: Tensor) -> Tensor:
        """``[B, 2]`` valid ``(w, h)`` fraction of a ``[B, H, W]`` padding mask (True = padded;
        images are padded at the bottom/right)."""
        _, h, w = mask.shape
        valid_h = (~mask[:, :, 0]).sum(1)
        valid_w = (~mask[:, 0, :]).sum(1)
        return torch.stack([valid_w.float() / w, valid_h.float() / h], -1)

    def gen_encoder_output_proposals(self, memory: Tensor, memory_mask: Optional[Tensor],
                                     spatial_shapes: Tensor) -> Tuple[Tensor, Tensor]:
        """One proposal per memory cell (two-stage variant, A.4).

        The proposal of cell ``(i, j)`` of level ``l`` is centred on it, in coordinates
        normalised to the valid image, with width and height ``0.05 · 2^l``.  Proposals
        reaching into the outer 1% of the image, and padded cells, are invalid: their logit
        boxes are ``+inf`` (never matched well, sigmoid 1) and their memory is zeroed.

        Args:
            memory: ``[B, N, C]`` encoder output.
            memory_mask: ``[B, N]`` True at padded cells, or None.
            spatial_shapes: ``[L, 2]`` ``(H_l, W_l)``.

        Returns:
            ``output_memory [B, N, C]`` (``LN(Linear(memory))``, for the proposal branches) and
            ``output_proposals [B, N, 4]``, the proposals as logits ``σ⁻¹(cx, cy, w, h)``.
        """
        bs = memory.size(0)
        proposals = []
        start = 0
        for lvl, (h, w) in enumerate(spatial_shapes.tolist()):
            if memory_mask is not None:
                mask = memory_mask[:, start:start + h * w].view(bs, h, w)
                valid_h = (~mask[:, :, 0]).sum(1)
                valid_w = (~mask[:, 0, :]).sum(1)
                scale = torch.stack([valid_w, valid_h], -1).view(bs, 1, 1, 2)
            else:
                scale = memory.new_tensor([w, h]).view(1, 1, 1, 2)
            grid_y, grid_x = torch.meshgrid(
                torch.linspace(0, h - 1, h, dtype=torch.float32, device=memory.device),
                torch.linspace(0, w - 1, w, dtype=torch.float32, device=memory.device),
                indexing='ij')
            # cell centres (x, y), normalised by the valid extent of the level
            centres = (torch.stack([grid_x, grid_y], -1).expand(bs, -1, -1, -1) + 0.5) / scale
            sizes = torch.ones_like(centres) * 0.05 * (2.0**lvl)
            proposals.append(torch.cat((centres, sizes), -1).view(bs, -1, 4))
            start += h * w
        output_proposals = torch.cat(proposals, 1)
        valid = ((output_proposals > 0.01) & (output_proposals < 0.99)).all(-1, keepdim=True)
        output_proposals = torch.log(output_proposals / (1 - output_proposals))
        output_memory = memory
        if memory_mask is not None:
            output_proposals = output_proposals.masked_fill(memory_mask.unsqueeze(-1), float('inf'))
            output_memory = output_memory.masked_fill(memory_mask.unsqueeze(-1), 0.)
        output_proposals = output_proposals.masked_fill(~valid, float('inf'))
        output_memory = output_memory.masked_fill(~valid, 0.)
        output_memory = self.memory_trans_norm(self.memory_trans_fc(output_memory))
        return output_memory, output_proposals

    @staticmethod
    def get_proposal_pos_embed(proposals: Tensor,
                               num_pos_feats: int = 128,
                               temperature: int = 10000) -> Tensor:
        """Sine embedding of logit boxes ``[B, Q, 4]`` -> ``[B, Q, 4 * num_pos_feats]``.

        Each of ``σ(cx), σ(cy), σ(w), σ(h)`` (times ``2π``) is encoded as DETR's positions,
        ``num_pos_feats`` channels of interleaved ``sin(a / T^(2i/F))``, ``cos(a / T^(2i/F))``.
        """
        dim_t = torch.arange(num_pos_feats, dtype=torch.float32, device=proposals.device)
        dim_t = temperature**(2 * (dim_t // 2) / num_pos_feats)
        # [B, Q, 4, F] angles
        angles = proposals.sigmoid()[..., None] * (2 * math.pi) / dim_t
        return torch.stack((angles[..., 0::2].sin(), angles[..., 1::2].cos()), dim=4).flatten(2)
