"""Image-text contrastive learning: ALBEF/BLIP ITC, CLIP loss, a dual encoder and its parts."""
from .clip_loss import CLIPLoss
from .dist_gather import AllGatherWithGrad, ScaleGrad, gather_features, gather_no_grad
from .dual_encoder import DualEncoderITC
from .feature_queue import FeatureQueue
from .itc_loss import ITCLoss
from .momentum import MomentumPairs, make_momentum_copy
from .text_transformer import TextTransformer
from .word_tokenizer import WordTokenizer

__all__ = [
    'CLIPLoss', 'AllGatherWithGrad', 'ScaleGrad', 'gather_features', 'gather_no_grad',
    'DualEncoderITC', 'FeatureQueue', 'ITCLoss', 'MomentumPairs', 'make_momentum_copy',
    'TextTransformer', 'WordTokenizer'
]
