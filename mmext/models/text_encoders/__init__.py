"""Text encoders and the tokenizer that feeds them (the text tower of dual encoders).

The tokenizer sits here rather than in ``layers``: it is a ``TASK_UTILS`` object, not an
``nn.Module``, and its only consumer is a text encoder, whose ``vocab_size``, ``[CLS]`` pooling
and padding mask follow the tokenizer's conventions.
"""
from .text_transformer import TextTransformer
from .word_tokenizer import WordTokenizer

__all__ = ['TextTransformer', 'WordTokenizer']
