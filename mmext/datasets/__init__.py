"""mmext datasets and data generators."""
from .shapes import ShapesDetectionGenerator, ensure_shapes_dataset

__all__ = ['ShapesDetectionGenerator', 'ensure_shapes_dataset']
