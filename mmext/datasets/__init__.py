"""mmext datasets and data generators."""
from . import recsys  # noqa: F401  (registers the recommendation datasets)
from .coco import CheckedCocoDataset
from .digits import DIGITS_CLASSES, DigitsDataset, load_digits_arrays
from .digits_captions import DigitsCaptionDataset
from .shapes import (SHAPES_CLASSES, SHAPES_METAINFO, ShapesCocoDataset,
                     ShapesDetectionGenerator, ensure_shapes_dataset)
from .shapes_seg import ShapesSegDataset, ensure_shapes_seg_dataset

__all__ = [
    'CheckedCocoDataset', 'DIGITS_CLASSES', 'DigitsDataset', 'load_digits_arrays',
    'DigitsCaptionDataset', 'SHAPES_CLASSES', 'SHAPES_METAINFO', 'ShapesCocoDataset',
    'ShapesDetectionGenerator', 'ensure_shapes_dataset', 'ShapesSegDataset',
    'ensure_shapes_seg_dataset'
]
