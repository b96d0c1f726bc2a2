"""mmext datasets and data generators."""
from .coco import CheckedCocoDataset
from .shapes import (SHAPES_CLASSES, SHAPES_METAINFO, ShapesCocoDataset,
                     ShapesDetectionGenerator, ensure_shapes_dataset)

__all__ = [
    'CheckedCocoDataset', 'SHAPES_CLASSES', 'SHAPES_METAINFO', 'ShapesCocoDataset',
    'ShapesDetectionGenerator', 'ensure_shapes_dataset'
]
