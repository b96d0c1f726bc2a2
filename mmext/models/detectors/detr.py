"""The DETR detector: CNN backbone -> Transformer encoder/decoder -> set prediction head.

DETR: End-to-End Object Detection with Transformers (Carion et al., ECCV 2020,
https://arxiv.org/abs/2005.12872), Sec. 3.2 and Fig. 2.  The last backbone map (projected to
``d = embed_dims`` channels by the neck) is flattened into ``H*W`` tokens, each with the sine
positional encoding of its cell (padding cells are masked out of every attention), encoded by
the Transformer encoder into the memory.  ``num_queries`` learnt object queries (positional
embeddings of the decoder, added to its queries/keys; the decoder input itself is zero) attend
to each other and to the memory, and the head maps every decoder layer's output to a class and
a box.

The config schema, submodule names and state-dict keys are mmdet's ``DETR`` (mmdet 3.3.0), so an
mmdet DETR config runs with ``type='mmext.DETR'`` and mmdet DETR checkpoints load unchanged.  Unlike
mmdet's, this detector builds its positional encoding, encoder and decoder from mmext and its
backbone, neck and head through the registries (unscoped types we lack fall back to mmdet), which
is what lets a config mix mmext's and mmdet's parts.
"""
import copy
from typing import Dict, Optional, Tuple

import torch
import torch.nn as nn
from mmdet.models.detectors.base import BaseDetector
from mmdet.structures import OptSampleList, SampleList
from mmdet.utils import ConfigType, OptConfigType, OptMultiConfig
from torch import Tensor

from mmext.models.layers import (DetrTransformerDecoder, DetrTransformerEncoder,
                                 SinePositionalEncoding, padding_mask)
from mmext.registry import MODELS, build_with_fallback


def _build_or_default(cfg: dict, default_cls: type) -> nn.Module:
    """``cfg`` without ``type`` (mmdet's DETR schema) builds ``default_cls``; with one, the
    registry decides."""
    cfg = dict(copy.deepcopy(cfg))
    if 'type' in cfg:
        return build_with_fallback(MODELS, cfg)
    return default_cls(**cfg)


