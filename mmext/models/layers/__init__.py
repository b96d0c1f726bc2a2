"""Building blocks shared by mmext's models (positional encodings, Transformer layers)."""
from .detr_transformer import (DetrAttention, DetrTransformerDecoder, DetrTransformerDecoderLayer,
                               DetrTransformerEncoder, DetrTransformerEncoderLayer)
from .positional_encoding import SinePositionalEncoding

__all__ = [
    'SinePositionalEncoding', 'DetrAttention', 'DetrTransformerEncoderLayer',
    'DetrTransformerDecoderLayer', 'DetrTransformerEncoder', 'DetrTransformerDecoder'
]
