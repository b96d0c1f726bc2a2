"""Segmentation heads: MaskFormer (pixel decoders, transformer predictor, head, panoptic fusion)."""
from .maskformer_fusion_head import MaskFormerFusionHead
from .maskformer_head import MaskFormerHead, convert_legacy_keys
from .pixel_decoder import PixelDecoder
from .transformer_encoder_pixel_decoder import TransformerEncoderPixelDecoder
from .transformer_predictor import MaskFormerTransformerPredictor

__all__ = [
    'MaskFormerHead', 'MaskFormerFusionHead', 'MaskFormerTransformerPredictor', 'PixelDecoder',
    'TransformerEncoderPixelDecoder', 'convert_legacy_keys'
]
