"""mmext datasets and data generators."""
from .shapes import (SHAPES_CLASSES, SHAPES_METAINFO, ShapesCocoDataset,
                     ShapesDetectionGenerator, ensure_shapes_dataset)

__all__ = [
    'SHAPES_CLASSES', 'SHAPES_METAINFO', 'ShapesCocoDataset', 'ShapesDetectionGenerator',
    'ensure_shapes_dataset'
]
