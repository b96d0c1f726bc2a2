"""Sequential recommenders as mmengine BaseModels."""
from .gru4rec import GRU4Rec
from .sasrec import SASRec

__all__ = ['GRU4Rec', 'SASRec']
