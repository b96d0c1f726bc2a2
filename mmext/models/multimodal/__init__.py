"""Multimodal models: :class:`DualEncoderITC` (image + text encoders aligned by ITC or CLIP) and
the momentum (EMA) copies it keeps of its encoders.

Its parts live where their kind does: the ITC/CLIP losses and the ITC feature queue in
:mod:`mmext.models.losses`, the text encoder and tokenizer in :mod:`mmext.models.text_encoders`,
the distributed gathers in :mod:`mmext.models.utils`.  They are re-exported here only so that
imports written before the split (``from mmext.models.multimodal import ITCLoss``) keep working;
new code imports them from their own package.  Module paths such as
``mmext.models.multimodal.itc_loss`` are gone.
"""
from ..losses import CLIPLoss, FeatureQueue, ITCLoss
from ..text_encoders import TextTransformer, WordTokenizer
from ..utils import AllGatherWithGrad, ScaleGrad, gather_features, gather_no_grad
from .dual_encoder import DualEncoderITC
from .momentum import MomentumPairs, make_momentum_copy

__all__ = [
    'DualEncoderITC',
    'MomentumPairs',
    'make_momentum_copy',
    # old import paths, re-exported from their packages
    'CLIPLoss',
    'FeatureQueue',
    'ITCLoss',
    'TextTransformer',
    'WordTokenizer',
    'AllGatherWithGrad',
    'ScaleGrad',
    'gather_features',
    'gather_no_grad'
]
