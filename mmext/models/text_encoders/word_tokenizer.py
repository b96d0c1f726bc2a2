"""A word-level tokenizer for small, closed-vocabulary caption sets (no download, no BPE).

Texts are lower-cased and split into runs of letters/digits; each word maps to an id of a fixed
vocabulary (``[PAD]=0``, ``[CLS]=1``, ``[UNK]=2``, then the words in sorted order).  Every
sequence starts with ``[CLS]``, whose output a text transformer pools (as BERT/BLIP do), and is
padded or truncated to ``max_length``.
"""
import re
from typing import Iterable, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from mmext.registry import TASK_UTILS

__all__ = ['WordTokenizer']

_WORD = re.compile(r'[a-z0-9]+')


@TASK_UTILS.register_module()
class WordTokenizer:
    """Whitespace/punctuation word tokenizer with a fixed vocabulary.

    Args:
        vocab: The words; ``None`` builds it from ``corpus``.
        corpus: Texts whose words form the vocabulary when ``vocab`` is ``None``.
        max_length: Length of every encoded sequence, ``[CLS]`` included.
    """

    PAD, CLS, UNK = 0, 1, 2
    SPECIALS = ('[PAD]', '[CLS]', '[UNK]')

    def __init__(self,
                 vocab: Optional[Sequence[str]] = None,
                 corpus: Optional[Iterable[str]] = None,
                 max_length: int = 16) -> None:
        if vocab is None:
            if corpus is None:
                raise ValueError('WordTokenizer needs a vocab or a corpus to build one from')
            vocab = sorted({w for text in corpus for w in self.split(text)})
        words = [str(w).lower() for w in vocab if str(w) not in self.SPECIALS]
        if len(set(words)) != len(words):
            raise ValueError('WordTokenizer vocab has duplicate words')
        if max_length < 2:
            raise ValueError(f'WordTokenizer max_length must be >= 2, got {max_length!r}')
        self.words: Tuple[str, ...] = tuple(self.SPECIALS) + tuple(words)
        self.index = {w: i for i, w in enumerate(self.words)}
        self.max_length = int(max_length)

    @staticmethod
    def split(text: str) -> List[str]:
        return _WORD.findall(str(text).lower())

    def __len__(self) -> int:
        return len(self.words)

    @property
    def vocab_size(self) -> int:
        return len(self.words)

    def encode(self, text: str) -> List[int]:
        ids = [self.CLS] + [self.index.get(w, self.UNK) for w in self.split(text)]
        return ids[:self.max_length]

    def __call__(self,
                 texts: Sequence[str],
                 device: Optional[torch.device] = None) -> Tuple[Tensor, Tensor]:
        """``(ids, mask)``: ``(B, max_length)`` int64 ids and bool mask (True = real token)."""
        if isinstance(texts, str):
            raise TypeError('WordTokenizer expects a list of texts, got a single string')
        ids = torch.full((len(texts), self.max_length), self.PAD, dtype=torch.long)
        for row, text in enumerate(texts):
            enc = self.encode(text)
            ids[row, :len(enc)] = torch.tensor(enc, dtype=torch.long)
        ids = ids.to(device) if device is not None else ids
        return ids, ids != self.PAD

    def decode(self, ids: Sequence[int]) -> str:
        return ' '.join(self.words[i] for i in ids if i not in (self.PAD, self.CLS))
