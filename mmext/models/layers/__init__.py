"""Building blocks shared by mmext's models (positional encodings, padding masks, Transformer
layers, the fused LayerNorm that ``norm_cfg=dict(type='mmext.FusedLN')`` builds)."""
from mmext.ops.layer_norm import FusedLayerNorm
from .detr_transformer import (DetrAttention, DetrTransformerDecoder, DetrTransformerDecoderLayer,
                               DetrTransformerEncoder, DetrTransformerEncoderLayer)
from .padding_mask import batch_input_shape, padding_mask
from .positional_encoding import SinePositionalEncoding

__all__ = [
    'FusedLayerNorm', 'SinePositionalEncoding', 'DetrAttention', 'DetrTransformerEncoderLayer',
    'DetrTransformerDecoderLayer', 'DetrTransformerEncoder', 'DetrTransformerDecoder',
    'batch_input_shape', 'padding_mask'
]
