"""Building blocks shared by mmext's models (positional encodings, padding masks, Transformer
layers, multi-scale deformable attention, the fused LayerNorm that
``norm_cfg=dict(type='mmext.FusedLN')`` builds).

The DETR, Deformable DETR and DINO Transformer layers build on mmcv's bricks and are imported when
first used; :class:`MultiScaleDeformableAttention` needs only torch and mmengine.
"""
from mmext.ops.layer_norm import FusedLayerNorm
from mmext.utils.lazy_exports import lazy_exports

from .inverse_sigmoid import inverse_sigmoid
from .ms_deform_attn import MultiScaleDeformableAttention
from .padding_mask import batch_input_shape, padding_mask
from .positional_encoding import SinePositionalEncoding

_DETR = ('DetrAttention', 'DetrTransformerEncoderLayer', 'DetrTransformerDecoderLayer',
         'DetrTransformerEncoder', 'DetrTransformerDecoder')
_DEFORMABLE_DETR = ('DeformableDetrTransformerEncoderLayer',
                    'DeformableDetrTransformerDecoderLayer', 'DeformableDetrTransformerEncoder',
                    'DeformableDetrTransformerDecoder')
__getattr__ = lazy_exports(
    __name__, {
        **{
            name: '.detr_transformer'
            for name in _DETR
        },
        **{
            name: '.deformable_detr_transformer'
            for name in _DEFORMABLE_DETR
        },
        'DinoTransformerDecoder': '.dino_transformer',
        'CdnQueryGenerator': '.cdn_query_generator',
    })

__all__ = [
    'FusedLayerNorm', 'SinePositionalEncoding', 'MultiScaleDeformableAttention', 'inverse_sigmoid',
    'batch_input_shape', 'padding_mask', *_DETR, *_DEFORMABLE_DETR, 'DinoTransformerDecoder',
    'CdnQueryGenerator'
]