@MODELS.register_module()
class DETR(BaseDetector):
    """DETR (Carion et al., 2020) with mmext's Transformer and head.

    Args:
        backbone: Backbone config (e.g. ``mmdet.ResNet`` with ``out_indices=(3, )``).
        neck: Neck config projecting to ``embed_dims`` (``mmdet.ChannelMapper``), or None.
        encoder: :class:`DetrTransformerEncoder` options (``num_layers``, ``layer_cfg``).
        decoder: :class:`DetrTransformerDecoder` options.
        bbox_head: Head config (``DETRHead``); gets ``train_cfg``/``test_cfg``.
        positional_encoding: :class:`SinePositionalEncoding` options; ``2 * num_feats`` must equal
            the encoder's ``embed_dims``.
        num_queries: Number of object queries ``N``. Defaults to 100.
        train_cfg: Head training config (the assigner).
        test_cfg: Head test config (``max_per_img``).
        data_preprocessor: Data preprocessor config (``mmdet.DetDataPreprocessor``).
        init_cfg: Initialisation config.
    """

    def __init__(self,
                 backbone: ConfigType,
                 neck: OptConfigType = None,
                 encoder: OptConfigType = None,
                 decoder: OptConfigType = None,
                 bbox_head: OptConfigType = None,
                 positional_encoding: OptConfigType = None,
                 num_queries: int = 100,
                 train_cfg: OptConfigType = None,
                 test_cfg: OptConfigType = None,
                 data_preprocessor: OptConfigType = None,
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        for name, cfg in (('encoder', encoder), ('decoder', decoder), ('bbox_head', bbox_head),
                          ('positional_encoding', positional_encoding)):
            if cfg is None:
                raise ValueError(f'DETR needs a `{name}` config')
        self.train_cfg = train_cfg
        self.test_cfg = test_cfg
        self.num_queries = num_queries
        bbox_head = dict(copy.deepcopy(bbox_head), train_cfg=train_cfg, test_cfg=test_cfg)

        # Registration order fixes the state-dict order; equal to mmdet's.
        self.backbone = build_with_fallback(MODELS, backbone)
        if neck is not None:
            self.neck = build_with_fallback(MODELS, neck)
        self.bbox_head = build_with_fallback(MODELS, bbox_head)
        self._init_layers(positional_encoding, encoder, decoder)
        num_feats = self.positional_encoding.num_feats
        if 2 * num_feats != self.embed_dims:
            raise ValueError(f'positional_encoding.num_feats ({num_feats}) must be half the '
                             f'Transformer embed_dims ({self.embed_dims}): y and x codes are '
                             'concatenated')

    def _init_layers(self, positional_encoding: ConfigType, encoder: ConfigType,
                     decoder: ConfigType) -> None:
        """Build the positional encoding, the Transformer and the object queries, and set
        ``embed_dims`` (a hook for subclasses, as mmdet's)."""
        self.positional_encoding = _build_or_default(positional_encoding, SinePositionalEncoding)
        self.encoder = _build_or_default(encoder, DetrTransformerEncoder)
        self.decoder = _build_or_default(decoder, DetrTransformerDecoder)
        self.embed_dims = self.encoder.embed_dims
        # the object queries: learnt positional embeddings of the decoder (Sec. 3.2)
        self.query_embedding = nn.Embedding(self.num_queries, self.embed_dims)

    def init_weights(self) -> None:
        """Submodules' own init, then Xavier-uniform matrices in the Transformer (as DETR)."""
        super().init_weights()
        for coder in (self.encoder, self.decoder):
            for p in coder.parameters():
                if p.dim() > 1:
                    nn.init.xavier_uniform_(p)

    # ------------------------------------------------------------------------------------------
    # BaseDetector interface
    # ------------------------------------------------------------------------------------------
    def extract_feat(self, batch_inputs: Tensor) -> Tuple[Tensor, ...]:
        x = self.backbone(batch_inputs)
        return self.neck(x) if self.with_neck else x

    def loss(self, batch_inputs: Tensor, batch_data_samples: SampleList) -> Dict[str, Tensor]:
        hidden_states = self.forward_transformer(
            self.extract_feat(batch_inputs), batch_data_samples)
        return self.bbox_head.loss(hidden_states, batch_data_samples)

    def predict(self,
                batch_inputs: Tensor,
                batch_data_samples: SampleList,
                rescale: bool = True) -> SampleList:
        hidden_states = self.forward_transformer(
            self.extract_feat(batch_inputs), batch_data_samples)
        results = self.bbox_head.predict(hidden_states, batch_data_samples, rescale=rescale)
        return self.add_pred_to_datasample(batch_data_samples, results)

    def _forward(self,
                 batch_inputs: Tensor,
                 batch_data_samples: OptSampleList = None) -> Tuple[Tensor, Tensor]:
        hidden_states = self.forward_transformer(
            self.extract_feat(batch_inputs), batch_data_samples)
        return self.bbox_head(hidden_states)

    # ------------------------------------------------------------------------------------------
    # Transformer
    # ------------------------------------------------------------------------------------------
    def forward_transformer(self,
                            img_feats: Tuple[Tensor, ...],
                            batch_data_samples: OptSampleList = None) -> Tensor:
        """Last feature map -> decoder outputs of every layer ``[L, B, N, C]``."""
        feat = img_feats[-1]
        batch_size, channels = feat.shape[:2]
        mask = self.padding_mask(feat, batch_data_samples)
        pos = self.positional_encoding(mask, input=feat)
        # [B, C, H, W] -> [B, H*W, C] tokens
        tokens = feat.flatten(2).transpose(1, 2)
        pos = pos.flatten(2).transpose(1, 2)
        if mask is not None:
            mask = mask.flatten(1)
        memory = self.encoder(query=tokens, query_pos=pos, key_padding_mask=mask)
        query_pos = self.query_embedding.weight.unsqueeze(0).expand(batch_size, -1, -1)
        return self.decoder(
            query=torch.zeros_like(query_pos),
            key=memory,
            value=memory,
            query_pos=query_pos,
            key_pos=pos,
            key_padding_mask=mask)

    @staticmethod
    def padding_mask(feat: Tensor, batch_data_samples: OptSampleList) -> Optional[Tensor]:
        """``[B, H, W]`` bool mask of the feature cells that lie in batch padding, or None when
        no image is padded (or no metadata is given, or during ONNX export, as mmdet).

        Images are padded at the bottom/right to the batch shape; the pixel mask is resized to
        the feature map by nearest-neighbour sampling, as in DETR.
        """
        if not batch_data_samples or torch.onnx.is_in_onnx_export():
            return None
        return padding_mask([s.metainfo for s in batch_data_samples],
                            feat.shape[-2:],
                            feat.device,
                            none_if_unpadded=True)
