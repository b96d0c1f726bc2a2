"""mmext datasets and data generators.

The recommendation and digits datasets need only the core; the detection and segmentation ones
(mmdet's ``CocoDataset``, mmseg's ``BaseSegDataset``) are imported when first used.
"""
from mmext.utils.lazy_exports import lazy_exports

from . import recsys  # noqa: F401  (registers the recommendation datasets)
from .digits import DIGITS_CLASSES, DigitsDataset, load_digits_arrays
from .digits_captions import DigitsCaptionDataset

__getattr__ = lazy_exports(
    __name__, {
        'CheckedCocoDataset': '.coco',
        'SHAPES_CLASSES': '.shapes',
        'SHAPES_METAINFO': '.shapes',
        'ShapesCocoDataset': '.shapes',
        'ShapesDetectionGenerator': '.shapes',
        'ensure_shapes_dataset': '.shapes',
        'ShapesSegDataset': '.shapes_seg',
        'ensure_shapes_seg_dataset': '.shapes_seg',
    })

__all__ = [
    'CheckedCocoDataset', 'DIGITS_CLASSES', 'DigitsDataset', 'load_digits_arrays',
    'DigitsCaptionDataset', 'SHAPES_CLASSES', 'SHAPES_METAINFO', 'ShapesCocoDataset',
    'ShapesDetectionGenerator', 'ensure_shapes_dataset', 'ShapesSegDataset',
    'ensure_shapes_seg_dataset'
]
