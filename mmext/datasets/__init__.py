"""mmext datasets and data generators.

The recommendation and digits datasets need only the core; the detection and segmentation ones
(mmdet's ``CocoDataset``, mmseg's ``BaseSegDataset``), the VOC XML readers, the tiling wrapper and
mmext's transforms are imported when first used.
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
        'TiledDataset': '.tiled',
        'VOCXMLDataset': '.voc_xml',
        'VOCXMLError': '.voc_xml',
        'parse_voc_xml': '.voc_xml',
        'NEON_TREES_METAINFO': '.neon_trees',
        'NEON_TREES_SPLITS': '.neon_trees',
        'NeonTreesDataset': '.neon_trees',
        'deepforest_data_dir': '.neon_trees',
        'LoadImageCrop': '.transforms',
    })

__all__ = [
    'CheckedCocoDataset', 'DIGITS_CLASSES', 'DigitsDataset', 'load_digits_arrays',
    'DigitsCaptionDataset', 'SHAPES_CLASSES', 'SHAPES_METAINFO', 'ShapesCocoDataset',
    'ShapesDetectionGenerator', 'ensure_shapes_dataset', 'ShapesSegDataset',
    'ensure_shapes_seg_dataset', 'TiledDataset', 'VOCXMLDataset', 'VOCXMLError', 'parse_voc_xml',
    'NEON_TREES_METAINFO', 'NEON_TREES_SPLITS', 'NeonTreesDataset', 'deepforest_data_dir',
    'LoadImageCrop'
]
