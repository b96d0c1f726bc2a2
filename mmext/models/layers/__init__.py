"""Building blocks shared by mmext's models (positional encodings, padding masks, Transformer
layers, the fused LayerNorm that ``norm_cfg=dict(type='mmext.FusedLN')`` builds).

The DETR Transformer layers build on mmcv's bricks and are imported when first used.
"""
from mmext.ops.layer_norm import FusedLayerNorm
from mmext.utils.lazy_exports import lazy_exports

from .padding_mask import batch_input_shape, padding_mask
from .positional_encoding import SinePositionalEncoding

__getattr__ = lazy_exports(
    __name__, {
        **{
            name: '.detr_transformer'
            for name in ('DetrAttention', 'DetrTransformerEncoderLayer',
                         'DetrTransformerDecoderLayer', 'DetrTransformerEncoder',
                         'DetrTransformerDecoder')
        },
        'CdnQueryGenerator': '.cdn_query_generator',
    })

__all__ = [
    'FusedLayerNorm', 'SinePositionalEncoding', 'DetrAttention', 'DetrTransformerEncoderLayer',
    'DetrTransformerDecoderLayer', 'DetrTransformerEncoder', 'DetrTransformerDecoder',
    'batch_input_shape', 'padding_mask', 'CdnQueryGenerator'
]
