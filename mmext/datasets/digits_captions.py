"""scikit-learn's handwritten digits paired with templated captions, for image-text learning.

Every image of :class:`~mmext.datasets.digits.DigitsDataset` gets a caption built from a template
and its digit's name: ``"a handwritten seven"``, ``"the digit 7"``, ``"a photo of the number
seven"``...  Templates are format strings with ``{0}`` = the word and ``{1}`` = the numeral.

* training split: a template is drawn at random every time a sample is read, so one image is seen
  with many captions over the epochs;
* test mode (``test_mode=True``): image ``i`` gets template ``i % len(templates)``, deterministic.

Every sample also carries ``image_id`` (its index in the split) for idx-based ITC targets.  The
captions say nothing but the digit, so retrieval is scored at class level (a caption is relevant
to every image of its digit); see :class:`mmext.evaluation.metrics.RetrievalRecall`.
"""
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np

from mmext.registry import DATASETS

from .digits import DigitsDataset

__all__ = [
    'DIGIT_WORDS', 'DIGIT_CAPTION_TEMPLATES', 'DIGIT_CLASS_NAMES', 'digit_caption',
    'DigitsCaptionDataset'
]

DIGIT_WORDS: Tuple[str, ...] = ('zero', 'one', 'two', 'three', 'four', 'five', 'six', 'seven',
                                'eight', 'nine')
#: per class, the strings the templates' ``{0}`` and ``{1}`` are filled with
DIGIT_CLASS_NAMES: Tuple[Tuple[str, str], ...] = tuple(
    (w, str(i)) for i, w in enumerate(DIGIT_WORDS))
DIGIT_CAPTION_TEMPLATES: Tuple[str, ...] = (
    'a handwritten {0}',
    'the digit {1}',
    'a photo of the number {0}',
    'a scan of a handwritten {1}',
    'the number {0} written by hand',
    'a small blurry image of the digit {0}',
    'someone wrote a {1}',
    'a picture of a {1}',
)


def digit_caption(label: int, template: str) -> str:
    return template.format(*DIGIT_CLASS_NAMES[int(label)])


@DATASETS.register_module()
class DigitsCaptionDataset(DigitsDataset):
    """:class:`DigitsDataset` samples plus ``text`` (a caption) and ``image_id``.

    Args:
        templates: Caption templates (``{0}`` word, ``{1}`` numeral).
        seed_captions: Seed of the training split's caption draws.
        **kwargs: :class:`DigitsDataset` arguments (``split``, ``image_size``, ``pipeline``...).
    """

    def __init__(self,
                 templates: Sequence[str] = DIGIT_CAPTION_TEMPLATES,
                 seed_captions: int = 0,
                 **kwargs: Any) -> None:
        self.templates = tuple(templates)
        if not self.templates:
            raise ValueError('DigitsCaptionDataset needs at least one caption template')
        for t in self.templates:
            try:
                digit_caption(0, t)
            except (IndexError, KeyError) as e:
                raise ValueError(f'DigitsCaptionDataset template {t!r} may only use {{0}} (word) '
                                 f'and {{1}} (numeral): {e!r}') from None
        self._rng = np.random.default_rng(seed_captions)
        super().__init__(**kwargs)

    def load_data_list(self) -> List[dict]:
        data_list = super().load_data_list()
        for i, info in enumerate(data_list):
            info['image_id'] = i
            info['text'] = digit_caption(info['gt_label'], self.templates[i % len(self.templates)])
        return data_list

    def get_data_info(self, idx: int) -> dict:
        info = super().get_data_info(idx)
        if not self.test_mode:  # a fresh caption every time a training sample is read
            t = self.templates[int(self._rng.integers(len(self.templates)))]
            info['text'] = digit_caption(info['gt_label'], t)
        return info

    def captions(self, label: int) -> List[str]:
        return [digit_caption(label, t) for t in self.templates]

    def extra_repr(self) -> Optional[str]:
        return super().extra_repr() + f', templates={len(self.templates)}'
